"""The process-trips stage: curated trips of a month -> PostgreSQL's ``stg.complete_trip``.

Spark's JDBC writer fills a staging table of the run's own; one transaction then attaches or
upserts it (docs/decisions.md), and the slice's count in PostgreSQL is reconciled with the
curated month's, declared skips aside.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from psycopg2.extensions import connection as Connection
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from chillflow.database_url import DatabaseUrl
from chillflow.errors import ConfigError, ReconciliationError
from chillflow.failpoints import failpoint
from chillflow.logs import bound_run, new_run_id
from chillflow.progress import spark_progress
from chillflow.schemas import SERVICES
from chillflow.settings import Settings
from chillflow.storage.curated import CuratedSource, read_curated
from chillflow.storage.jdbc import append_jdbc
from chillflow.storage.ledger import PROCESS_TRIPS_JOB, recorded_run
from chillflow.storage.locks import AdvisoryLocks, hold, holder
from chillflow.storage.postgres import connect
from chillflow.storage.trips_pg import (
    TripSlice,
    check_run_id,
    claim_staging_table,
    count_slice,
    discard_staging_table,
    drop_staging_table,
    load_staged,
    prepare_database,
    staging_progress,
    staging_table,
)
from chillflow.transforms.complete_trips import (
    SKIP_REASON,
    SKIP_REASONS,
    to_complete_trips,
    with_skip_reason,
)
from chillflow.transforms.keys import salt_frame, with_trip_keys


def process_trips(
    spark: SparkSession,
    settings: Settings,
    database_url: DatabaseUrl,
    source: str | Path | None = None,
    *,
    month: str | None = None,
    service: str | None = None,
    run_id: str | None = None,
    prepared: list[str] | None = None,
    _before_commit: Callable[[Connection], None] | None = None,
) -> dict[str, Any]:
    """Load the curated trips of one month into stg.complete_trip, idempotently.

    ``source`` is a curated Delta table or Parquet in the curated schema (by default the
    configured curated table); ``month`` may be left out when it holds one month, ``service``
    means every service of the month. The caller validates both. ``run_id`` names the staging
    table; ``prepared`` is what :func:`prepare_database` returned when the caller ran it
    already; ``_before_commit`` is a test hook, called inside the load transaction before its
    commit.

    Returns:
        Run statistics: rows_read, skipped (with skip_reasons), staged, inserted, updated,
        unchanged, deleted, postgres_rows, duration_sec, rows_per_sec, run_id and more.

    Raises:
        ConfigError: Bad source, or no curated trips to load.
        DatabaseError: PostgreSQL is unreachable or refused the login (password masked).
        ReconciliationError: After the commit, PostgreSQL's count of a slice differs from the
            curated rows loaded into it.
    """
    started = time.monotonic()
    started_at = datetime.now(timezone.utc).replace(tzinfo=None)
    run_id = check_run_id(run_id or new_run_id())
    options = settings.trips
    stale = prepare_database(database_url) if prepared is None else prepared
    curated = read_curated(spark, source or settings.tables.curated)
    trips, loaded, skip_reasons = _select_month(curated, month, service)
    month = next(iter(loaded)).month
    staged = sum(loaded.values())

    slices = [f"{s.service}/{s.month}" for s in loaded]
    period = ",".join(slices)
    store = AdvisoryLocks(database_url, holder(PROCESS_TRIPS_JOB, f"run {run_id}"))
    locks = [(f"{PROCESS_TRIPS_JOB}|{name}", False) for name in slices]
    with (
        bound_run(PROCESS_TRIPS_JOB, run_id, month=month) as log,
        hold(store, locks, what=f"process-trips of {period}", writer=True),
        recorded_run(database_url, PROCESS_TRIPS_JOB, period, run_id) as record,
    ):
        log.info(
            "process_trips.started",
            source=curated.location,
            delta_version=curated.delta_version,
            slices=slices,
            expected_rows=staged,
            skipped=sum(skip_reasons.values()),
            database=str(database_url),
        )
        if stale:
            log.info("process_trips.orphaned_staging_dropped", tables=stale)
        staging = staging_table(run_id, started_at)
        lease = claim_staging_table(database_url, staging, loaded)
        try:
            rows = (
                trips.where(F.col(SKIP_REASON).isNull())
                .transform(with_trip_keys, salt_frame(spark, settings.hash_salt))
                .transform(to_complete_trips)
            )
            write_started = time.monotonic()
            with (
                staging_progress(database_url, staging) as probe,
                spark_progress(
                    spark,
                    "process_trips",
                    every_sec=options.progress_every_sec,
                    expected_rows=staged,
                    rows_done=probe,
                ),
            ):
                append_jdbc(
                    rows,
                    database_url,
                    ".".join(staging),
                    partitions=options.jdbc_partitions,
                    batch_size=options.batch_size,
                    rewrite_batched_inserts=options.rewrite_batched_inserts,
                )
            write_sec = time.monotonic() - write_started
            log.info("process_trips.staged", sec=round(write_sec, 1))
            failpoint("process_trips.staged")

            upsert_started = time.monotonic()
            with connect(database_url, action="loading the staged trips") as conn:
                counts = load_staged(conn, staging, loaded, work_mem=options.work_mem)
                if _before_commit is not None:
                    _before_commit(conn)
                failpoint("process_trips.before_commit")
                drop_staging_table(conn, staging)
            upsert_sec = time.monotonic() - upsert_started
        except BaseException:
            discard_staging_table(database_url, staging)
            raise
        finally:
            lease.close()
        log.info(
            "process_trips.committed",
            inserted=counts.inserted,
            updated=counts.updated,
            deleted=counts.deleted,
            sec=round(upsert_sec, 1),
        )

        with connect(database_url, action="counting the loaded trips") as conn:
            in_postgres = {s: count_slice(conn, s) for s in loaded}
        _reconcile(loaded, in_postgres, skip_reasons)

        duration = time.monotonic() - started
        stats = {
            "run_id": run_id,
            "source": curated.location,
            "delta_version": curated.delta_version,
            "month": month,
            "services": sorted({s.service for s in loaded}),
            "database": str(database_url),
            "rows_read": staged + sum(skip_reasons.values()),
            "skipped": sum(skip_reasons.values()),
            "skip_reasons": {r: n for r, n in skip_reasons.items() if n},
            "staged": staged,
            "inserted": counts.inserted,
            "updated": counts.updated,
            "unchanged": staged - counts.inserted - counts.updated,
            "deleted": counts.deleted,
            "postgres_rows": sum(in_postgres.values()),
            "staging_sec": round(write_sec, 3),
            "upsert_sec": round(upsert_sec, 3),
            "duration_sec": round(duration, 3),
            "rows_per_sec": round(staged / duration) if duration > 0 else None,
        }
        record.succeeded(stats, rows_read=stats["rows_read"], rows_written=stats["postgres_rows"])
        log.info("process_trips.finished", **stats)
        return stats


def _select_month(
    curated: CuratedSource, month: str | None, service: str | None
) -> tuple[DataFrame, dict[TripSlice, int], dict[str, int]]:
    """The source's trips of the month and service, their loadable rows per slice, their skips.

    The counts read the same Delta version as the load: the reference for the reconciliation.
    A month with no curated trips is an error rather than an instruction to delete that month
    from PostgreSQL: far more likely the wrong path or month than a month without a trip.
    """
    trips = curated.rows
    if month is not None:
        trips = trips.where(F.col("month") == month)
    if service is not None:
        trips = trips.where(F.col("service") == service)
    trips = trips.transform(with_skip_reason)
    counts = trips.groupBy("service", "month", SKIP_REASON).count().collect()
    wanted = " ".join(filter(None, (service, month))) or "any month"
    if not counts:
        raise ConfigError(
            f"no curated trips for {wanted} in {curated.location}: curate the month first"
        )
    months = sorted({row["month"] for row in counts})
    if len(months) > 1:
        raise ConfigError(
            f"{curated.location} holds the months {', '.join(months)}: choose one with --month"
        )
    unknown = sorted({row["service"] for row in counts} - set(SERVICES))
    if unknown:
        raise ConfigError(f"{curated.location}: unknown services {unknown} in {months[0]}")
    if month is None:
        trips = trips.where(F.col("month") == months[0])
    loaded = {TripSlice(row["service"], row["month"]): 0 for row in counts}
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    for row in counts:
        if row[SKIP_REASON] is None:
            loaded[TripSlice(row["service"], row["month"])] += row["count"]
        else:
            skipped[row[SKIP_REASON]] += row["count"]
    return trips, dict(sorted(loaded.items())), skipped


def _reconcile(
    loaded: Mapping[TripSlice, int], in_postgres: Mapping[TripSlice, int], skips: Mapping[str, int]
) -> None:
    for trip_slice, expected in loaded.items():
        actual = in_postgres[trip_slice]
        if actual != expected:
            skipped = ", ".join(f"{r}={n}" for r, n in skips.items() if n) or "none"
            raise ReconciliationError(
                f"stg.complete_trip holds {actual} trips of {trip_slice.service} "
                f"{trip_slice.month} after the load, but {expected} curated rows were loaded "
                f"(skipped: {skipped}): duplicate trip keys in the curated month, or another "
                "writer changed the slice; rerun the load and check the curated table"
            )
