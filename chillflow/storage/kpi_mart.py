"""The KPI mart in PostgreSQL (psycopg2).

``mart.zone_hourly_kpis`` is published from the KPI Delta table: a window's rows are deleted
and copied in again inside one transaction, so BI readers see the old or the new window, never
a mix. DELETE rather than TRUNCATE: TRUNCATE takes an ACCESS EXCLUSIVE lock that would block
every reader until the commit, and is not MVCC-safe for transactions that started before it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

from psycopg2.extensions import connection as Connection

from chillflow.hour_window import HourWindow
from chillflow.schemas import HOURLY_KPIS_DDL, columns

MART_TABLE = "mart.zone_hourly_kpis"
MART_COLUMNS = tuple(columns(HOURLY_KPIS_DDL))
_COPY_SQL = f"COPY {MART_TABLE} ({', '.join(MART_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
_COPY_BATCH_LINES = 50_000


@dataclass(frozen=True)
class MartReplace:
    """Rows a mart replacement removed and copied in."""

    rows_deleted: int
    rows_copied: int


def replace_mart_rows(
    conn: Connection, csv_lines: Iterable[str], window: HourWindow | None
) -> MartReplace:
    """Replace the mart's rows inside ``window`` (all rows when None) with ``csv_lines``.

    Runs in the caller's transaction. ``csv_lines`` holds one CSV record per row in
    :data:`MART_COLUMNS` order, without line ending; an empty field is NULL.
    """
    lines = iter(csv_lines)
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
        while batch := list(islice(lines, _COPY_BATCH_LINES)):
            cur.copy_expert(_COPY_SQL, io.StringIO("\n".join(batch) + "\n"))
            copied += len(batch)
    return MartReplace(rows_deleted=deleted, rows_copied=copied)


def mart_row_count(conn: Connection) -> int:
    """Rows in the mart table."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {MART_TABLE}")
        return cur.fetchone()[0]
