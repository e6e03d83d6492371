"""The KPI mart ``mart.zone_hourly_kpis`` in PostgreSQL, published from the KPI Delta table.

A window's rows are deleted and copied in again in one transaction (docs/decisions.md).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

from chillflow.database_url import DatabaseUrl
from chillflow.hour_window import HourWindow
from chillflow.schemas import HOURLY_KPIS_DDL, columns
from chillflow.storage import ledger
from chillflow.storage.postgres import connect, init_schema

MART_TABLE = "mart.zone_hourly_kpis"
MART_COLUMNS = tuple(columns(HOURLY_KPIS_DDL))
_COPY_SQL = f"COPY {MART_TABLE} ({', '.join(MART_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
_COPY_BATCH_LINES = 50_000


def replace_mart_rows(
    target: DatabaseUrl, csv_lines: Iterable[str], window: HourWindow | None
) -> tuple[int, int]:
    """Replace the mart's rows inside ``window`` (all rows when None) with ``csv_lines``.

    One transaction; ``csv_lines`` holds one CSV record per row in :data:`MART_COLUMNS` order,
    without line ending; an empty field is NULL. Returns the rows deleted and copied.
    """
    lines = iter(csv_lines)
    with connect(target) as conn, conn.cursor() as cur:
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
    return deleted, copied


def mart_status(target: DatabaseUrl, jobs: Sequence[str]) -> dict[str, Any]:
    """The mart's rows (``mart_rows``) and the latest run of ``jobs`` (``last_run``, or None)."""
    with connect(target) as conn, conn.cursor() as cur:
        init_schema(conn)
        cur.execute(f"SELECT count(*) FROM {MART_TABLE}")
        (rows,) = cur.fetchone()
        last = ledger.latest_run(conn, jobs)
    return {"mart_rows": rows, "last_run": last.as_dict() if last else None}
