"""Benchmark the aggregate stage over generated months, against DuckDB on the same rows.

    python bench/bench_kpis.py --rows 1000000 --months 2025-01 2025-02 2025-03

Months are generated and curated once (kept under bench/out/kpis-ROWS). Then, in one warm
process: a full refresh, a one-day incremental that inserts a day not yet aggregated (from the
curated table and from stg.complete_trip), its rerun, the KPI computation alone (Spark into a
no-op sink), and DuckDB computing the same KPIs from the same Parquet files. DuckDB's result is
checked against the Spark table. Every timed step is the median of three runs (an incremental
is preceded, untimed, by deleting its day from the KPI table). Prints a markdown table.

The bench always starts its own embedded PostgreSQL on a free port and stops it at the end
(DATABASE_URL is ignored): it truncates stg.complete_trip.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import reference_pipeline as ref
from measure import jvm_peak_rss_mib, run_measured, self_peak_rss_mib

BENCH = Path(__file__).resolve().parent
#: Every timed step is the median of this many runs: single incremental runs vary by ±2 s here.
REPEAT = 3


def duckdb_kpis(con, curated: list[str], quarantine: list[str], salt: str) -> None:
    """The reference's KPIs over ChillFlow's curated and quarantine files, into ``duck_kpis``."""

    def files(paths: list[str]) -> str:
        return "read_parquet([" + ", ".join(f"'{p}'" for p in paths) + "])"

    trips = f"(SELECT *, {ref.key_columns()} FROM {files(curated)})"
    kpis = ref.kpi_sql(trips, files(quarantine) if quarantine else None)
    con.execute(f"CREATE OR REPLACE TEMP TABLE duck_kpis AS {kpis}", {"salt": salt})


#: DuckDB alone in a process of its own: the file lists as arguments, the salt from HASH_SALT.
DUCKDB_PROCESS = (
    "import os, sys; from pathlib import Path; import bench_kpis, reference_pipeline as ref; "
    "bench_kpis.duckdb_kpis(ref.connect_duckdb(), "
    "*(Path(p).read_text().split() for p in sys.argv[1:]), os.environ['HASH_SALT'])"
)


_SIZE_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def scans(spark, action, tables: dict[str, Path]):
    """Run ``action``; return its result and, per table, the files and bytes its Delta scans read.

    From the SQL status store (the Spark UI's data): every file-scan node of the queries run
    meanwhile, its "number of files read" and "size of files read" (after partition pruning and
    data skipping), attributed to the table whose path the node's description names.
    """
    store = spark._jsparkSession.sharedState().statusStore()
    spark.conf.set("spark.sql.maxMetadataStringLength", 10_000)  # whole table paths in plans

    def execution_ids():
        listed = store.executionsList()
        return {listed.apply(i).executionId() for i in range(listed.size())}

    before = execution_ids()
    result = action()
    read = {name: {"files": 0, "bytes": 0} for name in tables}
    for execution in sorted(execution_ids() - before):
        values = store.executionMetrics(execution)
        nodes = store.planGraph(execution).allNodes()
        seen = set()
        for i in range(nodes.size()):
            node = nodes.apply(i)
            owner = next((n for n, p in tables.items() if f"{p}]" in node.desc()), None)
            if owner is None or not node.name().startswith("Scan parquet"):
                continue
            metrics = node.metrics()
            for j in range(metrics.size()):
                metric = metrics.apply(j)
                value = values.get(metric.accumulatorId())
                if metric.accumulatorId() in seen or value.isEmpty():
                    continue
                seen.add(metric.accumulatorId())
                if metric.name() == "number of files read":
                    read[owner]["files"] += int(value.get().replace(",", ""))
                elif metric.name() == "size of files read":
                    number, unit = re.search(r"([0-9.,]+) ([KMGT]?i?B)", value.get()).groups()
                    read[owner]["bytes"] += float(number.replace(",", "")) * _SIZE_UNITS[unit]
    return result, read


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed(action, repeat=REPEAT, before=None):
    """Median wall time of ``repeat`` calls (``before`` runs untimed ahead of each), and the
    last call's result."""
    times, result = [], None
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.monotonic()
        result = action()
        times.append(time.monotonic() - started)
    return statistics.median(times), result


def prepare_months(spark, settings, out: Path, months: list[str], rows: int) -> None:
    from chillflow.generator import generate_month
    from chillflow.settings import tlc_file_name
    from chillflow.stages.curate import curate

    for index, month in enumerate(months):
        marker = out / f".curated-{month}"
        if marker.exists():
            continue
        raw = out / "raw" / tlc_file_name("yellow", month)
        if not raw.exists():
            generate_month(raw, month=month, rows=rows, seed=2025 + index)
        stats = curate(spark, settings, raw)
        print(f"curated {month}: {stats['output_rows']:,} rows in {stats['duration_sec']:.0f} s")
        marker.touch()


def delta_files(spark, path: Path) -> list[str]:
    from chillflow.storage.delta import read_table

    return [f.removeprefix("file:") for f in read_table(spark, path).inputFiles()]


def forget_day(spark, settings, day: date) -> None:
    """Delete a day from the KPI table, as if it had never been aggregated."""
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, str(settings.tables.kpis)).delete(f"hour_date = DATE '{day}'")


