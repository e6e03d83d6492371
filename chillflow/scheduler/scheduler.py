"""``BatchScheduler``: runs the batch jobs on their schedules, unattended, with a run history."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg2
import structlog
from psycopg2.extensions import connection as Connection

from chillflow import runtime
from chillflow.database_url import DatabaseUrl
from chillflow.errors import ChillflowError
from chillflow.logs import bound_run, new_run_id
from chillflow.scheduler.clock import Clock, SystemClock
from chillflow.scheduler.config import JobSchedule, ScheduleConfig, load_schedule
from chillflow.scheduler.executor import (
    JobPlan,
    Runner,
    SubprocessRunner,
    plan_job,
    raw_path,
    run_steps,
)
from chillflow.scheduler.planner import (
    latest_fire,
    next_fire,
    parse_periods,
    periods_of,
    select_due,
    split_monthly_period,
)
from chillflow.settings import Settings
from chillflow.storage import ledger
from chillflow.storage.postgres import connect, init_schema

#: The longest the loop sleeps before looking again, so that it notices a changed wall clock
#: (a machine that slept) within this time.
MAX_SLEEP_SEC = 60.0
#: How often the loop looks for runs left ``running`` by schedulers that died.
STALE_SCAN_SEC = 300.0
#: A combined outcome of several periods takes the first of these statuses among them.
_STATUS_ORDER = ("cancelled", "failed", "succeeded", "skipped", "awaited")


class BatchScheduler:
    """Run the ChillFlow jobs on their cron schedules and record every run in ``ops.job_run``.

    Each job runs as ``spark-submit.sh`` child processes. One (job, period) runs at most once at
    a time across all schedulers sharing the database; failed attempts are retried with
    exponential backoff; runs left ``running`` by a dead scheduler are marked failed.

    Args:
        settings: Settings to use; loaded from ``conf/`` and the environment by default.
        clock: Source of time and waiting; the system clock by default.
        runner: Runs one command; child processes by default.
        schedule: The jobs; ``conf/schedules.toml`` by default.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        clock: Clock | None = None,
        runner: Runner | None = None,
        *,
        schedule: ScheduleConfig | None = None,
    ):
        self._settings = settings
        self._schedule = schedule
        self.clock: Clock = clock or SystemClock()
        self.runner: Runner = runner or SubprocessRunner()
        self._database_url: DatabaseUrl | None = None
        self._stopping = threading.Event()
        self._cancel = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._looping = False
        self._log = structlog.get_logger("chillflow.scheduler")

    @property
    def settings(self) -> Settings:
        """The settings in use."""
        if self._settings is None:
            self._settings = runtime.settings()
        return self._settings

    @property
    def schedule(self) -> ScheduleConfig:
        """The validated schedule."""
        if self._schedule is None:
            self._schedule = load_schedule(data_dir=self.settings.data_dir)
        return self._schedule

    def jobs(self) -> list[dict[str, Any]]:
        """List the jobs with their cron, next run and last outcome.

        Returns:
            One dict per job: name, kind, cron, timezone, next_run (ISO 8601 in the job's time
            zone), last_run (the latest ``ops.job_run`` row, or None) and awaiting (the monthly
            pipeline's watched periods whose raw file is not in the landing directory).
        """
        now = self.clock.now()
        with self._connect() as conn:
            latest = ledger.latest_runs(conn)
        return [
            {
                "name": job.name,
                "kind": job.kind,
                "cron": job.cron,
                "timezone": job.timezone.key,
                "next_run": next_fire(job, now).astimezone(job.timezone).isoformat(),
                "last_run": latest[job.name].as_dict() if job.name in latest else None,
                "awaiting": self._awaiting(job, now),
            }
            for job in self.schedule.jobs
        ]

    def plan(self, at: datetime) -> dict[str, Any]:
        """Say what the jobs with a fire time in the minute of ``at`` would run; needs no database.

        Returns:
            at, jobs (job, kind, fire_time, runs: period, commands and, for the monthly
            pipeline, raw_file and arrived as the landing directory holds them now) and a note.
        """
        schedule, planned = self.schedule, []
        for job in schedule.jobs:
            fire = latest_fire(job, at)
            if fire < at.replace(second=0, microsecond=0):
                continue
            runs = []
            for period in periods_of(job, fire, schedule.services):
                plan = plan_job(job, period, schedule)
                run: dict[str, Any] = {"period": period}
                if job.kind == "monthly_pipeline":
                    run["raw_file"] = str(raw_path(schedule, *split_monthly_period(period)))
                    run["arrived"] = plan.raw_file is not None
                runs.append({**run, "commands": [list(step.argv) for step in plan.steps]})
            fire_time = fire.astimezone(job.timezone).isoformat()
            planned.append(
                {"job": job.name, "kind": job.kind, "fire_time": fire_time, "runs": runs}
            )
        note = None
        if any(job["kind"] == "monthly_pipeline" for job in planned):
            read_at = f"{self.clock.now():%Y-%m-%dT%H:%MZ}"
            note = (
                f"raw files as the landing directory holds them now ({read_at}); a period whose "
                "file arrived runs only if ops.job_run has no successful load of that same file "
                "(size and mtime)"
            )
        return {"at": at.isoformat(), "jobs": planned, "note": note}

    def runs(self, job: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Return the run history of ``ops.job_run``, newest first, the stages' own rows included.

        Args:
            job: Only this job's runs; all jobs by default.
            limit: At most this many rows.
        """
        with self._connect() as conn:
            return [run.as_dict() for run in ledger.list_runs(conn, job=job, limit=limit)]

    def run_job(self, name: str, period: str | None = None) -> dict[str, Any]:
        """Run one job now, for one period, with its retries; also if that period succeeded.

        The monthly pipeline without a period does what its scheduled check does: it loads the
        watched files that are new or changed since their last successful load. With a month
        (``2025-02``, each service) or a ``2025-02/green`` period it reloads them in any case.

        Args:
            name: The job's name.
            period: The period to run; by default the one its latest scheduled run covers.

        Returns:
            job, period, status (of the last attempt), attempts, message and the recorded runs;
            for several periods, the most severe status and the outcome of each in ``periods``.

        Raises:
            ConfigError: If the job is unknown or the period malformed.
            DatabaseError: If PostgreSQL cannot be reached.
        """
        job = self.schedule.job(name)
        if not self._looping:
            self._stopping.clear()
            self._cancel.clear()
        services = self.schedule.services
        if period is None:
            periods = periods_of(job, latest_fire(job, self.clock.now()), services)
        else:
            periods = parse_periods(job, period, services)
        force = period is not None or job.kind != "monthly_pipeline"
        outcomes = []
        for each in periods:
            if self._stopping.is_set():
                break
            outcomes.append(self._run(job, each, force=force))
        if len(outcomes) == 1:
            return outcomes[0]
        return _combined(job, period or ", ".join(periods), outcomes)

    def recover_stale_runs(self) -> list[dict[str, Any]]:
        """Mark runs whose scheduler died (their lock is free) as failed, with the reason.

        Returns:
            The rows marked.
        """
        with self._connect() as conn:
            orphans = ledger.orphaned_runs(conn, [job.name for job in self.schedule.jobs])
            marked = ledger.mark_abandoned(conn, orphans, now=self.clock.now())
        for run in marked:
            self._log.warning(
                "schedule.stale_run",
                job=run.job,
                period=run.period,
                run_id=run.run_id,
                reason=run.error,
            )
        return [run.as_dict() for run in marked]

    def start(self) -> None:
        """Run the schedule in the foreground until :meth:`stop`, SIGINT or SIGTERM.

        After a stop request no new job starts; the running one may finish within
        ``shutdown_grace_sec`` and is then terminated and recorded as cancelled. A second
        signal cancels it at once.
        """
        self._stopping.clear()
        self._cancel.clear()
        self._looping = True
        try:
            with self.stop_on_signals():
                self._loop()
        finally:
            self._looping = False
        self._log.info("schedule.stopped")

    def stop(self) -> None:
        """Ask the scheduler to stop; asked again, cancel the running job at once.

        Safe to call from a signal handler: it only sets events and starts a thread, which logs.
        """
        if self._stopping.is_set():
            self._cancel.set()
            return
        self._stopping.set()
        threading.Thread(target=self._wind_down, name="chillflow-stop", daemon=True).start()

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """Within the block, SIGINT and SIGTERM call :meth:`stop` (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            signum: signal.signal(signum, lambda *_: self.stop())
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for signum, handler in previous.items():
                # None: the previous handler was not installed from Python.
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _loop(self) -> None:
        schedule = self.schedule
        self._log.info(
            "schedule.started",
            jobs=[job.name for job in schedule.jobs],
            policy=schedule.missed_run_policy,
            pid=os.getpid(),
        )
        self.recover_stale_runs()
        scanned = self.clock.now()
        handled = self._handled_at_start()
        while True:
            for job in schedule.jobs:
                if self._stopping.is_set():
                    return
                handled[job.name] = self._run_if_due(job, handled[job.name])
            now = self.clock.now()
            if (now - scanned).total_seconds() >= STALE_SCAN_SEC:
                self._guarded(self.recover_stale_runs)
                scanned = now
            wake = min(next_fire(job, now) for job in schedule.jobs)
            if self.clock.wait(min((wake - now).total_seconds(), MAX_SLEEP_SEC), self._stopping):
                return

    def _handled_at_start(self) -> dict[str, datetime | None]:
        """Each job's latest fire time, or None when its period still has to run.

        A period counts as handled once it has a row, except a cancelled one: a run stopped by
        the last shutdown is due again. The monthly pipeline's check is never handled: it
        loads only new or changed files, so it is as cheap as it is safe to repeat.
        """
        now = self.clock.now()
        handled: dict[str, datetime | None] = {}
        with self._connect() as conn:
            for job in self.schedule.jobs:
                latest = latest_fire(job, now)
                handled[job.name] = None
                if job.kind != "monthly_pipeline":
                    (period,) = periods_of(job, latest)
                    statuses = ledger.period_statuses(conn, job.name, period)
                    handled[job.name] = latest if statuses - {"cancelled"} else None
        return handled

    def _run_if_due(self, job: JobSchedule, handled: datetime | None) -> datetime:
        """Run the job if its latest fire time is due; return the new handled fire time."""
        schedule = self.schedule
        now = self.clock.now()
        latest = latest_fire(job, now)
        due = select_due(
            latest,
            handled,
            now,
            policy=schedule.missed_run_policy,
            misfire_grace_sec=schedule.misfire_grace_sec,
        )
        if due is not None:
            for period in periods_of(job, due, schedule.services):
                if self._stopping.is_set():
                    break
                self._guarded(self._run, job, period, force=False)
        elif handled is None or latest > handled:
            self._log.warning(
                "schedule.missed",
                job=job.name,
                periods=periods_of(job, latest, schedule.services),
                fire_time=latest.isoformat(),
                policy=schedule.missed_run_policy,
            )
        return latest

    def _guarded(self, action: Any, *args: Any, **kwargs: Any) -> None:
        """Run a step of the loop; a database outage or job setup error must not end it."""
        try:
            action(*args, **kwargs)
        except (ChillflowError, psycopg2.Error) as exc:
            self._log.error("schedule.loop_error", error=type(exc).__name__, message=str(exc))

    def _run(self, job: JobSchedule, period: str, *, force: bool) -> dict[str, Any]:
        self._idle.clear()
        try:
            with ledger.period_lock(self._url(), job.name, period) as (conn, held):
                if not held:
                    return self._record_contention(conn, job, period)
                return self._run_locked(conn, job, period, force=force)
        finally:
            self._idle.set()

    def _run_locked(
        self, conn: Connection, job: JobSchedule, period: str, *, force: bool
    ) -> dict[str, Any]:
        log = self._log.bind(job=job.name, period=period)
        # Holding the lock, no live run of this period can exist: any 'running' row is orphaned.
        for run in ledger.mark_abandoned(
            conn, ledger.running_runs(conn, job.name, period), now=self.clock.now()
        ):
            log.warning("schedule.stale_run", run_id=run.run_id, reason=run.error)
        plan = plan_job(job, period, self.schedule)
        if plan.missing:
            message = f"raw file {plan.missing[0]} has not arrived"
            # One row when a period is first found awaited, not one per daily check.
            if ledger.period_statuses(conn, job.name, period):
                return _outcome(job, period, "awaited", message, [])
            stats = {"skip_reason": "raw_file_missing", "missing": [str(plan.missing[0])]}
            log.warning("schedule.awaiting", reason=message)
            return _outcome(
                job,
                period,
                "awaited",
                message,
                [self._record_skipped(conn, job, period, message, stats)],
            )
        done_before = None if force else ledger.latest_run(conn, [job.name], period, "succeeded")
        if done_before is not None and (done_before.stats or {}).get("raw_file") == plan.raw_file:
            log.info("schedule.already_done", run_id=done_before.run_id)
            message = f"period already succeeded (run {done_before.run_id})"
            if plan.raw_file is not None:
                message = f"already loaded from this file (run {done_before.run_id})"
            return _outcome(job, period, "skipped", message, [])

        rows: list[ledger.JobRun] = []
        done: set[str] = set()
        for attempt in range(1, job.retries + 2):
            if self._stopping.is_set():
                break
            row, retryable = self._attempt(conn, job, period, plan, attempt, done)
            rows.append(row)
            if row.status != "failed" or not retryable or attempt > job.retries:
                break
            delay = job.retry_backoff_sec * 2 ** (attempt - 1)
            log.info("schedule.retrying", attempt=attempt + 1, delay_sec=delay)
            if self.clock.wait(delay, until=self._stopping):
                log.info("schedule.retry_abandoned", reason="stopping")
                break
        if not rows:
            return _outcome(job, period, "skipped", "the scheduler is stopping", [])
        return _outcome(job, period, rows[-1].status, rows[-1].error, rows)

    def _attempt(
        self,
        conn: Connection,
        job: JobSchedule,
        period: str,
        plan: JobPlan,
        attempt: int,
        done: set[str],
    ) -> tuple[ledger.JobRun, bool]:
        """Run the plan's steps once as a new row; return the finished row and if it may retry."""
        run_id = new_run_id()
        log_path = self.settings.data_dir / "logs" / "scheduler" / job.name / f"{run_id}.log"
        with bound_run(job.name, run_id, period=period, attempt=attempt) as log:
            ledger.insert_run(
                conn,
                job=job.name,
                period=period,
                run_id=run_id,
                attempt=attempt,
                status="running",
                started_at=self.clock.now(),
            )
            log.info("schedule.run_started", steps=[step.name for step in plan.steps])
            result = run_steps(
                plan.steps,
                self.runner,
                env=self._child_env(),
                log_path=log_path,
                cancel=self._cancel,
                timeout_sec=job.timeout_sec,
                done=done,
            )
            stats: dict[str, Any] = {"steps": list(result.steps), "log_file": str(log_path)}
            if plan.raw_file is not None:
                stats["raw_file"] = plan.raw_file
            row = ledger.finish_run(
                conn,
                run_id,
                status=result.status,
                finished_at=self.clock.now(),
                stats=stats,
                error=result.error,
            )
            log.info("schedule.run_finished", status=row.status, error=row.error)
        return row, result.retryable

    def _awaiting(self, job: JobSchedule, at: datetime) -> list[str]:
        """The monthly pipeline's watched periods at ``at`` whose raw file has not arrived."""
        if job.kind != "monthly_pipeline":
            return []
        return [
            period
            for period in periods_of(job, at, self.schedule.services)
            if not raw_path(self.schedule, *split_monthly_period(period)).is_file()
        ]

    def _record_contention(self, conn: Connection, job: JobSchedule, period: str) -> dict[str, Any]:
        holders = ledger.running_runs(conn, job.name, period)
        holder = (
            f"run {holders[-1].run_id} on {holders[-1].host} (pid {holders[-1].pid})"
            if holders
            else "another scheduler"
        )
        message = f"{job.name} {period} is already running: {holder} holds its lock"
        row = self._record_skipped(conn, job, period, message, {"skip_reason": "locked"})
        self._log.warning("schedule.locked", job=job.name, period=period, holder=holder)
        return _outcome(job, period, "skipped", message, [row])

    def _record_skipped(
        self, conn: Connection, job: JobSchedule, period: str, message: str, stats: dict[str, Any]
    ) -> ledger.JobRun:
        """Record a run that did not start, with its reason, as one finished ``skipped`` row."""
        now = self.clock.now()
        return ledger.insert_run(
            conn,
            job=job.name,
            period=period,
            run_id=new_run_id(),
            attempt=1,
            status="skipped",
            started_at=now,
            finished_at=now,
            stats=stats,
            error=message,
        )

    def _wind_down(self) -> None:
        """Give the running job its grace period, then cancel it."""
        grace = self.schedule.shutdown_grace_sec
        self._log.info("schedule.stopping", running=not self._idle.is_set(), grace_sec=grace)
        if not self.clock.wait(grace, until=self._idle):
            self._log.warning("schedule.cancelling", reason="shutdown grace period is over")
            self._cancel.set()

    def _child_env(self) -> dict[str, str]:
        """The jobs' environment: this process's, pointed at the same data, lake and database."""
        settings = self.settings
        env = {
            **os.environ,
            "CHILLFLOW_DATA_DIR": str(settings.data_dir),
            "CHILLFLOW_LAKE_DIR": str(settings.lake_dir),
        }
        if settings.database_url:
            env["DATABASE_URL"] = settings.database_url.url()
        return env

    def _url(self) -> DatabaseUrl:
        if self._database_url is None:
            url = runtime.database_url(self.settings)
            with connect(url) as conn:
                init_schema(conn)
            self._database_url = url
        return self._database_url

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Connection]:
        with connect(self._url()) as conn:
            yield conn


def _outcome(
    job: JobSchedule, period: str, status: str, message: str | None, rows: list[ledger.JobRun]
) -> dict[str, Any]:
    return {
        "job": job.name,
        "period": period,
        "status": status,
        "attempts": sum(row.status != "skipped" for row in rows),
        "message": message,
        "runs": [row.as_dict() for row in rows],
    }


def _combined(job: JobSchedule, label: str, outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = [outcome["status"] for outcome in outcomes]
    messages = [f"{o['period']}: {o['message']}" for o in outcomes if o["message"]]
    return {
        "job": job.name,
        "period": label,
        "status": min(statuses, key=_STATUS_ORDER.index, default="skipped"),
        "attempts": sum(outcome["attempts"] for outcome in outcomes),
        "message": "; ".join(messages) or ("the scheduler is stopping" if not outcomes else None),
        "runs": [run for outcome in outcomes for run in outcome["runs"]],
        "periods": [
            {key: outcome[key] for key in ("period", "status", "attempts", "message")}
            for outcome in outcomes
        ],
    }
