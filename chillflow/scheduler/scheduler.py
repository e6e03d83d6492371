"""``BatchScheduler``: runs the batch jobs on their schedules, unattended, with a run history."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg2
import structlog
from psycopg2.extensions import connection as Connection

from chillflow import runtime
from chillflow.database_url import DatabaseUrl
from chillflow.errors import ChillflowError
from chillflow.logs import bound_run, new_run_id
from chillflow.scheduler.config import JobSchedule, ScheduleConfig, load_schedule
from chillflow.scheduler.executor import run_process, run_steps
from chillflow.scheduler.planner import (
    JobPlan,
    latest_fire,
    next_fire,
    parse_periods,
    periods_of,
    plan_at,
    plan_job,
    raw_path,
    select_due,
)
from chillflow.settings import Settings
from chillflow.storage import ledger
from chillflow.storage.postgres import connect, init_schema
from chillflow.storage.tlc_download import download_month

#: The loop's longest sleep: it notices a changed wall clock (a machine that slept) this soon.
MAX_SLEEP_SEC = 60.0
#: How often the loop looks for runs left ``running`` by schedulers that died.
STALE_SCAN_SEC = 300.0
#: A combined outcome of several periods takes the first of these statuses among them.
_STATUS_ORDER = ("cancelled", "failed", "succeeded", "skipped", "awaited")


class SystemClock:
    """The real time, in UTC; a wait ends early when its event is set."""

    def now(self) -> datetime:  # noqa: D102
        return datetime.now(timezone.utc)

    def wait(self, seconds: float, until: threading.Event) -> bool:  # noqa: D102
        return until.wait(max(0.0, seconds))


class BatchScheduler:
    """Run the jobs of ``conf/schedules.toml`` on their crons as child processes, in ops.job_run.

    One (job, period) runs at a time across the schedulers sharing the database, retried with
    exponential backoff. ``clock`` has ``now()`` and ``wait(seconds, until)``.
    """

    def __init__(
        self, settings: Settings, clock: Any = None, *, schedule: ScheduleConfig | None = None
    ):
        self.settings = settings
        self.schedule = schedule or load_schedule(
            data_dir=settings.data_dir, data_time_zone=settings.curate.data_time_zone
        )
        self.clock = clock or SystemClock()
        self._database_url: DatabaseUrl | None = None
        self._stopping, self._cancel, self._idle = (threading.Event() for _ in range(3))
        self._idle.set()
        self._log = structlog.get_logger("chillflow.scheduler")

    def jobs(self) -> list[dict[str, Any]]:
        """List the jobs: name, kind, cron, timezone, next_run, last_run, awaiting (raw files)."""
        now = self.clock.now()
        with connect(self._url()) as conn:
            latest = ledger.latest_runs(conn)
        return [
            {
                "name": job.name,
                "kind": job.kind,
                "cron": job.cron,
                "timezone": job.timezone.key,
                "next_run": next_fire(job, now).astimezone(job.timezone).isoformat(),
                "last_run": latest[job.name].as_dict() if job.name in latest else None,
                "awaiting": [
                    period
                    for period in self._periods(job, now)
                    if job.kind == "monthly_pipeline"
                    and not raw_path(self.schedule, period).is_file()
                ],
            }
            for job in self.schedule.jobs
        ]

    def plan(self, at: datetime) -> dict[str, Any]:
        """Say what the jobs firing in the minute of ``at`` would run (:func:`plan_at`)."""
        return plan_at(self.schedule, at, now=self.clock.now())

    def run_job(self, name: str, period: str | None = None) -> dict[str, Any]:
        """Run one job now with its retries, for ``period`` (by default its latest scheduled one).

        The monthly pipeline without a period loads the watched files new or changed since their
        last load; with a period it reloads. Several periods combine into one outcome.
        """
        job = self.schedule.job(name)
        self._stopping.clear()
        self._cancel.clear()
        if period is None:
            periods = self._periods(job, latest_fire(job, self.clock.now()))
        else:
            periods = parse_periods(job, period, self.schedule.services)
        force = period is not None or job.kind != "monthly_pipeline"
        outcomes = []
        for each in periods:
            if self._stopping.is_set():
                break
            outcomes.append(self._run(job, each, force=force))
        if len(outcomes) == 1:
            return outcomes[0]
        statuses = [outcome["status"] for outcome in outcomes]
        messages = [f"{o['period']}: {o['message']}" for o in outcomes if o["message"]]
        return {
            "job": job.name,
            "period": period or ", ".join(periods),
            "status": min(statuses, key=_STATUS_ORDER.index, default="skipped"),
            "attempts": sum(outcome["attempts"] for outcome in outcomes),
            "message": "; ".join(messages) or (None if outcomes else "the scheduler is stopping"),
            "runs": [run for outcome in outcomes for run in outcome["runs"]],
            "periods": [
                {key: outcome[key] for key in ("period", "status", "attempts", "message")}
                for outcome in outcomes
            ],
        }

    def recover_stale_runs(self) -> list[dict[str, Any]]:
        """Mark runs whose scheduler died (their lock is free) as failed, with the reason."""
        with connect(self._url()) as conn:
            orphans = ledger.orphaned_runs(conn, [job.name for job in self.schedule.jobs])
            marked = ledger.mark_abandoned(conn, orphans, now=self.clock.now())
        for run in marked:
            self._log.warning(
                "schedule.stale_run", job=run.job, period=run.period, run_id=run.run_id,
                reason=run.error,
            )  # fmt: skip
        return [run.as_dict() for run in marked]

    def start(self) -> None:
        """Run the schedule in the foreground until :meth:`stop`, SIGINT or SIGTERM."""
        self._stopping.clear()
        self._cancel.clear()
        with self.stop_on_signals():
            self._loop()
        self._log.info("schedule.stopped")

    def stop(self) -> None:
        """Start no new job; cancel the running one after its grace (asked again: at once)."""
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
        jobs = self.schedule.jobs
        self._log.info(
            "schedule.started", jobs=[job.name for job in jobs],
            policy=self.schedule.missed_run_policy, pid=os.getpid(),
        )  # fmt: skip
        self.recover_stale_runs()
        scanned = self.clock.now()
        handled = self._handled_at_start()
        while True:
            for job in jobs:
                if self._stopping.is_set():
                    return
                handled[job.name] = self._run_if_due(job, handled[job.name])
            now = self.clock.now()
            if (now - scanned).total_seconds() >= STALE_SCAN_SEC:
                self._guarded(self.recover_stale_runs)
                scanned = now
            wake = min(next_fire(job, now) for job in jobs)
            if self.clock.wait(min((wake - now).total_seconds(), MAX_SLEEP_SEC), self._stopping):
                return

    def _handled_at_start(self) -> dict[str, datetime | None]:
        """Each job's latest fire time, or None when its period (no row but cancelled) must run."""
        now, handled = self.clock.now(), {}
        with connect(self._url()) as conn:
            for job in self.schedule.jobs:
                latest = latest_fire(job, now)
                handled[job.name] = None
                if job.kind != "monthly_pipeline":
                    (period,) = periods_of(job, latest)
                    if ledger.period_statuses(conn, job.name, period) - {"cancelled"}:
                        handled[job.name] = latest
        return handled

    def _run_if_due(self, job: JobSchedule, handled: datetime | None) -> datetime:
        now = self.clock.now()
        latest = latest_fire(job, now)
        policy, grace = self.schedule.missed_run_policy, self.schedule.misfire_grace_sec
        due = select_due(latest, handled, now, policy=policy, misfire_grace_sec=grace)
        if due is not None:
            for period in self._periods(job, due):
                if self._stopping.is_set():
                    break
                self._guarded(self._run, job, period, force=False)
        elif handled is None or latest > handled:
            self._log.warning(
                "schedule.missed", job=job.name, periods=self._periods(job, latest),
                fire_time=latest.isoformat(), policy=policy,
            )  # fmt: skip
        return latest

    def _guarded(self, action: Any, *args: Any, **kwargs: Any) -> None:
        """A database outage or job setup error must not end the loop."""
        try:
            action(*args, **kwargs)
        except (ChillflowError, psycopg2.Error) as exc:
            self._log.error("schedule.loop_error", error=type(exc).__name__, message=str(exc))

    def _periods(self, job: JobSchedule, fire: datetime) -> list[str]:
        return periods_of(job, fire, self.schedule.services)

    def _run(self, job: JobSchedule, period: str, *, force: bool) -> dict[str, Any]:
        self._idle.clear()
        try:
            with ledger.period_lock(self._url(), job.name, period) as (conn, held):
                if held:
                    return self._run_locked(conn, job, period, force=force)
                holders = ledger.running_runs(conn, job.name, period)
                last = holders[-1] if holders else None
                holder = f"run {last.run_id} on {last.host} (pid {last.pid})" if last else None
                holder = holder or "another scheduler"
                message = f"{job.name} {period} is already running: {holder} holds its lock"
                self._log.warning("schedule.locked", job=job.name, period=period, holder=holder)
                return self._skipped(conn, job, period, "skipped", message, skip_reason="locked")
        finally:
            self._idle.set()

    def _run_locked(
        self, conn: Connection, job: JobSchedule, period: str, *, force: bool
    ) -> dict[str, Any]:
        log = self._log.bind(job=job.name, period=period)
        # Holding the lock, no live run of this period can exist: any 'running' row is orphaned.
        running = ledger.running_runs(conn, job.name, period)
        for run in ledger.mark_abandoned(conn, running, now=self.clock.now()):
            log.warning("schedule.stale_run", run_id=run.run_id, reason=run.error)
        plan = plan_job(job, period, self.schedule)
        if plan.missing is not None and self.settings.download.before_monthly:
            month, _, service = period.partition("/")
            try:
                download_month(service, month, self.schedule.landing_dir, self.settings.download)
                plan = plan_job(job, period, self.schedule)
            except ChillflowError as exc:  # not published yet, or the server failed: awaited
                log.warning("schedule.download_failed", error=type(exc).__name__, message=str(exc))
        if plan.missing is not None:
            message = f"raw file {plan.missing} has not arrived"
            # One row when a period is first found awaited, not one per daily check.
            if ledger.period_statuses(conn, job.name, period):
                return _outcome(job, period, "awaited", message, [])
            log.warning("schedule.awaiting", reason=message)
            stats = {"skip_reason": "raw_file_missing", "missing": [str(plan.missing)]}
            return self._skipped(conn, job, period, "awaited", message, **stats)
        done_before = None if force else ledger.latest_run(conn, [job.name], period, "succeeded")
        if done_before is not None and (done_before.stats or {}).get("raw_file") == plan.raw_file:
            log.info("schedule.already_done", run_id=done_before.run_id)
            what = "already loaded from this file" if plan.raw_file else "period already succeeded"
            return _outcome(job, period, "skipped", f"{what} (run {done_before.run_id})", [])
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
        self, conn: Connection, job: JobSchedule, period: str, plan: JobPlan, attempt: int,
        done: set[str],
    ) -> tuple[ledger.JobRun, bool]:  # fmt: skip
        run_id = new_run_id()
        log_path = self.settings.data_dir / "logs" / "scheduler" / job.name / f"{run_id}.log"
        with bound_run(job.name, run_id, period=period, attempt=attempt) as log:
            ledger.insert_run(
                conn, job=job.name, period=period, run_id=run_id, attempt=attempt,
                status="running", started_at=self.clock.now(),
            )  # fmt: skip
            log.info("schedule.run_started", steps=[step.name for step in plan.steps])
            # The jobs run with this process's environment, pointed at the same data and lake.
            env = {**os.environ, "CHILLFLOW_DATA_DIR": str(self.settings.data_dir),
                   "CHILLFLOW_LAKE_DIR": str(self.settings.lake_dir)}  # fmt: skip
            if self.settings.database_url:
                env["DATABASE_URL"] = self.settings.database_url.url()
            result = run_steps(
                plan.steps, run_process, env=env, log_path=log_path, cancel=self._cancel,
                timeout_sec=job.timeout_sec, done=done,
            )  # fmt: skip
            stats: dict[str, Any] = {"steps": list(result.steps), "log_file": str(log_path)}
            if plan.raw_file is not None:
                stats["raw_file"] = plan.raw_file
            row = ledger.finish_run(
                conn, run_id, status=result.status, finished_at=self.clock.now(), stats=stats,
                error=result.error,
            )  # fmt: skip
            log.info("schedule.run_finished", status=row.status, error=row.error)
        return row, result.retryable

    def _skipped(
        self,
        conn: Connection,
        job: JobSchedule,
        period: str,
        status: str,
        message: str,
        **stats: Any,
    ) -> dict[str, Any]:
        """Record a run that did not start (``stats`` say why) and return the ``status`` outcome."""
        now = self.clock.now()
        row = ledger.insert_run(
            conn, job=job.name, period=period, run_id=new_run_id(), attempt=1, status="skipped",
            started_at=now, finished_at=now, stats=stats, error=message,
        )  # fmt: skip
        return _outcome(job, period, status, message, [row])

    def _wind_down(self) -> None:
        grace = self.schedule.shutdown_grace_sec
        self._log.info("schedule.stopping", running=not self._idle.is_set(), grace_sec=grace)
        if not self.clock.wait(grace, until=self._idle):
            self._log.warning("schedule.cancelling", reason="shutdown grace period is over")
            self._cancel.set()

    def _url(self) -> DatabaseUrl:
        if self._database_url is None:
            url = runtime.database_url(self.settings)
            with connect(url) as conn:
                init_schema(conn)
            self._database_url = url
        return self._database_url


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
