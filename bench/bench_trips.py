"""Benchmark the process-trips load against a plain psycopg2 COPY of the same rows.

    python bench/bench_trips.py --rows 1000000 3000000

For each size: a generated yellow month is curated once (not timed), then in one warm Spark
session and a fresh database: the idempotent load of the new month, a rerun of the
unchanged month, and, as the physical baseline, psycopg2 COPY of the same rows (exported from
the loaded table in the curated file's order, not timed) into an empty table with the same
indexes as stg.complete_trip; and the bulk-load pattern's floor: COPY into a table without
indexes, then building them. A CHECKPOINT precedes every timed step. Uses DATABASE_URL, else
an embedded PostgreSQL under bench/out/postgres. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import time
from pathlib import Path

from measure import jvm_peak_rss_mib, self_peak_rss_mib
from psycopg2 import sql

from chillflow import runtime
from chillflow.database_url import DatabaseUrl, parse_database_url
from chillflow.generator import generate_month
from chillflow.settings import TablePaths
from chillflow.stages.curate import CurateTargets, curate
from chillflow.stages.trips import process_trips
from chillflow.storage.pg_server import ensure_local_postgres
from chillflow.storage.postgres import connect, init_schema
from chillflow.storage.trips_pg import LOAD_COLUMNS

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
MONTH = "2025-01"
EMBEDDED_PORT = 54339


def raw_file(rows: int) -> Path:
    """The generated month, shared with bench_curate.py (same path and seed)."""
    path = OUT / "raw" / str(rows) / f"yellow_tripdata_{MONTH}.parquet"
    if not path.exists():
        generate_month(path, rows=rows, month=MONTH, seed=2025)
    return path


def curated_table(settings, spark, rows: int) -> Path:
    lake = OUT / f"trips-lake-{rows}"
    if not (lake / "trips" / "_delta_log").is_dir():
        targets = CurateTargets(lake / "trips", lake / "quarantine", lake / "dq_metrics")
        curate(spark, settings, raw_file(rows), targets=targets)
    return lake / "trips"


def server_url() -> DatabaseUrl:
    if os.environ.get("DATABASE_URL"):
        return parse_database_url(os.environ["DATABASE_URL"])
    return ensure_local_postgres(OUT / "postgres", port=EMBEDDED_PORT)


def admin(url: DatabaseUrl, statement: sql.Composable) -> None:
    with connect(url) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)


def fresh_database(server: DatabaseUrl, label: str) -> DatabaseUrl:
    name = f"bench_trips_{label}_{secrets.token_hex(3)}"
    admin(server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = dataclasses.replace(server, dbname=name)
    with connect(url) as conn:
        init_schema(conn)
    return url


def drop_database(server: DatabaseUrl, url: DatabaseUrl) -> None:
    name = sql.Identifier(url.dbname)
    for attempt in range(10):
        try:
            # Without FORCE: an autovacuum worker of the fresh table is asked to stop, whereas
            # FORCE needs the right to terminate it when the role is not a superuser.
            admin(server, sql.SQL("DROP DATABASE IF EXISTS {}").format(name))
            return
        except Exception:  # noqa: BLE001 - still in use: retried, the last failure raised
            if attempt == 9:
                raise
            time.sleep(3)


def checkpoint(url: DatabaseUrl) -> None:
    try:
        admin(url, sql.SQL("CHECKPOINT"))
    except Exception as exc:  # noqa: BLE001 - needs superuser or pg_checkpoint; best effort
        print(f"(no CHECKPOINT: {type(exc).__name__})")


def copy_baseline(url: DatabaseUrl, rows: int) -> tuple[float, float, float]:
    """Time COPY of the loaded rows, in the curated file's order, into an identical table.

    Returns:
        Seconds of that COPY; then of the bulk-load pattern's two steps: COPY into a table
        without indexes, and building its primary key and indexes afterwards.
    """
    dump = OUT / f"trips-copy-{rows}.csv"
    columns = sql.SQL(", ").join(map(sql.Identifier, LOAD_COLUMNS))
    with connect(url) as conn, conn.cursor() as cur, dump.open("wb") as sink:
        export = sql.SQL(
            "COPY (SELECT {} FROM stg.complete_trip ORDER BY source_file, source_row) "
            "TO STDOUT (FORMAT csv)"
        ).format(columns)
        cur.copy_expert(export, sink)
        cur.execute(
            "CREATE SCHEMA bench; "
            "CREATE TABLE bench.copy_target (LIKE stg.complete_trip INCLUDING ALL); "
            "CREATE TABLE bench.bulk_target (LIKE stg.complete_trip INCLUDING DEFAULTS)"
        )
    seconds = []
    for table in ("copy_target", "bulk_target"):
        checkpoint(url)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            sql.Identifier("bench", table), columns
        )
        with connect(url) as conn, conn.cursor() as cur, dump.open("rb") as source:
            started = time.monotonic()
            cur.copy_expert(statement, source, size=1 << 20)
            conn.commit()
            seconds.append(time.monotonic() - started)
    with connect(url) as conn, conn.cursor() as cur:
        started = time.monotonic()
        cur.execute(
            "ALTER TABLE bench.bulk_target ADD PRIMARY KEY (trip_key, service, pickup_month); "
            "CREATE INDEX ON bench.bulk_target (pickup_ts)"
        )
        conn.commit()
        seconds.append(time.monotonic() - started)
    dump.unlink()
    return seconds[0], seconds[1], seconds[2]


def measure(spark, settings, server: DatabaseUrl, rows: int) -> dict[str, float]:
    source = curated_table(settings, spark, rows)
    url = fresh_database(server, str(rows))
    try:
        checkpoint(url)
        first = process_trips(spark, settings, url, source, month=MONTH)
        checkpoint(url)
        rerun = process_trips(spark, settings, url, source, month=MONTH)
        assert rerun["inserted"] == rerun["updated"] == rerun["deleted"] == 0, rerun
        copy_s, bulk_copy_s, bulk_index_s = copy_baseline(url, rows)
    finally:
        drop_database(server, url)
    return {
        "staged": first["staged"],
        "first_s": first["duration_sec"],
        "first_staging_s": first["staging_sec"],
        "first_upsert_s": first["upsert_sec"],
        "rerun_s": rerun["duration_sec"],
        "rerun_upsert_s": rerun["upsert_sec"],
        "copy_s": copy_s,
        "bulk_copy_s": bulk_copy_s,
        "bulk_index_s": bulk_index_s,
    }


def warm_up(spark, settings, server: DatabaseUrl) -> None:
    """One small load, so the first measured size does not pay for JIT and class loading."""
    lake = OUT / "trips-lake-warmup"
    raw = OUT / "raw" / "warmup" / f"yellow_tripdata_{MONTH}.parquet"
    if not raw.exists():
        generate_month(raw, rows=20_000, month=MONTH, seed=7)
    tables = TablePaths(lake / "trips", lake / "quarantine", lake / "dq_metrics", lake / "kpis")
    settings = dataclasses.replace(settings, tables=tables)
    curate(spark, settings, raw)
    url = fresh_database(server, "warmup")
    process_trips(spark, settings, url, month=MONTH)
    drop_database(server, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    settings = runtime.settings()
    spark = runtime.spark(settings)
    server = server_url()
    print(f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    warm_up(spark, settings, server)

    results = {}
    for rows in args.rows:
        results[rows] = measure(spark, settings, server, rows)
        print(f"{rows}: {results[rows]}", flush=True)

    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (the start's was printed first)")
    print(
        f"\ncores={os.cpu_count()} python driver peak RSS {self_peak_rss_mib():.0f} MiB, "
        f"JVM peak RSS {jvm_peak_rss_mib():.0f} MiB (whole run)\n"
    )
    print(
        "| curated rows | new month s (staging + upsert) | rows/s | rerun s | rows/s | "
        "COPY baseline s | rows/s | load ÷ COPY throughput | rerun ÷ new time | "
        "COPY without indexes + index build s | load ÷ that throughput |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results.values():
        staged = r["staged"]
        print(
            f"| {staged:,} | {r['first_s']:.1f} ({r['first_staging_s']:.1f} + "
            f"{r['first_upsert_s']:.1f}) | {staged / r['first_s']:,.0f} | {r['rerun_s']:.1f} | "
            f"{staged / r['rerun_s']:,.0f} | {r['copy_s']:.1f} | {staged / r['copy_s']:,.0f} | "
            f"{r['copy_s'] / r['first_s']:.2f} | {r['rerun_s'] / r['first_s']:.2f} | "
            f"{r['bulk_copy_s'] + r['bulk_index_s']:.1f} ({r['bulk_copy_s']:.1f} + "
            f"{r['bulk_index_s']:.1f}) | "
            f"{(r['bulk_copy_s'] + r['bulk_index_s']) / r['first_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
