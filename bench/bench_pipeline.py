"""A whole month end to end: curate + process trips + KPIs, as a user runs it.

    python bench/bench_pipeline.py --rows 3000000

Generates a yellow month (not timed), then times three separate processes, each started the
way the scheduler starts them (fresh JVM every time): ``curate month``, ``process trips`` and
``aggregate backfill`` over the month, into a fresh lake and a fresh embedded PostgreSQL under
bench/out/pipeline-ROWS. Prints each step's wall time and peak RSS (process tree) and the total.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from measure import run_measured

from chillflow.generator import generate_month
from chillflow.storage.pg_server import stop_local_postgres

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
MONTH = "2025-01"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=3_000_000)
    args = parser.parse_args()
    raw = OUT / "raw" / str(args.rows) / f"yellow_tripdata_{MONTH}.parquet"
    if not raw.exists():
        generate_month(raw, rows=args.rows, month=MONTH, seed=2025)
    data_dir = OUT / f"pipeline-{args.rows}"
    if (data_dir / "postgres").exists():
        stop_local_postgres(data_dir / "postgres")
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {**os.environ, "CHILLFLOW_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    cli = [sys.executable, "-m", "chillflow"]
    steps = {
        # db init starts the embedded server: its first start is setup, not pipeline time.
        "db init (setup, not counted)": [*cli, "db", "init", "--json"],
        "curate": [*cli, "curate", "month", str(raw), "--json"],
        "process trips": [*cli, "process", "trips", "--month", MONTH, "--json"],
        "aggregate (month backfill)": [
            *cli,
            "aggregate",
            "backfill",
            "--start",
            f"{MONTH}-01",
            "--end",
            f"{MONTH}-31",
            "--json",
        ],
    }
    rows = []
    try:
        for name, command in steps.items():
            run = run_measured(command, env)
            if run.returncode != 0:
                raise SystemExit(f"{name} failed ({run.returncode}):\n{run.stderr[-4000:]}")
            stats = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append((name, run.seconds, run.peak_rss_mib, stats))
    finally:
        stop_local_postgres(data_dir / "postgres")
    counted = [r for r in rows if "not counted" not in r[0]]
    total = sum(r[1] for r in counted)
    print(f"\n{args.rows:,} raw rows, cores={os.cpu_count()}\n")
    print("| step | wall s | peak RSS MiB | rows |")
    print("|---|---:|---:|---|")
    for name, seconds, peak, stats in rows:
        detail = {
            k: stats[k]
            for k in ("input_rows", "output_rows", "inserted", "kpi_rows", "zones")
            if k in stats
        }
        print(f"| {name} | {seconds:.1f} | {peak:.0f} | {detail} |")
    print(f"| **total (curate + trips + KPIs)** | **{total:.1f}** | | |")


if __name__ == "__main__":
    main()
