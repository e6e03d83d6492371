"""Benchmark curate of one month on local[2] versus a Spark standalone cluster on this machine.

    python bench/bench_cluster.py                       # 10M rows, 2 runs per mode
    python bench/bench_cluster.py --rows 3000000 --repeat 3

Both modes run the whole job as users do, ``./spark-submit.sh curate RAW --json`` (JVM start,
Delta commit and all), into a fresh lake per run, alternating modes so that background load
hits both alike. The cluster is a master and two workers with one core each (same two cores
as local[2]) started from pyspark's own ``spark-class``. Prints a markdown table: wall time of
the process, the job's own duration (from its stats, without JVM start), and rows/s of each.
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

from measure import run_measured

from chillflow.generator import generate_month

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# The cluster helper lives with the tests of this checkout.
sys.path.insert(0, str(REPO))

from tests.cluster.standalone_cluster import StandaloneCluster  # noqa: E402

OUT = BENCH / "out"
MONTH = "2025-01"


def raw_file(rows: int) -> Path:
    path = OUT / "raw" / str(rows) / f"yellow_tripdata_{MONTH}.parquet"
    if not path.exists():
        generate_month(path, rows=rows, month=MONTH, seed=2025)
    return path


def curate_once(mode: str, master: str, raw: Path, run: int, env_extra: dict[str, str]) -> dict:
    data = OUT / f"cluster-bench-{mode}-{run}"
    shutil.rmtree(data, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "CHILLFLOW_"))}
    env.update(
        {
            "PYTHON": sys.executable,
            "SPARK_MASTER": master,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "CHILLFLOW_DATA_DIR": str(data),
            "LOG_LEVEL": "WARNING",
            "SPARK_SUBMIT_EXTRA": "--conf spark.ui.enabled=false",
            **env_extra,
        }
    )
    done = run_measured(
        ["bash", str(REPO / "spark-submit.sh"), "curate", str(raw), "--json"], env, cwd=REPO
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} run {run} failed:\n{done.stderr[-4000:]}")
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(data, ignore_errors=True)
    return {"process_s": done.seconds, "job_s": stats["duration_sec"], "rows": stats["input_rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--worker-memory", default="2g")
    args = parser.parse_args()
    raw = raw_file(args.rows)
    load_before = os.getloadavg()[0]

    local_env = {"DRIVER_MEMORY": "4g"}
    cluster_env = {"DRIVER_MEMORY": "2g", "EXECUTOR_MEMORY": args.worker_memory}
    results: dict[str, list[dict]] = {"local[2]": [], "standalone 2×1 core": []}
    cluster_dir = OUT / "standalone"
    shutil.rmtree(cluster_dir, ignore_errors=True)
    started = time.monotonic()
    with StandaloneCluster(cluster_dir, workers=2, cores=1, memory=args.worker_memory) as cluster:
        cluster_start_s = time.monotonic() - started
        for run in range(args.repeat):
            results["local[2]"].append(curate_once("local", "local[2]", raw, run, local_env))
            results["standalone 2×1 core"].append(
                curate_once("cluster", cluster.master_url, raw, run, cluster_env)
            )

    print(
        f"\n{args.rows:,} rows, {raw.stat().st_size / 2**20:.0f} MiB raw Parquet; cores="
        f"{os.cpu_count()}; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; cluster start {cluster_start_s:.0f} s (not counted); "
        f"median of {args.repeat} runs\n"
    )
    print("| mode | process s | rows/s | job s | rows/s (job) | runs (process s) |")
    print("|---|---:|---:|---:|---:|---|")
    for mode, runs in results.items():
        process_s = statistics.median(r["process_s"] for r in runs)
        job_s = statistics.median(r["job_s"] for r in runs)
        all_runs = ", ".join(f"{r['process_s']:.1f}" for r in runs)
        print(
            f"| {mode} | {process_s:.1f} | {args.rows / process_s:,.0f} | {job_s:.1f} | "
            f"{args.rows / job_s:,.0f} | {all_runs} |"
        )


if __name__ == "__main__":
    main()
