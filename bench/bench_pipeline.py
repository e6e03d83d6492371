"""A whole month, ChillFlow against its DuckDB + PostgreSQL COPY reference: time, memory, results.

    python bench/bench_pipeline.py --rows 3000000 [--repeat 3]
    python bench/bench_pipeline.py --raw ../shared/data/tlc/green_tripdata_2021-01.parquet
    python bench/bench_pipeline.py --rows 20000 --chillflow-cmd stages

Every repetition gets a fresh database on DATABASE_URL's server (an embedded PostgreSQL under
bench/out when unset), a fresh lake and a fresh hash salt, and runs, in alternating order:
ChillFlow as the scheduler runs it, one `pipeline month RAW --json` process (with
`--chillflow-cmd stages` three fresh processes `curate month`, `process trips` and
`aggregate backfill` of the month); and bench/reference_pipeline.py in a process of its own, into
the same database. Then the results are compared row for row and the database is dropped. Prints
medians of wall time, rows/s, the pipeline's own per-stage timings, the peak RSS of each process
tree (the JVM included), the load averages and the ChillFlow/reference ratios; exits 1 when a
run fails or the results differ.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import socket
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import reference_pipeline as ref
from measure import Run, run_measured
from psycopg2 import sql

from chillflow.database_url import DatabaseUrl, parse_database_url
from chillflow.errors import DatabaseError
from chillflow.generator import generate_month
from chillflow.settings import load_settings
from chillflow.storage.pg_server import ensure_local_postgres, stop_local_postgres
from chillflow.storage.postgres import connect

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
SCHEMA = "reference"


def chillflow_commands(raw: Path, month: str, command: str) -> dict[str, list[str]]:
    """The ChillFlow processes of one month, by step name."""
    cli = [sys.executable, "-m", "chillflow"]
    if command == "pipeline":
        return {"pipeline": [*cli, "pipeline", "month", str(raw), "--month", month, "--json"]}
    last_day = calendar.monthrange(int(month[:4]), int(month[5:]))[1]
    return {
        "curate": [*cli, "curate", "month", str(raw), "--month", month, "--json"],
        "process trips": [*cli, "process", "trips", "--month", month, "--json"],
        "aggregate backfill": [
            *cli,
            "aggregate",
            "backfill",
            "--start",
            f"{month}-01",
            "--end",
            f"{month}-{last_day:02d}",
            "--json",
        ],
    }


def admin(server: DatabaseUrl, statement: sql.Composable) -> None:
    with connect(server) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)


def drop_database(server: DatabaseUrl, name: str) -> None:
    """Drop a benchmark database; a plain DROP when FORCE may not end an autovacuum worker."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    try:
        admin(server, drop + sql.SQL(" WITH (FORCE)"))
    except DatabaseError:
        admin(server, drop)


@contextlib.contextmanager
def database_server(name: str) -> Iterator[DatabaseUrl]:
    """DATABASE_URL's server, else an embedded PostgreSQL under bench/out/NAME, stopped after."""
    if os.environ.get("DATABASE_URL"):
        yield parse_database_url(os.environ["DATABASE_URL"])
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        yield ensure_local_postgres(OUT / name, port=port)
    finally:
        stop_local_postgres(OUT / name)


def measured(name: str, command: list[str], env: dict[str, str]) -> Run:
    run = run_measured(command, env)
    if run.returncode != 0:
        raise SystemExit(f"{name} failed with exit code {run.returncode}:\n{run.stderr[-4000:]}")
    return run