def load_day_into_stg(spark, settings, url, day: date) -> int:
    """Copy one day of curated trips into stg.complete_trip (the trips stage's table)."""
    import io

    from pyspark.sql import functions as F

    from chillflow.hour_window import HourWindow
    from chillflow.schemas import SERVICES
    from chillflow.storage.delta import read_table
    from chillflow.storage.postgres import connect
    from chillflow.storage.trip_partitions import create_partition
    from chillflow.transforms.keys import salt_frame, with_trip_keys

    window = HourWindow(datetime.combine(day, datetime.min.time()), datetime.combine(
        day + timedelta(days=1), datetime.min.time()))  # fmt: skip
    columns = ["trip_key", "vehicle_id_h", "service", "vendor_id", "pickup_ts", "pickup_month",
               "pu_zone_id", "payment_type", "fare_amount", "tip_amount", "total_amount",
               "distance_km", "duration_min", "avg_speed_kmh", "source_row"]  # fmt: skip
    trips = with_trip_keys(
        read_table(spark, settings.tables.curated).where(window.sql_range("pickup_ts")),
        salt_frame(spark, settings.hash_salt),
    ).withColumn("pickup_month", F.col("month"))
    lines = trips.select(
        F.to_csv(F.struct(*columns), {"timestampFormat": "yyyy-MM-dd HH:mm:ss.SSSSSS"})
    ).collect()
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE stg.complete_trip")
        for service in SERVICES:
            create_partition(cur, service, f"{day:%Y-%m}")
        cur.copy_expert(
            f"COPY stg.complete_trip ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)",
            io.StringIO("".join(row[0] + "\n" for row in lines)),
        )
    return len(lines)


def load_months_into_stg(spark, settings, url, months: list[str]) -> tuple[int, float]:
    """Empty stg.complete_trip, then run the trips stage for every month; rows and seconds."""
    from chillflow.stages.trips import process_trips
    from chillflow.storage.postgres import connect

    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE stg.complete_trip")
    started = time.monotonic()
    rows = sum(process_trips(spark, settings, url, month=month)["inserted"] for month in months)
    return rows, time.monotonic() - started


def print_reads(day: date, steps: dict) -> None:
    """The curated source's steps: seconds, and files and MiB each table's scans read."""
    print(
        f"\none-day incremental of {day} vs full refresh, curated source; "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| step | s | curated files | curated MiB | quarantine files | quarantine MiB | "
          "KPI files | KPI MiB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (seconds, read) in steps.items():
        cells = ["", "", "", "", "", ""] if read is None else [
            f"{read[t][k] / (2**20 if k == 'bytes' else 1):,.{1 if k == 'bytes' else 0}f}"
            for t in ("curated", "quarantine", "kpis") for k in ("files", "bytes")
        ]  # fmt: skip
        print(f"| {name} | {seconds:.1f} | " + " | ".join(cells) + " |")
    full, day_read = steps["full refresh"][1], steps["one-day incremental"][1]
    for key in ("files", "bytes"):
        trips_full, trips_day = (r["curated"][key] + r["quarantine"][key] for r in (full, day_read))
        print(f"one day reads {trips_day / trips_full:.1%} of the full refresh's trip {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows per month.")
    parser.add_argument("--months", nargs="+", default=["2025-01", "2025-02", "2025-03"])
    parser.add_argument("--day", default=None, help="Day of the incremental (default: mid-run).")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="Runs per timed step.")
    parser.add_argument(
        "--curated-only",
        action="store_true",
        help="Only the curated source's steps and what they read (no stg.complete_trip, DuckDB).",
    )
    args = parser.parse_args()
    out = BENCH / "out" / f"kpis-{args.rows}"
    os.environ["CHILLFLOW_DATA_DIR"] = str(out / "data")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.pop("DATABASE_URL", None)

    from chillflow import runtime
    from chillflow.storage.pg_server import ensure_local_postgres, stop_local_postgres

    settings = runtime.settings()
    spark = runtime.spark(settings)
    postgres = out / "data" / "postgres"
    url = ensure_local_postgres(postgres, port=free_port())
    try:
        measure(spark, settings, url, out, args)
    finally:
        stop_local_postgres(postgres)


