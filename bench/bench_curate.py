"""Benchmark the curate stage against DuckDB running the same rules on the same file.

    python bench/bench_curate.py --rows 1000000 3000000 10000000 [--repeat 3]

For each size: the whole process (fresh JVM, Delta commit included) of ``chillflow curate month``
and of a DuckDB script, run ``--repeat`` times interleaved (Spark, DuckDB, Spark, ...) so both see
the same machine; the table gives the medians and each side's range. Then both transforms in one
warm process. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import reference_pipeline as ref
from measure import jvm_peak_rss_mib, run_measured, self_peak_rss_mib

from chillflow import runtime
from chillflow.generator import generate_month
from chillflow.stages.curate import CurateTargets, _flagged_trips, curate
from chillflow.storage.raw import find_raw_files

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
MONTH = "2025-01"


def raw_file(rows: int) -> Path:
    path = OUT / "raw" / str(rows) / f"yellow_tripdata_{MONTH}.parquet"
    if not path.exists():
        generate_month(path, rows=rows, month=MONTH, seed=2025)
    return path


def whole_process(rows: int, raw: Path, repeat: int) -> dict[str, float]:
    """Interleaved fresh-process runs of both sides; medians, ranges and the Spark run's counts."""
    lake = OUT / f"lake-process-{rows}"
    env = {**os.environ, "CHILLFLOW_DATA_DIR": str(lake), "LOG_LEVEL": "WARNING"}
    spark_runs, duck_runs, stats = [], [], {}
    for _ in range(repeat):
        shutil.rmtree(lake, ignore_errors=True)
        spark = run_measured(
            [sys.executable, "-m", "chillflow", "curate", "month", str(raw), "--json"], env
        )
        if spark.returncode != 0:
            raise SystemExit(spark.stderr[-4000:])
        stats = json.loads(spark.stdout)
        duck = run_measured(
            [
                sys.executable,
                str(BENCH / "reference_pipeline.py"),
                str(raw),
                "--curate-only",
                "--out",
                str(OUT / "duck"),
                "--month",
                MONTH,
            ]
        )
        if duck.returncode != 0:
            raise SystemExit(duck.stderr[-4000:])
        spark_runs.append(spark)
        duck_runs.append(duck)
        print(
            f"{rows:,} rows: Spark {spark.seconds:.1f} s, DuckDB {duck.seconds:.1f} s, "
            f"ratio {spark.seconds / duck.seconds:.1f}×",
            file=sys.stderr,
            flush=True,
        )
    spark_s = [r.seconds for r in spark_runs]
    duck_s = [r.seconds for r in duck_runs]
    return {
        "spark_s": statistics.median(spark_s),
        "spark_range": (min(spark_s), max(spark_s)),
        "spark_peak_mib": max(r.peak_rss_mib for r in spark_runs),
        "duck_s": statistics.median(duck_s),
        "duck_range": (min(duck_s), max(duck_s)),
        "duck_peak_mib": max(r.peak_rss_mib for r in duck_runs),
        "rows_out": stats["output_rows"],
        "quarantined": stats["quarantined_rows"],
    }


def warm(rows: int, raw: Path, settings, spark) -> dict[str, float]:
    lake = OUT / f"lake-warm-{rows}"
    shutil.rmtree(lake, ignore_errors=True)
    targets = CurateTargets(lake / "trips", lake / "quarantine", lake / "dq_metrics")
    started = time.monotonic()
    curate(spark, settings, raw, targets=targets)
    spark_s = time.monotonic() - started
    started = time.monotonic()
    ref.curate_month(ref.connect_duckdb(), raw, OUT / "duck-warm", MONTH, ref.load_rules())
    duck_s = time.monotonic() - started
    return {"spark_warm_s": spark_s, "duck_warm_s": duck_s}


def transform_alone(raw: Path, settings, spark) -> dict[str, float]:
    """Staging, derived fields and every rule, all columns computed, nothing written."""
    started = time.monotonic()
    trips, _ = _flagged_trips(spark, find_raw_files(raw, None), settings.curate)
    trips.write.format("noop").mode("overwrite").save()
    spark_s = time.monotonic() - started
    started = time.monotonic()
    ref.flag_trips(ref.connect_duckdb(), raw, MONTH, ref.load_rules())
    return {"spark_transform_s": spark_s, "duck_transform_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument(
        "--repeat", type=int, default=3, help="fresh-process runs of each side per size"
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    files = {rows: raw_file(rows) for rows in args.rows}

    results = {rows: whole_process(rows, raw, args.repeat) for rows, raw in files.items()}

    os.environ.setdefault("LOG_LEVEL", "WARNING")
    settings = runtime.settings()
    spark = runtime.spark(settings)
    warm(min(files), files[min(files)], settings, spark)  # JIT and Delta warm-up, not reported
    for rows, raw in files.items():
        results[rows].update(warm(rows, raw, settings, spark))
        results[rows].update(transform_alone(raw, settings, spark))

    print(
        f"\ncores={os.cpu_count()} driver peak RSS (warm runs) {self_peak_rss_mib():.0f} MiB, "
        f"JVM peak {jvm_peak_rss_mib():.0f} MiB; process columns: median of {args.repeat} "
        "interleaved runs [min-max]\n"
    )
    print(
        "| rows | Spark process s | rows/s | peak MiB | DuckDB process s | ratio | "
        "Spark warm s | rows/s | DuckDB warm s | ratio | "
        "Spark transform s | DuckDB transform s | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows, r in results.items():
        print(
            f"| {rows:,} | {r['spark_s']:.1f} {_range(r['spark_range'])} | "
            f"{rows / r['spark_s']:,.0f} | {r['spark_peak_mib']:.0f} | "
            f"{r['duck_s']:.1f} {_range(r['duck_range'])} | {r['spark_s'] / r['duck_s']:.1f}× | "
            f"{r['spark_warm_s']:.1f} | {rows / r['spark_warm_s']:,.0f} | "
            f"{r['duck_warm_s']:.1f} | {r['spark_warm_s'] / r['duck_warm_s']:.1f}× | "
            f"{r['spark_transform_s']:.1f} | {r['duck_transform_s']:.1f} | "
            f"{r['spark_transform_s'] / r['duck_transform_s']:.1f}× |"
        )


def _range(bounds: tuple[float, float]) -> str:
    return f"[{bounds[0]:.1f}-{bounds[1]:.1f}]"


if __name__ == "__main__":
    main()
