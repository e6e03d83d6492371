"""The aggregate stage: trips -> hourly pickup-zone KPIs in Delta -> ``mart.zone_hourly_kpis``.

The KPI Delta table is the source of truth and the mart is published from it; every run makes
its window equal to a fresh aggregation of the source, so any sequence of runs leaves the table
a full refresh would build (README, "Aggregate").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from typing import Any

import structlog
from psycopg2.extensions import connection as Connection
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from chillflow.database_url import DatabaseUrl
from chillflow.errors import ConfigError
from chillflow.failpoints import failpoint
from chillflow.hour_window import HourWindow, hours_until, month_chunks
from chillflow.logs import bound_run, new_run_id
from chillflow.progress import spark_progress
from chillflow.settings import Settings
from chillflow.storage import ledger
from chillflow.storage.delta import read_table, table_version
from chillflow.storage.jdbc import TRIPS_TABLE, read_complete_trips
from chillflow.storage.kpi_mart import MART_COLUMNS, replace_mart_rows
from chillflow.storage.kpi_store import (
    merge_hourly_kpis,
    overwrite_hourly_kpis,
    read_hourly_kpis,
    summarize_hourly_kpis,
)
from chillflow.storage.ledger import AGGREGATE_JOB, BACKFILL_JOB, CURATE_JOB, PROCESS_TRIPS_JOB
from chillflow.storage.locks import KPI_LOCK, AdvisoryLocks, hold, holder, reading_slices
from chillflow.storage.postgres import connect, init_schema, reported
from chillflow.transforms.keys import salt_frame, with_trip_keys
from chillflow.transforms.kpis import hourly_zone_kpis

#: The curate rule that keeps every curated pickup inside its file's month partition.
_MONTH_RULE = "pickup_in_file_month"
# Both timestamp columns of the mart accept this text; PostgreSQL ignores the zone for hour_ts.
_CSV_OPTIONS = {"timestampFormat": "yyyy-MM-dd HH:mm:ss.SSSSSSXXX"}
#: The jobs whose runs change what a source gives for a month: the trips, or the quarantined
#: rows behind the outlier rates.
_SOURCE_JOBS = {"postgres": (PROCESS_TRIPS_JOB, CURATE_JOB), "curated": (CURATE_JOB,)}
_TRIPS_READ = f"reading {TRIPS_TABLE}"
_DELTA_COUNTS = ("rows_inserted", "rows_updated", "rows_deleted")
_SUMMED = ("trips", *_DELTA_COUNTS, "mart_rows_copied")


def aggregate_until(
    spark: SparkSession,
    settings: Settings,
    database_url: DatabaseUrl,
    end: datetime,
    lookback_hours: int | None = None,
    *,
    source: str | None = None,
) -> dict[str, Any]:
    """Refresh the window ``[end - lookback_hours, end)``; ``end`` is naive, as ``hour_ts``."""
    hours = settings.aggregate.default_lookback_hours if lookback_hours is None else lookback_hours
    return aggregate_window(spark, settings, database_url, hours_until(end, hours), source=source)


def aggregate_full_refresh(
    spark: SparkSession, settings: Settings, database_url: DatabaseUrl, *, source: str | None = None
) -> dict[str, Any]:
    """Recompute every KPI and replace the Delta table and the mart, each atomically."""
    return aggregate_window(spark, settings, database_url, None, source=source, mode="full")


def aggregate_window(
    spark: SparkSession,
    settings: Settings,
    database_url: DatabaseUrl,
    window: HourWindow | None,
    *,
    source: str | None = None,
    mode: str = "incremental",
    backfill_run_id: str | None = None,
) -> dict[str, Any]:
    """Recompute one window (None: everything) from the source, write it to Delta and the mart.

    Returns:
        run_id, mode, source, window_start, window_end, window_hours; hours_processed and
        zones_affected (distinct hours and zones with KPI rows in the window afterwards),
        kpi_rows; trips (aggregated); rows_inserted, rows_updated, rows_deleted (Delta);
        mart_rows_deleted, mart_rows_copied; table_version; duration_sec.

    Raises:
        BusyError: Another aggregate run holds the KPI table, or a curate writes a month read.
    """
    source = source or settings.aggregate.default_source
    run_id = new_run_id()
    period = window.label() if window is not None else "full"
    started = time.monotonic()
    computed_at = datetime.now(timezone.utc).replace(tzinfo=None)
    store = AdvisoryLocks(database_url, holder(AGGREGATE_JOB, f"run {run_id}"))
    params = {"mode": mode, "source": source, "backfill_run_id": backfill_run_id}
    with (
        bound_run(AGGREGATE_JOB, run_id, mode=mode, window=period, source=source) as log,
        hold(store, [(KPI_LOCK, False)], what="the KPI table and mart", writer=True),
        ledger.recorded_run(
            database_url, AGGREGATE_JOB, period, run_id, abandon_all=True, stats=params
        ) as record,
    ):
        log.info("aggregate.started")
        trips, quarantined = _pinned_inputs(spark, settings, database_url, source, window)
        kpis = hourly_zone_kpis(trips, quarantined).withColumn("computed_at", F.lit(computed_at))
        # Spark reads the trips from PostgreSQL (source postgres) only now, computing the KPIs.
        with spark_progress(spark, "aggregate.write"), reported(database_url, _TRIPS_READ):
            if window is None:
                written = overwrite_hourly_kpis(spark, settings.tables.kpis, kpis)
            else:
                written = merge_hourly_kpis(spark, settings.tables.kpis, kpis, window)
        delta = {key: getattr(written, key) for key in _DELTA_COUNTS}
        log.info("aggregate.written", **delta, table_version=written.version)
        failpoint("aggregate.after_merge")
        store.confirm_held()  # publishes follow compute order only under the lock
        with spark_progress(spark, "aggregate.publish"):
            published = _publish(spark, settings, database_url, window, written.window_rows)
        stats = {
            "run_id": run_id,
            "mode": mode,
            "source": source,
            "window_start": window.start.isoformat() if window is not None else None,
            "window_end": window.end.isoformat() if window is not None else None,
            "window_hours": window.hours if window is not None else None,
            **published,
            **delta,
            "table_version": written.version,
            "kpi_table": str(settings.tables.kpis),
            "backfill_run_id": backfill_run_id,
            "duration_sec": round(time.monotonic() - started, 3),
        }
        record.succeeded(stats, rows_read=stats["trips"], rows_written=stats["mart_rows_copied"])
        log.info("aggregate.finished", **stats)
        return stats


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


def _pinned_inputs(
    spark: SparkSession,
    settings: Settings,
    database_url: DatabaseUrl,
    source: str,
    window: HourWindow | None,
) -> tuple[DataFrame, DataFrame | None]:
    """The trips and the quarantined rows, their Delta versions pinned between curate runs.

    Quarantined stray pickups of other months' files are read at the same pinned version; their
    slices are not locked, since the curated rows of those files are outside the window. They
    are not pruned by month: they live in their file's month partition.
    """
    with reading_slices(
        settings.tables.curated,
        database_url,
        holder(AGGREGATE_JOB, "reading"),
        window.months() if window is not None else None,
        what=f"reading the curated slices of {window.label() if window else 'every month'}",
    ):
        quarantined = _read_window(spark, settings.tables.quarantine, window)
        if quarantined is not None:
            quarantined = quarantined.select("pickup_ts", "pu_zone_id")
        if source == "postgres":
            conf = settings.aggregate
            trips = read_complete_trips(
                spark,
                database_url,
                window,
                partitions=conf.jdbc_partitions,
                fetch_size=conf.jdbc_fetch_size,
            )
            return trips, quarantined
        trips = _read_window(spark, settings.tables.curated, window)
        if trips is None:
            raise ConfigError(
                f"--source curated: no curated Delta table at {settings.tables.curated}; run "
                "`chillflow curate month` first or aggregate from postgres"
            )
        # Without the month rule a January file's stray December pickup sits in the January
        # partition, where a December window pruned by month would miss it.
        if window is not None and any(
            rule.name == _MONTH_RULE and rule.action == "quarantine"
            for rule in settings.curate.rules
        ):
            trips = trips.where(F.col("month").isin(window.months()))
        return with_trip_keys(trips, salt_frame(spark, settings.hash_salt)), quarantined


def _read_window(spark: SparkSession, path: Any, window: HourWindow | None) -> DataFrame | None:
    """A lake table's rows of the window at its current version, or None with no table."""
    version = table_version(spark, path)
    if version is None:
        return None
    rows = read_table(spark, path, version)
    return rows.where(window.sql_range("pickup_ts")) if window is not None else rows


