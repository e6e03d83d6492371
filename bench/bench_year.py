"""A year month after month into one lake and one database: does a month cost what the first did?

    python bench/bench_year.py --rows 3000000 [--months 12]

Generates `--months` yellow months of 2025 (`--rows` each, under bench/out/raw, reused), then into
one fresh database on DATABASE_URL's server (an embedded PostgreSQL under bench/out when unset)
and one fresh lake runs `pipeline month RAW --json` for each month in turn, as the scheduler's
monthly job does, and last a KPI full refresh over every loaded trip
(`aggregate run --full-refresh --source postgres`). Prints each run's wall time, rows/s and peak
RSS of its process tree (the JVM included), the last month against the first, and the load
averages; exits 1 when a run fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import shutil
import sys

from bench_pipeline import OUT, admin, database_server, drop_database, measured
from psycopg2 import sql

from chillflow.generator import generate_month


def year(rows: int, months: int, server) -> list[tuple[str, int, object]]:
    """Run every month, then the full refresh, into a fresh database; (name, rows, Run) each."""
    name = f"chillflow_year_{secrets.token_hex(4)}"
    url = dataclasses.replace(server, dbname=name)
    data_dir = OUT / "year" / "chillflow"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CHILLFLOW_LAKE_DIR", "CHILLFLOW_ENV")}
    env |= {
        "DATABASE_URL": url.url(),
        "HASH_SALT": secrets.token_hex(16),
        "LOG_LEVEL": "WARNING",
        "CHILLFLOW_DATA_DIR": str(data_dir),
    }
    cli = [sys.executable, "-m", "chillflow"]
    admin(server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    results = []
    try:
        measured("db init", [*cli, "db", "init"], env)
        loaded = 0
        for number in range(1, months + 1):
            month = f"2025-{number:02d}"
            raw = OUT / "raw" / str(rows) / f"yellow_tripdata_{month}.parquet"
            if not raw.exists():
                generate_month(raw, rows=rows, month=month, seed=2025 + number)
            run = measured(month, [*cli, "pipeline", "month", str(raw), "--json"], env)
            loaded += json.loads(run.stdout)["process_trips"]["inserted"]
            results.append((f"pipeline month {month}", rows, run))
            report_line(*results[-1])
        refresh = [*cli, "aggregate", "run", "--full-refresh", "--source", "postgres", "--json"]
        results.append(
            (f"KPI full refresh over {loaded:,} trips", loaded, measured("kpis", refresh, env))
        )
        report_line(*results[-1])
    finally:
        drop_database(server, name)
    return results


def report_line(name: str, rows: int, run) -> None:
    load = os.getloadavg()[0]
    print(
        f"| {name} | {run.seconds:.1f} | {rows / run.seconds:,.0f} | {run.tree_peak_mib:,.0f} "
        f"| {load:.2f} |",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows of each generated month")
    parser.add_argument("--months", type=int, default=12, choices=range(2, 13), metavar="2..12")
    args = parser.parse_args()
    print(f"cores={os.cpu_count()}, {args.months} months × {args.rows:,} raw rows\n")
    print("| run | wall s | rows/s | peak RSS MiB (process tree) | load average after |")
    print("|---|---:|---:|---:|---:|")
    with database_server("year-postgres") as server:
        results = year(args.rows, args.months, server)
    months = [run for name, _, run in results if name.startswith("pipeline")]
    first, last = months[0], months[-1]
    print(
        f"\nlast month / first: wall {last.seconds / first.seconds:.2f}×, peak RSS "
        f"{last.tree_peak_mib / first.tree_peak_mib:.2f}× (largest of all months "
        f"{max(run.tree_peak_mib for run in months):,.0f} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
