"""The aggregate stage: trips -> hourly pickup-zone KPIs in Delta -> ``mart.zone_hourly_kpis``.

The KPI Delta table is the source of truth; the mart is published from it. Three modes:

* incremental: the KPIs of one window (a target day and its lookback) are recomputed from the
  source, MERGEd into the Delta table, and the same window of the mart is replaced;
* backfill: the same, one calendar month per chunk; chunks done by an interrupted backfill of
  the same range are skipped when it is run again, unless their month's trips changed since;
* full refresh: everything is recomputed and both stores are replaced atomically.

Since every run makes the window it covers equal to a fresh aggregation of the source, any
sequence of runs leaves the table a full refresh would build over the same trips. One lock
(advisory, in the mart's database) is held from computing to publishing, so runs publish in
the order they compute; a backfill also holds a lock on its range for its whole run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import structlog
from psycopg2.extensions import connection as Connection
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from chillflow.errors import ConfigError
from chillflow.failpoints import failpoint
from chillflow.hour_window import HourWindow, hours_until, month_chunks
from chillflow.logs import bound_run, new_run_id
from chillflow.progress import spark_progress
from chillflow.settings import Settings, section_values
from chillflow.stages.curate import CURATE_JOB
from chillflow.stages.trips import PROCESS_TRIPS_JOB, SERVICES
from chillflow.storage import ledger
from chillflow.storage.delta import read_table, table_version
from chillflow.storage.kpi_jdbc import pickup_range, read_complete_trips
from chillflow.storage.kpi_mart import MART_COLUMNS, MartReplace, mart_row_count, replace_mart_rows
from chillflow.storage.kpi_store import (
    WriteResult,
    merge_hourly_kpis,
    overwrite_hourly_kpis,
    read_hourly_kpis,
    summarize_hourly_kpis,
)
from chillflow.storage.locks import TABLE_LOCK, AdvisoryLocks, hold, holder, lake_locks, slice_lock
from chillflow.storage.postgres import connect, init_schema
from chillflow.transforms.keys import salt_frame, with_trip_keys
from chillflow.transforms.kpis import hourly_zone_kpis

SOURCES = ("postgres", "curated")
AGGREGATE_JOB = "aggregate"
BACKFILL_JOB = "aggregate_backfill"
#: The jobs whose runs change what a source gives for a month: the trips, or the quarantined
#: rows behind the outlier rates.
_SOURCE_JOBS = {"postgres": (PROCESS_TRIPS_JOB, CURATE_JOB), "curated": (CURATE_JOB,)}
KPI_LOCK = "aggregate"
_SUMMED = ("trips", "rows_inserted", "rows_updated", "rows_deleted", "mart_rows_copied")
#: The curate rule that keeps every curated pickup inside its file's month partition.
_MONTH_RULE = "pickup_in_file_month"
# Both timestamp columns of the mart accept this text; PostgreSQL ignores the zone for hour_ts.
_CSV_OPTIONS = {"timestampFormat": "yyyy-MM-dd HH:mm:ss.SSSSSSXXX"}


@dataclass(frozen=True)
class AggregateSettings:
    """The ``[aggregate]`` section of ``conf/chillflow.toml``."""

    default_lookback_hours: int = 24
    default_source: str = "postgres"
    jdbc_partitions: int = 4
    jdbc_fetch_size: int = 10_000

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> AggregateSettings:
        """Validate the section.

        Raises:
            ConfigError: A value has the wrong type or range, or a key is unknown.
        """
        values = section_values(
            "aggregate",
            section,
            cls(),
            positive_ints=("default_lookback_hours", "jdbc_partitions", "jdbc_fetch_size"),
        )
        check_source(values["default_source"], "[aggregate] default_source")
        return cls(**values)


def check_source(source: str, what: str = "--source") -> str:
    """Return ``source`` if it names a trips source.

    Raises:
        ConfigError: Otherwise.
    """
    if source not in SOURCES:
        raise ConfigError(f"{what}={source!r}: expected one of {', '.join(SOURCES)}")
    return source


def aggregate_incremental(
    spark: SparkSession,
    settings: Settings,
    database_url: str,
    target: date,
    lookback_hours: int | None = None,
    *,
    source: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Refresh the window ``[target + 1 day - lookback, target + 1 day)`` of both stores.

    Args:
        spark: The session.
        settings: Validated settings.
        database_url: PostgreSQL holding the mart (and the trips for the postgres source).
        target: The UTC day to refresh.
        lookback_hours: Hours back from the end of ``target``; ``[aggregate]`` default (24).
        source: ``postgres`` (stg.complete_trip) or ``curated`` (the curated Delta table).
        run_id: Run id; a new one by default.

    Returns:
        Run statistics (see :func:`aggregate_window`).
    """
    end = datetime.combine(target, datetime.min.time()) + timedelta(days=1)
    return aggregate_until(
        spark, settings, database_url, end, lookback_hours, source=source, run_id=run_id
    )