def repetition(
    args: argparse.Namespace, raw: Path, month: str, server: DatabaseUrl, index: int
) -> dict:
    """One ChillFlow run and one reference run into a fresh database; compared, then dropped."""
    name = f"chillflow_bench_{secrets.token_hex(4)}"
    url = dataclasses.replace(server, dbname=name)
    data_dir, ref_out = OUT / "pipeline" / "chillflow", OUT / "pipeline" / "reference"
    for directory in (data_dir, ref_out):
        shutil.rmtree(directory, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CHILLFLOW_LAKE_DIR", "CHILLFLOW_ENV")}
    env |= {"DATABASE_URL": url.url(), "HASH_SALT": secrets.token_hex(16), "LOG_LEVEL": "WARNING"}
    chillflow_env = env | {"CHILLFLOW_DATA_DIR": str(data_dir)}
    admin(server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        measured("db init", [sys.executable, "-m", "chillflow", "db", "init"], chillflow_env)
        runs: dict[str, Run] = {}
        reference = [
            sys.executable,
            str(BENCH / "reference_pipeline.py"),
            str(raw),
            "--month",
            month,
            "--out",
            str(ref_out),
            "--schema",
            SCHEMA,
            "--json",
        ]
        sides = [
            ("chillflow", chillflow_commands(raw, month, args.chillflow_cmd)),
            ("reference", {"reference": reference}),
        ]
        load_before = os.getloadavg()[0]
        for side, commands in sides if index % 2 == 0 else sides[::-1]:
            for step, command in commands.items():
                runs[step] = measured(step, command, chillflow_env if side == "chillflow" else env)
        stats = json.loads(runs["reference"].stdout)
        tables = load_settings(env=chillflow_env).tables
        problems, summary = ref.differences(
            url.url(), SCHEMA, stats, tables.curated, tables.quarantine, ref_out
        )
    finally:
        if args.keep:
            print(f"kept database {name}", file=sys.stderr)
        else:
            drop_database(server, name)
    chillflow = sum(run.seconds for step, run in runs.items() if step != "reference")
    loads = (load_before, os.getloadavg()[0])
    timings = json.loads(runs["pipeline"].stdout)["timings_sec"] if "pipeline" in runs else {}
    print(
        f"repetition {index + 1}: ChillFlow {chillflow:.1f} s {timings}, reference "
        f"{runs['reference'].seconds:.1f} s, {'results equal' if not problems else 'DIFFERENT'}; "
        f"load average {loads[0]:.2f} before, {loads[1]:.2f} after",
        file=sys.stderr,
        flush=True,
    )
    return {
        "runs": runs,
        "stats": stats,
        "problems": problems,
        "summary": summary,
        "loads": loads,
        "timings": timings,
    }


def report(reps: list[dict], raw: Path) -> None:
    stats = reps[0]["stats"]
    load = max(max(rep["loads"]) for rep in reps)
    rows = stats["input_rows"]
    steps = [step for step in reps[0]["runs"] if step != "reference"]

    def seconds(pick) -> str:
        values = [pick(rep) for rep in reps]
        spread = f" [{min(values):.1f}-{max(values):.1f}]" if len(values) > 1 else ""
        return f"{statistics.median(values):.1f}{spread}"

    def median(pick) -> float:
        return statistics.median(pick(rep) for rep in reps)

    def peak(names) -> float:
        return max(rep["runs"][n].tree_peak_mib for rep in reps for n in names)

    total = median(lambda rep: sum(rep["runs"][s].seconds for s in steps))
    reference = median(lambda rep: rep["runs"]["reference"].seconds)
    print(
        f"\n{raw.name}: {rows:,} raw rows, {stats['service']} {stats['month']}; "
        f"{stats['output_rows']:,} curated, {stats['quarantined_rows']:,} quarantined, "
        f"{stats['loaded']:,} loaded, {stats['kpi_rows']:,} KPI rows. cores={os.cpu_count()}, "
        f"highest 1-minute load average before or after a repetition {load:.2f}"
        + (" (a busy machine: read the times as indicative only)" if load >= 1.0 else "")
        + f"; median of {len(reps)} interleaved repetitions [min-max]\n"
    )
    print("| run | wall s | raw rows/s | peak RSS MiB (process tree) |")
    print("|---|---:|---:|---:|")
    for step in steps:
        s = median(lambda rep, s=step: rep["runs"][s].seconds)
        print(
            f"| ChillFlow {step} | {seconds(lambda rep, s=step: rep['runs'][s].seconds)} | "
            f"{rows / s:,.0f} | {peak([step]):,.0f} |"
        )
    for part in reps[0]["timings"]:
        print(
            f"| ChillFlow pipeline: {part} (inside its process) | "
            f"{seconds(lambda rep, p=part: rep['timings'][p])} | | |"
        )
    print(f"| **ChillFlow total** | **{total:.1f}** | {rows / total:,.0f} | {peak(steps):,.0f} |")
    for part in ("curate", "load", "kpis"):
        print(
            f"| reference {part} (inside its process) | "
            f"{seconds(lambda rep, p=part: rep['stats'][f'{p}_sec'])} | | |"
        )
    print(
        f"| **reference (DuckDB + COPY), whole process** | "
        f"**{seconds(lambda rep: rep['runs']['reference'].seconds)}** | "
        f"{rows / reference:,.0f} | {peak(['reference']):,.0f} |"
    )
    print(
        f"| **ratio ChillFlow / reference** | **{total / reference:.1f}×** | | "
        f"{peak(steps) / peak(['reference']):.1f}× |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--rows", type=int, default=3_000_000, help="generate a yellow month")
    source.add_argument("--raw", type=Path, help="a raw TLC monthly file instead")
    parser.add_argument("--month", help="YYYY-MM of --raw; by default from its name")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repetitions")
    parser.add_argument(
        "--chillflow-cmd",
        choices=("stages", "pipeline"),
        default="pipeline",
        help="the single `pipeline month` command, or three stage processes",
    )
    parser.add_argument("--keep", action="store_true", help="keep each repetition's database")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    raw = (
        args.raw.resolve()
        if args.raw
        else OUT / "raw" / str(args.rows) / "yellow_tripdata_2025-01.parquet"
    )
    if not raw.exists():
        if args.raw:
            parser.error(f"{raw} does not exist")
        generate_month(raw, rows=args.rows, month="2025-01", seed=2025)
    month = ref.month_of(raw, args.month)
    with database_server("pipeline-postgres") as server:
        reps = [repetition(args, raw, month, server, i) for i in range(args.repeat)]
    report(reps, raw)
    problems = [p for rep in reps for p in rep["problems"]]
    if problems:
        print("\nresults differ:\n" + "\n".join(f"- {p}" for p in problems[:20]))
        return 1
    print(f"\nresults equal in every repetition: {reps[-1]['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
