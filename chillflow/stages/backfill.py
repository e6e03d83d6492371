"""Aggregate backfill: a range of days refreshed one calendar month (chunk) at a time.

Chunks done by an interrupted backfill of the same range are skipped when it is run again,
unless their month's trips changed since. A backfill holds a lock on its range for its run.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import structlog
from psycopg2.extensions import connection as Connection
from pyspark.sql import SparkSession

from chillflow.database_url import DatabaseUrl
from chillflow.failpoints import failpoint
from chillflow.hour_window import HourWindow, month_chunks
from chillflow.logs import bound_run, new_run_id
from chillflow.settings import Settings
from chillflow.stages.aggregate import AGGREGATE_JOB, BACKFILL_JOB, aggregate_window
from chillflow.stages.curate import CURATE_JOB
from chillflow.stages.trips import PROCESS_TRIPS_JOB
from chillflow.storage import ledger
from chillflow.storage.kpi_store import summarize_hourly_kpis
from chillflow.storage.locks import AdvisoryLocks, hold, holder
from chillflow.storage.postgres import connect, init_schema

#: The jobs whose runs change what a source gives for a month: the trips, or the quarantined
#: rows behind the outlier rates.
_SOURCE_JOBS = {"postgres": (PROCESS_TRIPS_JOB, CURATE_JOB), "curated": (CURATE_JOB,)}
_SUMMED = ("trips", "rows_inserted", "rows_updated", "rows_deleted", "mart_rows_copied")


def aggregate_backfill(
    spark: SparkSession,
    settings: Settings,
    database_url: DatabaseUrl,
    start: date,
    end: date,
    *,
    source: str | None = None,
    restart: bool = False,
) -> dict[str, Any]:
    """Refresh the days ``start..end`` (inclusive) one calendar month at a time.

    A backfill of the same range that did not finish is resumed: its completed chunks are
    skipped, except those whose month a process-trips or curate run changed after the chunk
    finished (in ``ops.job_run``). ``restart`` starts over instead. A backfill of a range that
    is still running refuses.

    Returns:
        run_id (of the backfill), start, end, chunks, chunks_skipped, attempt; summed
        rows_inserted, rows_updated, rows_deleted, mart_rows_copied; hours_processed and
        zones_affected over the whole range; duration_sec; and per-chunk statistics in runs.

    Raises:
        BusyError: A backfill of the same range is running.
    """
    chunks = month_chunks(start, end)
    source = source or settings.aggregate.default_source
    period = f"{start.isoformat()}/{end.isoformat()}"
    started = time.monotonic()
    store = AdvisoryLocks(database_url, holder(BACKFILL_JOB, f"of {period}"))
    with hold(store, [(f"{BACKFILL_JOB}|{period}", False)], what=f"backfill {period}", writer=True):
        with connect(database_url) as conn:
            init_schema(conn)
            previous = None if restart else ledger.latest_run(conn, [BACKFILL_JOB], period)
            resume = previous is not None and previous.status != "succeeded"
            backfill_id = previous.run_id if resume else new_run_id()
            done = _current_chunks(conn, backfill_id, source, chunks) if resume else set()
        with (
            bound_run(BACKFILL_JOB, backfill_id, period=period, source=source) as log,
            ledger.recorded_run(
                database_url,
                BACKFILL_JOB,
                period,
                backfill_id,
                stats={"source": source},
                resume=resume,
            ) as record,
        ):
            log.info("aggregate.backfill_started", chunks=len(chunks), done=len(done))
            runs: list[dict[str, Any]] = []
            for chunk in chunks:
                if chunk.label() in done:
                    log.info("aggregate.chunk_skipped", window=chunk.label())
                    continue
                runs.append(
                    aggregate_window(
                        spark,
                        settings,
                        database_url,
                        chunk,
                        source=source,
                        mode="backfill",
                        backfill_run_id=backfill_id,
                    )
                )
                failpoint("aggregate_backfill.after_chunk")
            whole = HourWindow(chunks[0].start, chunks[-1].end)
            summary = summarize_hourly_kpis(spark, settings.tables.kpis, whole)
            stats = {
                "run_id": backfill_id,
                "mode": "backfill",
                "source": source,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "attempt": record.attempt,
                "chunks": len(chunks),
                "chunks_skipped": len(chunks) - len(runs),
                "hours_processed": summary["hours"],
                "zones_affected": summary["zones"],
                "kpi_rows": summary["rows"],
                **{key: sum(run[key] for run in runs) for key in _SUMMED},
                "duration_sec": round(time.monotonic() - started, 3),
            }
            record.succeeded(
                stats, rows_read=stats["trips"], rows_written=stats["mart_rows_copied"]
            )
            log.info("aggregate.backfill_finished", **stats)
        return {**stats, "runs": runs}


def _current_chunks(
    conn: Connection, backfill_id: str, source: str, chunks: list[HourWindow]
) -> set[str]:
    """Chunks a backfill completed whose months no later run of the source's jobs changed."""
    finished = ledger.finished_chunks(conn, AGGREGATE_JOB, backfill_id)
    current = set()
    for chunk in chunks:
        if chunk.label() not in finished:
            continue
        jobs = _SOURCE_JOBS[source]
        changed = ledger.slices_changed_since(conn, jobs, chunk.months(), finished[chunk.label()])
        if changed:
            structlog.get_logger("chillflow").info(
                "aggregate.chunk_source_changed", window=chunk.label(), runs=changed
            )
        else:
            current.add(chunk.label())
    return current
