"""``ops.job_run``, the one run ledger, and the advisory locks of runs (psycopg2).

Every run of a stage or a scheduled job is one row; its period is a slice (``yellow/2025-02``),
several joined by commas, or a window. A ``running`` row whose advisory lock is free belongs to
a dead process (docs/decisions.md, "One run ledger and one writer per slice").
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any

import psycopg2
from psycopg2.extensions import connection as Connection

from chillflow.database_url import DatabaseUrl, mask_url
from chillflow.errors import ChillflowError, error_summary
from chillflow.pids import pid_alive
from chillflow.storage.locks import HELD_RUN_LOCK, try_lock, unlock
from chillflow.storage.postgres import connect, init_schema

#: The jobs the stages record their runs under.
CURATE_JOB = "curate"
PROCESS_TRIPS_JOB = "process_trips"
AGGREGATE_JOB = "aggregate"
BACKFILL_JOB = "aggregate_backfill"
MAINTAIN_JOB = "maintain"


@dataclass(frozen=True)
class JobRun:
    """One row of ``ops.job_run``: one attempt of a job for a period."""

    id: int
    job: str
    period: str
    run_id: str
    attempt: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    pid: int | None
    host: str | None
    rows_read: int | None
    rows_written: int | None
    stats: dict[str, Any] | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """Return the row as JSON-ready values (times in ISO 8601, UTC)."""
        row = asdict(self)
        for key in ("started_at", "finished_at"):
            if row[key] is not None:
                row[key] = row[key].astimezone(timezone.utc).isoformat()
        return row


_COLUMNS = ", ".join(field.name for field in fields(JobRun))


def insert_run(
    conn: Connection,
    *,
    job: str,
    period: str,
    run_id: str,
    attempt: int = 1,
    status: str = "running",
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    stats: dict[str, Any] | None = None,
    error: str | None = None,
) -> JobRun:
    """Record a run of this process (pid and host are this process's); times default to now."""
    statement = (
        "INSERT INTO ops.job_run (job, period, run_id, attempt, status, started_at, finished_at,"
        " pid, host, stats, error) VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), %s, %s, %s,"
        f" %s, %s) RETURNING {_COLUMNS}"
    )
    values = (job, period, run_id, attempt, status, started_at, finished_at)
    (run,) = _runs(
        conn, statement, (*values, os.getpid(), os.uname().nodename, _json(stats), error)
    )
    return run


def finish_run(
    conn: Connection,
    run_id: str,
    *,
    status: str,
    finished_at: datetime | None = None,
    stats: dict[str, Any] | None = None,
    error: str | None = None,
    rows_read: int | None = None,
    rows_written: int | None = None,
) -> JobRun:
    """Record a run's outcome (``stats`` None keeps those of its start), whatever its status.

    A row marked abandoned while its process had lost its database session gets the outcome.
    """
    statement = (
        "UPDATE ops.job_run SET status = %s, finished_at = coalesce(%s, now()),"
        " stats = coalesce(%s::jsonb, stats), error = %s, rows_read = %s, rows_written = %s"
        f" WHERE run_id = %s RETURNING {_COLUMNS}"
    )
    values = (status, finished_at, _json(stats), error, rows_read, rows_written, run_id)
    return _runs(conn, statement, values)[0]


def restart_run(conn: Connection, run_id: str) -> JobRun:
    """Mark an unfinished run ``running`` again as its next attempt, by this process."""
    statement = (
        "UPDATE ops.job_run SET status = 'running', attempt = attempt + 1, started_at = now(),"
        " finished_at = NULL, error = NULL, pid = %s, host = %s"
        f" WHERE run_id = %s RETURNING {_COLUMNS}"
    )
    return _runs(conn, statement, (os.getpid(), os.uname().nodename, run_id))[0]


def list_runs(conn: Connection, *, job: str | None = None, limit: int = 20) -> list[JobRun]:
    """Return the latest runs, newest first, of one job or of all."""
    return _select(
        conn,
        "WHERE %(job)s::text IS NULL OR job = %(job)s ORDER BY id DESC LIMIT %(limit)s",
        job=job,
        limit=limit,
    )


def latest_runs(conn: Connection) -> dict[str, JobRun]:
    """Return each job's most recent run, not counting records of a lost race for a lock."""
    where = "stats ->> 'skip_reason' IS DISTINCT FROM 'locked'"
    latest = f"WHERE id IN (SELECT max(id) FROM ops.job_run WHERE {where} GROUP BY job)"
    return {run.job: run for run in _select(conn, latest)}


def latest_run(
    conn: Connection, jobs: Sequence[str], period: str | None = None, status: str | None = None
) -> JobRun | None:
    """Return the most recent run of any of ``jobs`` (of ``period``, with ``status``), or None."""
    runs = _select(
        conn,
        "WHERE job = ANY(%(jobs)s) AND (%(period)s::text IS NULL OR period = %(period)s)"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " ORDER BY started_at DESC, id DESC LIMIT 1",
        jobs=list(jobs),
        period=period,
        status=status,
    )
    return runs[0] if runs else None


def period_statuses(conn: Connection, job: str, period: str) -> set[str]:
    """Return the statuses recorded for a job's period."""
    statement = "SELECT DISTINCT status FROM ops.job_run WHERE job = %s AND period = %s"
    return {status for (status,) in _query(conn, statement, (job, period))}


def running_runs(conn: Connection, job: str, period: str | None) -> list[JobRun]:
    """Return a job's ``running`` rows whose period shares a slice with ``period`` (None: all)."""
    parts = None if period is None else period.split(",")
    return _select(
        conn,
        "WHERE job = %(job)s AND status = 'running'"
        " AND (%(parts)s IS NULL OR string_to_array(period, ',') && %(parts)s::text[]) ORDER BY id",
        job=job,
        parts=parts,
    )


def orphaned_runs(conn: Connection, jobs: Sequence[str]) -> list[JobRun]:
    """Return the ``running`` rows of scheduled ``jobs`` whose (job, period) lock nobody holds."""
    return _select(
        conn,
        "r WHERE r.status = 'running' AND r.job = ANY(%(jobs)s) AND NOT EXISTS (SELECT 1"
        f" FROM pg_locks l WHERE {HELD_RUN_LOCK}"
        " AND l.objid = hashtext(r.job || '|' || r.period)::oid) ORDER BY r.id",
        jobs=list(jobs),
    )


def mark_abandoned(
    conn: Connection, runs: list[JobRun], *, now: datetime | None = None
) -> list[JobRun]:
    """Mark ``running`` rows whose process is gone as failed (not those finished meanwhile)."""
    statement = (
        "UPDATE ops.job_run SET status = 'failed', finished_at = coalesce(%s, now()),"
        f" error = %s WHERE id = %s AND status = 'running' RETURNING {_COLUMNS}"
    )
    return [m for run in runs for m in _runs(conn, statement, (now, abandoned_reason(run), run.id))]


def abandoned_reason(run: JobRun) -> str:
    """Explain why a ``running`` row without a lock holder cannot still be running."""
    if run.host == os.uname().nodename and run.pid is not None and not pid_alive(run.pid):
        return f"abandoned: process {run.pid} on {run.host} exited without finishing the run"
    return (
        f"abandoned: no process holds the run's lock any more (process {run.pid} on "
        f"{run.host} or its database session ended)"
    )


def finished_chunks(conn: Connection, job: str, backfill_run_id: str) -> dict[str, datetime]:
    """Periods of the succeeded runs of ``job`` a backfill started, with when they finished."""
    statement = (
        "SELECT period, max(finished_at) FROM ops.job_run WHERE job = %s"
        " AND status = 'succeeded' AND stats ->> 'backfill_run_id' = %s GROUP BY period"
    )
    return dict(_query(conn, statement, (job, backfill_run_id)))


def slices_changed_since(
    conn: Connection, jobs: Sequence[str], months: Sequence[str], since: datetime
) -> list[str]:
    """Run ids of ``jobs``' runs that succeeded after ``since`` on a slice of one of ``months``."""
    statement = (
        "SELECT run_id FROM ops.job_run WHERE job = ANY(%s) AND status = 'succeeded'"
        " AND finished_at > %s AND EXISTS (SELECT 1 FROM unnest(string_to_array(period, ','))"
        " part WHERE split_part(part, '/', 2) = ANY(%s)) ORDER BY id"
    )
    return [run_id for (run_id,) in _query(conn, statement, (list(jobs), since, list(months)))]


@contextlib.contextmanager
def period_lock(url: DatabaseUrl, job: str, period: str) -> Iterator[tuple[Connection, bool]]:
    """Yield a dedicated autocommit connection and whether it took the (job, period) lock."""
    name = f"{job}|{period}"
    with connect(url) as conn:
        conn.autocommit = True
        held = try_lock(conn, name)
        try:
            yield conn, held
        finally:
            if held:
                # A lost connection has released the lock with its session already.
                with contextlib.suppress(psycopg2.Error):
                    unlock(conn, name)


@dataclass
class RunRecord:
    """A run's attempt, and what it reports to :func:`recorded_run` when it succeeds."""

    attempt: int = 1
    stats: dict[str, Any] | None = None
    rows_read: int | None = None
    rows_written: int | None = None

    def succeeded(
        self, stats: dict[str, Any], *, rows_read: int | None, rows_written: int | None
    ) -> None:
        """Set the statistics and row counts the run's row gets."""
        self.stats, self.rows_read, self.rows_written = stats, rows_read, rows_written


@contextlib.contextmanager
def recorded_run(
    url: DatabaseUrl | None,
    job: str,
    period: str,
    run_id: str,
    *,
    stats: dict[str, Any] | None = None,
    resume: bool = False,
    abandon_all: bool = False,
) -> Iterator[RunRecord]:
    """Record the block as a run: ``running`` now, then ``succeeded`` or ``failed``.

    Call it while holding the run's locks: any other ``running`` row of ``job`` whose period
    (slices comma-joined, or a window) shares a slice with ``period`` belongs to a dead process
    and is marked failed first; with ``abandon_all`` (the locks cover every period) any such
    row. ``stats`` known at the start are kept when the run fails; ``resume`` continues the
    unfinished row ``run_id`` as its next attempt. Without ``url`` nothing is recorded. The
    block calls :meth:`RunRecord.succeeded` on the record yielded before it ends.
    """
    record = RunRecord()
    if url is None:
        yield record
        return
    with connect(url) as conn:
        init_schema(conn)
        stale = running_runs(conn, job, None if abandon_all else period)
        mark_abandoned(conn, [run for run in stale if run.run_id != run_id])
        if resume:
            record.attempt = restart_run(conn, run_id).attempt
        else:
            insert_run(conn, job=job, period=period, run_id=run_id, stats=stats)
    try:
        yield record
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        # A database that is down must not hide the run's own error. The error is one line,
        # passwords masked.
        error = mask_url(f"{type(exc).__name__}: {error_summary(exc)}")
        with contextlib.suppress(ChillflowError, psycopg2.Error), connect(url) as conn:
            finish_run(conn, run_id, status=status, error=error)
        raise
    with connect(url) as conn:
        outcome = {"stats": record.stats, "rows_read": record.rows_read}
        finish_run(conn, run_id, status="succeeded", rows_written=record.rows_written, **outcome)


def recent_runs(conn: Connection, per_job: int) -> list[dict[str, Any]]:
    """The latest ``per_job`` runs of each job, by job, newest first, times as UTC text."""
    statement = (
        "SELECT to_jsonb(r) - 'n' || jsonb_build_object("
        " 'started_at', to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),"
        " 'finished_at', to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),"
        " 'duration_sec', round(extract(epoch FROM finished_at - started_at)::numeric, 1))"
        " FROM (SELECT *, row_number() OVER (PARTITION BY job ORDER BY id DESC) AS n"
        " FROM ops.job_run) r WHERE n <= %s ORDER BY job, id DESC"
    )
    return [run for (run,) in _query(conn, statement, (per_job,))]


def _select(conn: Connection, where: str, **params: Any) -> list[JobRun]:
    return _runs(conn, f"SELECT {_COLUMNS} FROM ops.job_run {where}", params)


def _runs(conn: Connection, statement: str, params: Any) -> list[JobRun]:
    return [JobRun(*row) for row in _query(conn, statement, params)]


def _query(conn: Connection, statement: str, params: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def _json(stats: dict[str, Any] | None) -> str | None:
    return None if stats is None else json.dumps(stats, default=str, sort_keys=True)