def aggregate_until(
    spark: SparkSession,
    settings: Settings,
    database_url: str,
    end: datetime,
    lookback_hours: int | None = None,
    *,
    source: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Refresh the window ``[end - lookback, end)`` of both stores.

    ``end`` is a naive hour as ``hour_ts`` stores it; the rest as :func:`aggregate_incremental`.
    """
    conf = AggregateSettings.from_section(settings.section("aggregate"))
    window = hours_until(
        end, conf.default_lookback_hours if lookback_hours is None else lookback_hours
    )
    return aggregate_window(
        spark, settings, database_url, window, source=source, run_id=run_id, mode="incremental"
    )


def aggregate_full_refresh(
    spark: SparkSession,
    settings: Settings,
    database_url: str,
    *,
    source: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Recompute every KPI and replace the Delta table and the mart, each atomically.

    Returns:
        The statistics of :func:`aggregate_window`; rows_deleted counts every row the table
        held before, rows_inserted every row it holds now.
    """
    return aggregate_window(
        spark, settings, database_url, None, source=source, run_id=run_id, mode="full"
    )


def aggregate_backfill(
    spark: SparkSession,
    settings: Settings,
    database_url: str,
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
    conf = AggregateSettings.from_section(settings.section("aggregate"))
    source = check_source(source or conf.default_source)
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
                database_url, BACKFILL_JOB, period, backfill_id, stats={"source": source},
                resume=resume,
            ) as record,
        ):  # fmt: skip
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


def aggregate_status(spark: SparkSession, settings: Settings, database_url: str) -> dict[str, Any]:
    """Rows, hour range and zones of the KPI table, mart rows, and the last run's outcome."""
    summary = summarize_hourly_kpis(spark, settings.tables.kpis)
    with connect(database_url) as conn:
        init_schema(conn)
        mart_rows = mart_row_count(conn)
        last = ledger.latest_run(conn, [AGGREGATE_JOB, BACKFILL_JOB])
    return {
        "kpi_table": str(settings.tables.kpis),
        "rows": summary["rows"],
        "first_hour": summary["first_hour"],
        "last_hour": summary["last_hour"],
        "zones": summary["zones"],
        "hours": summary["hours"],
        "table_version": summary["version"],
        "mart_rows": mart_rows,
        "last_run": last.as_dict() if last is not None else None,
    }


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


