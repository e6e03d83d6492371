"""``ops.job_run`` through psycopg2: run history, one lock per (job, period) and stale runs.

A run holds a session-level advisory lock on its (job, period) from before its row is written
until after it is finished, on a connection of its own. The lock is what makes a run active: it
keeps a second scheduler from starting the same period, and because PostgreSQL drops a session's
locks when the session ends, a ``running`` row whose lock nobody holds belongs to a scheduler
that died. That test needs no heartbeat and works across hosts.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import psycopg2
from psycopg2.extensions import connection as Connection

from chillflow.pids import pid_alive
from chillflow.storage.postgres import connect

# Two-key advisory locks live apart from single-bigint ones such as the schema lock; the first
# key ("CFJB") marks a ChillFlow job lock, the second is hashtext of the job and period.
LOCK_NAMESPACE = 0x43464A42
_LOCK_KEY_SQL = "hashtext(%(job)s || '|' || %(period)s)"
_COLUMNS = (
    "id, job, period, run_id, attempt, status, started_at, finished_at, pid, host, stats, error"
)


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
    stats: dict[str, Any] | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """Return the row as JSON-ready values (times in ISO 8601, UTC)."""
        row = asdict(self)
        for key in ("started_at", "finished_at"):
            if row[key] is not None:
                row[key] = row[key].astimezone(timezone.utc).isoformat()
        return row


def insert_run(
    conn: Connection,
    *,
    job: str,
    period: str,
    run_id: str,
    attempt: int,
    status: str,
    started_at: datetime,
    finished_at: datetime | None = None,
    stats: dict[str, Any] | None = None,
    error: str | None = None,
) -> JobRun:
    """Record a run of this process (pid and host are this process's).

    Returns:
        The new row.
    """
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO ops.job_run (job, period, run_id, attempt, status, started_at,"
            f" finished_at, pid, host, stats, error)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (
                job,
                period,
                run_id,
                attempt,
                status,
                started_at,
                finished_at,
                os.getpid(),
                os.uname().nodename,
                _json(stats),
                error,
            ),
        )
        return JobRun(*cur.fetchone())


def finish_run(
    conn: Connection,
    run_id: str,
    *,
    status: str,
    finished_at: datetime,
    stats: dict[str, Any] | None,
    error: str | None,
) -> JobRun:
    """Record a run's outcome.

    The row is updated whatever its status: if stale-run detection marked it failed while this
    process had lost its database session, the outcome the run actually had wins.

    Returns:
        The updated row.
    """
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE ops.job_run SET status = %s, finished_at = %s, stats = %s, error = %s"
            f" WHERE run_id = %s RETURNING {_COLUMNS}",
            (status, finished_at, _json(stats), error, run_id),
        )
        return JobRun(*cur.fetchone())


def list_runs(conn: Connection, *, job: str | None = None, limit: int = 20) -> list[JobRun]:
    """Return the latest runs, newest first, of one job or of all."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM ops.job_run"
            " WHERE %(job)s::text IS NULL OR job = %(job)s ORDER BY id DESC LIMIT %(limit)s",
            {"job": job, "limit": limit},
        )
        return [JobRun(*row) for row in cur.fetchall()]


def latest_runs(conn: Connection) -> dict[str, JobRun]:
    """Return each job's most recent run, not counting records of a lost race for a lock."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT DISTINCT ON (job) {_COLUMNS} FROM ops.job_run"
            " WHERE stats ->> 'skip_reason' IS DISTINCT FROM 'locked' ORDER BY job, id DESC"
        )
        return {row[1]: JobRun(*row) for row in cur.fetchall()}


def period_statuses(conn: Connection, job: str, period: str) -> set[str]:
    """Return the statuses recorded for a job's period."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT status FROM ops.job_run WHERE job = %s AND period = %s", (job, period)
        )
        return {status for (status,) in cur.fetchall()}


