"""PostgreSQL side of the aggregate stage (psycopg2): the KPI mart and the stage's run records.

``mart.zone_hourly_kpis`` is published from the KPI Delta table: a window's rows are deleted
and copied in again inside one transaction, so BI readers see the old or the new window, never
a mix. DELETE rather than TRUNCATE: TRUNCATE takes an ACCESS EXCLUSIVE lock that would block
every reader until the commit, and is not MVCC-safe for transactions that started before it.

Runs are recorded in ``ops.job_run`` (job ``aggregate``; a backfill has a parent row of job
``aggregate_backfill`` whose chunks carry its run id in ``stats``). Each record is written in a
transaction of its own, so it survives the failure of the run it describes.
"""

from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from psycopg2.extensions import connection as Connection

from chillflow.hour_window import HourWindow
from chillflow.schemas import HOURLY_KPIS_DDL, columns

MART_TABLE = "mart.zone_hourly_kpis"
MART_COLUMNS = tuple(columns(HOURLY_KPIS_DDL))
AGGREGATE_JOB = "aggregate"
BACKFILL_JOB = "aggregate_backfill"
_COPY_SQL = f"COPY {MART_TABLE} ({', '.join(MART_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
_COPY_BATCH_LINES = 50_000
_MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class MartReplace:
    """Rows a mart replacement removed and copied in."""

    rows_deleted: int
    rows_copied: int


def replace_mart_rows(
    conn: Connection, csv_lines: Iterable[str], window: HourWindow | None
) -> MartReplace:
    """Replace the mart's rows inside ``window`` (all rows when None) with ``csv_lines``.

    Runs in the caller's transaction; :func:`chillflow.storage.postgres.connect` commits it.

    Args:
        conn: Open connection.
        csv_lines: One CSV record per row in :data:`MART_COLUMNS` order, without line ending;
            an empty field is NULL.
        window: The hours to replace.

    Returns:
        Deleted and copied row counts.
    """
    with conn.cursor() as cur:
        if window is None:
            cur.execute(f"DELETE FROM {MART_TABLE}")
        else:
            cur.execute(
                f"DELETE FROM {MART_TABLE} WHERE hour_ts >= %s AND hour_ts < %s",
                (window.start, window.end),
            )
        deleted = cur.rowcount
        copied = 0
        for batch in _batches(iter(csv_lines), _COPY_BATCH_LINES):
            cur.copy_expert(_COPY_SQL, io.StringIO("\n".join(batch) + "\n"))
            copied += len(batch)
    return MartReplace(rows_deleted=deleted, rows_copied=copied)


def mart_row_count(conn: Connection) -> int:
    """Rows in the mart table."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {MART_TABLE}")
        return cur.fetchone()[0]


def record_run_started(
    conn: Connection,
    job: str,
    period: str,
    run_id: str,
    stats: dict[str, Any] | None = None,
) -> None:
    """Insert a ``running`` row for a run."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO ops.job_run (job, period, run_id, status, pid, host, stats)"
            " VALUES (%s, %s, %s, 'running', %s, %s, %s)",
            (job, period, run_id, os.getpid(), socket.gethostname(), _json(stats or {})),
        )


def record_run_finished(
    conn: Connection,
    run_id: str,
    status: str,
    stats: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Close a run's row with ``succeeded`` or ``failed``, its statistics and error."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE ops.job_run SET status = %s, finished_at = now(),"
            " stats = coalesce(%s::jsonb, stats), error = %s WHERE run_id = %s",
            (
                status,
                None if stats is None else _json(stats),
                None if error is None else error[:_MAX_ERROR_CHARS],
                run_id,
            ),
        )


def latest_run(conn: Connection) -> dict[str, Any] | None:
    """The most recent aggregate run or backfill: id, job, period, status, times, error."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, job, period, status, attempt, started_at, finished_at, error"
            " FROM ops.job_run WHERE job IN (%s, %s) ORDER BY started_at DESC, id DESC LIMIT 1",
            (AGGREGATE_JOB, BACKFILL_JOB),
        )
        row = cur.fetchone()
        if row is None:
            return None
        names = [d[0] for d in cur.description]
    run = dict(zip(names, row, strict=True))
    for key in ("started_at", "finished_at"):
        run[key] = run[key].isoformat() if run[key] is not None else None
    return run


def resumable_backfill(conn: Connection, period: str) -> tuple[str, int] | None:
    """Run id and attempt of the latest backfill of ``period`` if it did not succeed."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, attempt, status FROM ops.job_run WHERE job = %s AND period = %s"
            " ORDER BY started_at DESC, id DESC LIMIT 1",
            (BACKFILL_JOB, period),
        )
        row = cur.fetchone()
    if row is None or row[2] == "succeeded":
        return None
    return row[0], row[1]


def restart_run(conn: Connection, run_id: str) -> int:
    """Mark an earlier run ``running`` again as its next attempt; return the attempt number."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE ops.job_run SET status = 'running', attempt = attempt + 1, started_at = now(),"
            " finished_at = NULL, error = NULL, pid = %s, host = %s WHERE run_id = %s"
            " RETURNING attempt",
            (os.getpid(), socket.gethostname(), run_id),
        )
        return cur.fetchone()[0]


def finished_chunks(conn: Connection, backfill_run_id: str) -> set[str]:
    """Periods of the chunks a backfill run has completed."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT period FROM ops.job_run WHERE job = %s AND status = 'succeeded'"
            " AND stats ->> 'backfill_run_id' = %s",
            (AGGREGATE_JOB, backfill_run_id),
        )
        return {row[0] for row in cur.fetchall()}


def _batches(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(islice(lines, size)):
        yield batch


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, default=str, sort_keys=True)