def measure(spark, settings, url, out: Path, args: argparse.Namespace) -> None:
    from pyspark.sql import functions as F

    from chillflow.api.aggregate import BatchAggregator
    from chillflow.storage.delta import read_table
    from chillflow.storage.kpi_store import read_hourly_kpis
    from chillflow.transforms.keys import salt_frame, with_trip_keys
    from chillflow.transforms.kpis import hourly_zone_kpis

    prepare_months(spark, settings, out, args.months, args.rows)
    aggregator = BatchAggregator(settings, spark, url)
    curated = read_table(spark, settings.tables.curated)
    trip_rows = curated.count()
    day = date.fromisoformat(args.day) if args.day else date.fromisoformat(
        f"{args.months[len(args.months) // 2]}-15")  # fmt: skip
    day_rows = curated.where(F.to_date("pickup_ts") == F.lit(day)).count()

    tables = {
        "curated": settings.tables.curated,
        "quarantine": settings.tables.quarantine,
        "kpis": settings.tables.kpis,
    }
    aggregator.aggregate_incremental(day - timedelta(days=1), source="curated")  # warm-up
    full_s, (full, full_read) = timed(
        lambda: scans(spark, lambda: aggregator.aggregate_full_refresh(source="curated"), tables),
        args.repeat,
    )
    incr_s, (incr, incr_read) = timed(
        lambda: scans(spark, lambda: aggregator.aggregate_incremental(day, source="curated"),
                      tables),
        args.repeat,
        before=lambda: forget_day(spark, settings, day),
    )  # fmt: skip
    rerun_s, rerun = timed(
        lambda: aggregator.aggregate_incremental(day, source="curated"), args.repeat
    )
    steps = {"full refresh": (full_s, full_read), "one-day incremental": (incr_s, incr_read),
             "rerun without changes": (rerun_s, None)}  # fmt: skip
    print_reads(day, steps)
    if args.curated_only:
        return
    stg_rows = load_day_into_stg(spark, settings, url, day)
    pg_s, pg = timed(
        lambda: aggregator.aggregate_incremental(day, source="postgres"),
        before=lambda: forget_day(spark, settings, day),
    )
    assert incr["rows_inserted"] == pg["rows_inserted"] > 0, (incr, pg)
    assert rerun["rows_inserted"] == rerun["rows_updated"] == rerun["rows_deleted"] == 0

    # The default source as in production: every month in stg.complete_trip (loaded by the
    # trips stage), a full refresh over JDBC, then the one-day incremental against that table.
    stg_all, load_s = load_months_into_stg(spark, settings, url, args.months)
    print(f"trips stage loaded {stg_all:,} rows into stg.complete_trip in {load_s:.0f} s")
    pg_full_s, pg_full = timed(lambda: aggregator.aggregate_full_refresh(source="postgres"))
    pg_day_s, pg_day = timed(
        lambda: aggregator.aggregate_incremental(day, source="postgres"),
        before=lambda: forget_day(spark, settings, day),
    )
    assert pg_full["kpi_rows"] == full["kpi_rows"], (pg_full, full)
    assert pg_day["rows_inserted"] == incr["rows_inserted"], (pg_day, incr)

    quarantine = read_table(spark, settings.tables.quarantine).select("pickup_ts", "pu_zone_id")
    keyed = with_trip_keys(curated, salt_frame(spark, settings.hash_salt))

    def spark_kpis():
        hourly_zone_kpis(keyed, quarantine).write.format("noop").mode("overwrite").save()

    spark_s, _ = timed(spark_kpis)

    curated_files = delta_files(spark, settings.tables.curated)
    quarantine_files = delta_files(spark, settings.tables.quarantine)
    con = ref.connect_duckdb()
    duck_s, _ = timed(lambda: duckdb_kpis(con, curated_files, quarantine_files, settings.hash_salt))
    con.register("spark_kpis", read_hourly_kpis(spark, settings.tables.kpis).toArrow())
    mismatches = con.execute(
        """
        SELECT count(*) FROM duck_kpis d FULL JOIN spark_kpis s
          ON d.zone_id = s.zone_id AND d.hour_ts = s.hour_ts::TIMESTAMP
        WHERE d.zone_id IS NULL OR s.zone_id IS NULL OR d.trips <> s.trips
           OR d.unique_vehicles <> s.unique_vehicles
           OR abs(d.total_revenue - s.total_revenue) > 1e-6
           OR abs(d.avg_fare - s.avg_fare) > 1e-9 OR abs(d.pct_card - s.pct_card) > 1e-9
           OR abs(d.outlier_rate - s.outlier_rate) > 1e-9
           OR abs(d.avg_duration_min - s.avg_duration_min) > 1e-9
        """
    ).fetchone()[0]
    duck_rows = con.execute("SELECT count(*) FROM duck_kpis").fetchone()[0]

    lists = out / "files"
    lists.mkdir(exist_ok=True)
    (lists / "curated.txt").write_text("\n".join(curated_files))
    (lists / "quarantine.txt").write_text("\n".join(quarantine_files))
    lists_args = [str(lists / "curated.txt"), str(lists / "quarantine.txt")]
    duck_process = run_measured(
        [sys.executable, "-c", DUCKDB_PROCESS, *lists_args],
        {**os.environ, "HASH_SALT": settings.hash_salt, "PYTHONPATH": str(BENCH)},
    )

    print(
        f"\n{len(args.months)} generated months x {args.rows:,} rows; {trip_rows:,} curated "
        f"trips; {full['kpi_rows']:,} KPI rows; every step the median of {REPEAT} runs; "
        f"cores={os.cpu_count()}; "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| step | trips in | KPI rows written | s | trips/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [
        ("full refresh (curated → Delta overwrite + mart)", trip_rows, full["rows_inserted"],
         full_s, f"{1:.2f} of full"),
        ("one-day incremental, new day (curated)", day_rows, incr["rows_inserted"], incr_s,
         f"{incr_s / full_s:.2f} of full"),
        ("one-day incremental, rerun without changes (curated)", day_rows, 0, rerun_s,
         f"{rerun_s / full_s:.2f} of full"),
        ("one-day incremental, new day (stg.complete_trip holding that day, over JDBC)",
         stg_rows, pg["rows_inserted"], pg_s, f"{pg_s / full_s:.2f} of full"),
        ("full refresh (stg.complete_trip over JDBC, the default source)", stg_all,
         pg_full["rows_inserted"], pg_full_s, f"{pg_full_s / full_s:.2f} of full"),
        ("one-day incremental, new day (stg.complete_trip holding every month, over JDBC)",
         day_rows, pg_day["rows_inserted"], pg_day_s,
         f"{pg_day_s / pg_full_s:.2f} of JDBC full"),
        ("Spark KPI computation only", trip_rows, duck_rows, spark_s,
         f"{spark_s / duck_s:.1f}× DuckDB"),
        ("DuckDB same KPIs, same Parquet files", trip_rows, duck_rows, duck_s,
         "1.0×"),
    ]  # fmt: skip
    for name, rows_in, written, seconds, ratio in rows:
        print(f"| {name} | {rows_in:,} | {written:,} | {seconds:.1f} | "
              f"{rows_in / seconds:,.0f} | {ratio} |")  # fmt: skip
    print(
        f"\nDuckDB vs Spark KPI table: {duck_rows:,} rows, {mismatches} mismatching. "
        f"Peak RSS: Spark JVM {jvm_peak_rss_mib():.0f} MiB, Python driver + in-process DuckDB "
        f"{self_peak_rss_mib():.0f} MiB, DuckDB alone (own process, "
        f"{duck_process.seconds:.1f} s) {duck_process.peak_rss_mib:.0f} MiB."
    )
    print(
        f"targets: incremental ≤ 10% of full refresh: curated source {incr_s / full_s:.1%} "
        f"({'met' if incr_s <= 0.1 * full_s else 'missed'}), default source (JDBC) "
        f"{pg_day_s / pg_full_s:.1%} ({'met' if pg_day_s <= 0.1 * pg_full_s else 'missed'}); "
        "KPI computation within 5× of "
        f"DuckDB: {spark_s / duck_s:.1f}× ({'met' if spark_s <= 5 * duck_s else 'missed'})"
    )


if __name__ == "__main__":
    main()