def latest_success(conn: Connection, job: str, period: str) -> JobRun | None:
    """Return the latest ``succeeded`` row of a job's period, if any."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM ops.job_run WHERE job = %s AND period = %s"
            " AND status = 'succeeded' ORDER BY id DESC LIMIT 1",
            (job, period),
        )
        row = cur.fetchone()
        return None if row is None else JobRun(*row)


def running_runs(conn: Connection, job: str, period: str) -> list[JobRun]:
    """Return the rows of a job's period that say ``running``."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM ops.job_run"
            " WHERE job = %s AND period = %s AND status = 'running' ORDER BY id",
            (job, period),
        )
        return [JobRun(*row) for row in cur.fetchall()]


def orphaned_runs(conn: Connection, jobs: Sequence[str]) -> list[JobRun]:
    """Return the ``running`` rows of scheduled ``jobs`` whose (job, period) lock nobody holds.

    Rows of other jobs are not considered: the stages record their own runs without this lock.
    """
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM ops.job_run r"
            " WHERE r.status = 'running' AND r.job = ANY(%(jobs)s) AND NOT EXISTS ("
            " SELECT 1 FROM pg_locks l"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid = %(namespace)s AND l.objid = hashtext(r.job || '|' || r.period)::oid"
            ") ORDER BY r.id",
            {"namespace": LOCK_NAMESPACE, "jobs": list(jobs)},
        )
        return [JobRun(*row) for row in cur.fetchall()]


def mark_abandoned(conn: Connection, runs: list[JobRun], *, now: datetime) -> list[JobRun]:
    """Mark ``running`` rows whose scheduler is gone as failed, with the reason.

    Rows finished meanwhile by their owner are left alone.

    Returns:
        The rows marked.
    """
    marked = []
    with conn.cursor() as cur:
        for run in runs:
            cur.execute(
                f"UPDATE ops.job_run SET status = 'failed', finished_at = %s, error = %s"
                f" WHERE id = %s AND status = 'running' RETURNING {_COLUMNS}",
                (now, abandoned_reason(run), run.id),
            )
            row = cur.fetchone()
            if row is not None:
                marked.append(JobRun(*row))
    return marked


def abandoned_reason(run: JobRun) -> str:
    """Explain why a ``running`` row without a lock holder cannot still be running."""
    if run.host == os.uname().nodename and run.pid is not None and not pid_alive(run.pid):
        return (
            f"abandoned: scheduler process {run.pid} on {run.host} exited without finishing the run"
        )
    return (
        f"abandoned: no scheduler holds the run's lock any more (process {run.pid} on "
        f"{run.host} or its database session ended)"
    )


def try_lock(conn: Connection, job: str, period: str) -> bool:
    """Take the (job, period) lock for this session if no other session holds it."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT pg_try_advisory_lock(%(namespace)s, {_LOCK_KEY_SQL})",
            {"namespace": LOCK_NAMESPACE, "job": job, "period": period},
        )
        return cur.fetchone()[0]


def unlock(conn: Connection, job: str, period: str) -> None:
    """Release the (job, period) lock held by this session."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT pg_advisory_unlock(%(namespace)s, {_LOCK_KEY_SQL})",
            {"namespace": LOCK_NAMESPACE, "job": job, "period": period},
        )


@contextlib.contextmanager
def period_lock(url: str, job: str, period: str) -> Iterator[tuple[Connection, bool]]:
    """Try to take the (job, period) lock on a dedicated autocommit connection for the block.

    Yields:
        The connection, for the run's own rows, and whether the lock was taken; when another
        session holds it, the connection can still record that.

    Raises:
        DatabaseError: The server cannot be reached.
    """
    with connect(url) as conn:
        conn.autocommit = True
        held = try_lock(conn, job, period)
        try:
            yield conn, held
        finally:
            if held:
                # A lost connection has released the lock with its session already.
                with contextlib.suppress(psycopg2.Error):
                    unlock(conn, job, period)


def _json(stats: dict[str, Any] | None) -> str | None:
    return None if stats is None else json.dumps(stats, default=str, sort_keys=True)