def _publish(
    spark: SparkSession,
    settings: Settings,
    database_url: DatabaseUrl,
    window: HourWindow | None,
    window_rows: DataFrame | None,
) -> dict[str, int]:
    """Replace the window's mart rows with the Delta table's, in one PostgreSQL transaction.

    ``window_rows`` are the window's rows as the MERGE left them; without them (a full refresh)
    the table is read. The window's distinct hours and zones and its trips are counted from the
    same stream, to spare a Spark job.
    """
    if window_rows is None:
        window_rows = read_hourly_kpis(spark, settings.tables.kpis, window)
    rows = window_rows.select(
        "zone_id",
        "trips",
        F.unix_micros("hour_ts").alias("hour"),
        F.to_csv(F.struct(*MART_COLUMNS), _CSV_OPTIONS).alias("line"),
    )
    zones: set[int] = set()
    hours: set[int] = set()
    trips = [0]

    # A window (a day, a month chunk) is small: one job collects it. A full refresh streams,
    # one partition at a time, so the driver never holds the whole table.
    fetched = rows.toLocalIterator(prefetchPartitions=True) if window is None else rows.collect()

    def lines() -> Iterator[str]:
        for row in fetched:
            zones.add(row["zone_id"])
            hours.add(row["hour"])
            trips[0] += row["trips"]
            yield row["line"]

    deleted, copied = replace_mart_rows(database_url, lines(), window)
    return {
        "hours_processed": len(hours),
        "zones_affected": len(zones),
        "kpi_rows": copied,
        "trips": trips[0],
        "mart_rows_deleted": deleted,
        "mart_rows_copied": copied,
    }


def _current_chunks(
    conn: Connection, backfill_id: str, source: str, chunks: list[HourWindow]
) -> set[str]:
    """Chunks a backfill completed whose months no later run of the source's jobs changed."""
    finished = ledger.finished_chunks(conn, AGGREGATE_JOB, backfill_id)
    current, jobs = set(), _SOURCE_JOBS[source]
    for chunk in chunks:
        if chunk.label() not in finished:
            continue
        changed = ledger.slices_changed_since(conn, jobs, chunk.months(), finished[chunk.label()])
        if changed:
            structlog.get_logger("chillflow").info(
                "aggregate.chunk_source_changed", window=chunk.label(), runs=changed
            )
        else:
            current.add(chunk.label())
    return current