def aggregate_window(
    spark: SparkSession,
    settings: Settings,
    database_url: str,
    window: HourWindow | None,
    *,
    source: str | None = None,
    run_id: str | None = None,
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
    conf = AggregateSettings.from_section(settings.section("aggregate"))
    source = check_source(source or conf.default_source)
    run_id = run_id or new_run_id()
    period = window.label() if window is not None else "full"
    started = time.monotonic()
    computed_at = datetime.now(timezone.utc).replace(tzinfo=None)
    store = AdvisoryLocks(database_url, holder(AGGREGATE_JOB, f"run {run_id}"))
    with (
        bound_run(AGGREGATE_JOB, run_id, mode=mode, window=period, source=source) as log,
        hold(store, [(KPI_LOCK, False)], what="the KPI table and mart", writer=True),
        ledger.recorded_run(
            database_url, AGGREGATE_JOB, period, run_id, abandon_all=True,
            stats={"mode": mode, "source": source, "backfill_run_id": backfill_run_id},
        ) as record,
    ):  # fmt: skip
        log.info("aggregate.started")
        trips, quarantined = _pinned_inputs(spark, settings, conf, database_url, source, window)
        kpis = hourly_zone_kpis(trips, quarantined).withColumn("computed_at", F.lit(computed_at))
        with spark_progress(spark, "aggregate.write"):
            written = _write(spark, settings, kpis, window)
        log.info(
            "aggregate.written",
            rows_inserted=written.rows_inserted,
            rows_updated=written.rows_updated,
            rows_deleted=written.rows_deleted,
            table_version=written.version,
        )
        failpoint("aggregate.after_merge")
        with spark_progress(spark, "aggregate.publish"):
            published = _publish(spark, settings, database_url, window, written.window_rows)
        stats = {
            "run_id": run_id,
            "mode": mode,
            "source": source,
            "window_start": window.start.isoformat() if window is not None else None,
            "window_end": window.end.isoformat() if window is not None else None,
            "window_hours": window.hours if window is not None else None,
            "hours_processed": published.hours,
            "zones_affected": published.zones,
            "kpi_rows": published.mart.rows_copied,
            "trips": published.trips,
            "rows_inserted": written.rows_inserted,
            "rows_updated": written.rows_updated,
            "rows_deleted": written.rows_deleted,
            "mart_rows_deleted": published.mart.rows_deleted,
            "mart_rows_copied": published.mart.rows_copied,
            "table_version": written.version,
            "kpi_table": str(settings.tables.kpis),
            "backfill_run_id": backfill_run_id,
            "duration_sec": round(time.monotonic() - started, 3),
        }
        record.succeeded(stats, rows_read=published.trips, rows_written=published.mart.rows_copied)
        log.info("aggregate.finished", **stats)
        return stats


def _pinned_inputs(
    spark: SparkSession,
    settings: Settings,
    conf: AggregateSettings,
    database_url: str,
    source: str,
    window: HourWindow | None,
) -> tuple[DataFrame, DataFrame | None]:
    """The trips and the quarantined rows, their Delta versions pinned between curate runs.

    While the versions are pinned, the curated slices of the window's months are held shared
    (every slice, through the table lock, for a full refresh), so no curate is between its
    curated and its quarantine commit. Quarantined stray pickups of other months' files are
    read at the same pinned version; their slices are not locked, since the curated rows of
    those files are outside the window.
    """
    if window is None:
        requests = [(TABLE_LOCK, False)]
    else:
        names = sorted(slice_lock(service, m) for service in SERVICES for m in window.months())
        requests = [(name, True) for name in names]
    curated = settings.tables.curated
    store = lake_locks(curated, database_url, holder(AGGREGATE_JOB, "reading"))
    what = f"reading the curated slices of {window.label() if window else 'every month'}"
    with hold(store, requests, what=what, writer=False):
        trips = _read_trips(spark, settings, conf, database_url, source, window)
        return trips, _read_quarantined(spark, settings, window)


def _read_trips(
    spark: SparkSession,
    settings: Settings,
    conf: AggregateSettings,
    database_url: str,
    source: str,
    window: HourWindow | None,
) -> DataFrame:
    if source == "postgres":
        return read_complete_trips(
            spark,
            database_url,
            window,
            partitions=conf.jdbc_partitions,
            fetch_size=conf.jdbc_fetch_size,
            bounds=pickup_range(database_url) if window is None else None,
        )
    path = settings.tables.curated
    version = table_version(spark, path)
    if version is None:
        raise ConfigError(
            f"--source curated: no curated Delta table at {path}; run `chillflow curate month` "
            "first or aggregate from postgres"
        )
    trips = read_table(spark, path, version)
    if window is not None:
        trips = trips.where(window.sql_range("pickup_ts"))
        if _pickups_inside_month_partition(settings):
            trips = trips.where(F.col("month").isin(window.months()))
    return with_trip_keys(trips, salt_frame(spark, settings.hash_salt))


def _pickups_inside_month_partition(settings: Settings) -> bool:
    """Whether curation keeps each pickup in its file's month partition, so months may prune.

    Without that rule a January file's stray December pickup would sit in the January
    partition, where a December window pruned by month would miss it.
    """
    return any(
        rule.name == _MONTH_RULE and rule.action == "quarantine" for rule in settings.curate.rules
    )


def _read_quarantined(
    spark: SparkSession, settings: Settings, window: HourWindow | None
) -> DataFrame | None:
    """Quarantined rows for outlier rates, or None when no quarantine table exists.

    Not pruned by month: quarantined stray pickups live in their file's month partition.
    """
    path = settings.tables.quarantine
    version = table_version(spark, path)
    if version is None:
        return None
    rows = read_table(spark, path, version)
    if window is not None:
        rows = rows.where(window.sql_range("pickup_ts"))
    return rows.select("pickup_ts", "pu_zone_id")


def _write(
    spark: SparkSession, settings: Settings, kpis: DataFrame, window: HourWindow | None
) -> WriteResult:
    if window is None:
        return overwrite_hourly_kpis(spark, settings.tables.kpis, kpis)
    return merge_hourly_kpis(spark, settings.tables.kpis, kpis, window)


@dataclass(frozen=True)
class Published:
    """What publishing a window to the mart did, and what the window holds."""

    mart: MartReplace
    zones: int
    hours: int
    trips: int


def _publish(
    spark: SparkSession,
    settings: Settings,
    database_url: str,
    window: HourWindow | None,
    window_rows: DataFrame | None,
) -> Published:
    """Replace the window's mart rows with the Delta table's, in one PostgreSQL transaction.

    ``window_rows`` are the window's rows as the MERGE left them, computed with it; without
    them (a full refresh) the table is read. The distinct zones and hours and the trips are
    counted from the same stream, sparing a Spark job.
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

    with connect(database_url) as conn:
        replaced = replace_mart_rows(conn, lines(), window)
    return Published(replaced, len(zones), len(hours), trips[0])
