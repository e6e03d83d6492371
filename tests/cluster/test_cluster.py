"""The pipeline on a real Spark standalone cluster equals the pipeline in local mode, row for row.

A master and two one-core workers start on 127.0.0.1 from the pyspark installation's own
``spark-class`` (tests/cluster/standalone_cluster.py); one small generated month then goes through
the monthly pipeline (curate → process trips → the month's KPIs) as one ``./spark-submit.sh
pipeline`` application against the cluster, into one lake and one database, and through the same
``MonthlyPipeline`` in this session's local Spark, into another lake and database
(``./spark-submit.sh`` in local mode has tests of its own). Every table both runs wrote must hold
the same rows, apart from lineage columns (run ids and timestamps).

The cluster is stopped at module teardown whatever happened, leftover executors included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType

from chillflow.api.pipeline import STAGES, MonthlyPipeline
from chillflow.database_url import DatabaseUrl, parse_database_url
from chillflow.generator import generate_month
from chillflow.settings import Settings, load_settings
from tests.cluster.standalone_cluster import StandaloneCluster
from tests.conftest import REPO_ROOT, create_database, drop_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MONTH = "2025-01"
ROWS = 4000
RUN_TIMEOUT_SEC = 900
SERVICE = "yellow"
JOB = "pipeline"
MODES = ("cluster", "local")  # what each comparison unpacks, in this order


@dataclasses.dataclass
class PipelineRun:
    mode: str
    master: str
    settings: Settings
    database_url: str
    stats: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    standalone = StandaloneCluster(
        tmp_path_factory.mktemp("standalone"), workers=2, cores=1, memory="1g"
    )
    try:
        standalone.start(timeout_sec=300)
        yield standalone
    finally:
        standalone.stop()


@pytest.fixture(scope="module")
def raw_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("landing") / f"{SERVICE}_tripdata_{MONTH}.parquet"
    return generate_month(path, service=SERVICE, month=MONTH, rows=ROWS, seed=2025)


@pytest.fixture(scope="module")
def runs(
    spark: SparkSession,
    cluster: StandaloneCluster,
    database_url: DatabaseUrl,
    raw_month: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, PipelineRun]]:
    """Run the pipeline on the cluster, then in this session; yield both runs.

    Each mode gets a database of its own on the suite's PostgreSQL server.
    """
    databases = {}
    try:
        pipeline_runs = {}
        for mode in MODES:
            created = create_database(database_url, f"chillflow_cluster_test_{mode}")
            databases[mode] = created.dbname
            root = tmp_path_factory.mktemp(f"run-{mode}")
            if mode == "cluster":
                run = _run_on_cluster(root, raw_month, created.url(), cluster)
            else:
                run = _run_in_session(spark, root, raw_month, created.url())
            pipeline_runs[mode] = run
        print(_summary(pipeline_runs))
        yield pipeline_runs
    finally:
        for name in databases.values():
            with contextlib.suppress(psycopg2.Error):
                drop_database(database_url, name)


def test_every_stage_ran_in_one_cluster_application_with_both_workers(runs, cluster):
    finished = {app["name"]: app for app in cluster.applications() if app["state"] == "FINISHED"}

    assert set(STAGES) <= set(runs["cluster"].stats)
    assert runs["cluster"].stats["month"] == MONTH
    app = finished.get(f"chillflow-{JOB}")
    assert app is not None, f"no finished application for {JOB}: {sorted(finished)}"
    workers = {path.parent.parent.name for path in cluster.executor_dirs(app["id"])}
    assert workers == {"worker-1", "worker-2"}, f"{JOB} executors ran on {workers}"


@pytest.mark.parametrize("table", ["curated", "quarantine", "dq_metrics"])
def test_curate_tables_equal_local_mode(runs, spark, table):
    cluster_rows, local_rows = (
        _read_delta(spark, getattr(runs[mode].settings.tables, table)) for mode in MODES
    )

    _assert_same_rows(cluster_rows, local_rows, table)


def test_curate_results_match_the_raw_month(runs):
    def comparable(stats: dict) -> dict:
        return {
            k: v
            for k, v in stats.items()
            if k not in ("run_id", "duration_sec") and not k.endswith("_path")
        }

    stats = runs["cluster"].stats["curate"]

    assert stats["input_rows"] == ROWS
    assert stats["output_rows"] > 0 and stats["quarantined_rows"] > 0
    assert comparable(stats) == comparable(runs["local"].stats["curate"])


def test_trips_in_postgres_equal_local_mode(runs, spark):
    cluster_rows, local_rows = (
        _read_table(spark, runs[mode], "stg.complete_trip") for mode in MODES
    )

    _assert_same_rows(cluster_rows, local_rows, "stg.complete_trip")
    curated = _read_delta(spark, runs["cluster"].settings.tables.curated)
    assert cluster_rows.count() == curated.count()


def test_kpis_equal_local_mode(runs, spark):
    delta_rows = [_read_delta(spark, runs[mode].settings.tables.kpis) for mode in MODES]
    mart_rows = [_read_table(spark, runs[mode], "mart.zone_hourly_kpis") for mode in MODES]

    _assert_same_rows(*delta_rows, "KPI Delta table")
    _assert_same_rows(*mart_rows, "mart.zone_hourly_kpis")


# ---------------------------------------------------------------------------------------------


def _environment(master: str, root: Path, database_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SPARK_", "CHILLFLOW_", "PYSPARK_", "DATABASE_URL"))
    }
    env.update(
        {
            "PYTHON": sys.executable,
            "SPARK_MASTER": master,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "CHILLFLOW_DATA_DIR": str(root / "data"),
            "CHILLFLOW_LAKE_DIR": str(root / "lake"),
            "LOG_LEVEL": "INFO",
            "DRIVER_MEMORY": "1g",
            "EXECUTOR_MEMORY": "1g",
            "SPARK_SUBMIT_EXTRA": "--conf spark.ui.enabled=false",
            "DATABASE_URL": database_url,
        }
    )
    return env


def _run_on_cluster(
    root: Path, raw: Path, database_url: str, cluster: StandaloneCluster
) -> PipelineRun:
    """The pipeline as one spark-submit application on the cluster."""
    env = _environment(cluster.master_url, root, database_url)
    run = PipelineRun(
        "cluster", cluster.master_url, load_settings(REPO_ROOT / "conf", env), database_url
    )
    started = time.monotonic()
    run.stats = _submit([str(raw), "--month", MONTH, "--json"], env, cluster)
    run.seconds = time.monotonic() - started
    return run


def _run_in_session(spark: SparkSession, root: Path, raw: Path, database_url: str) -> PipelineRun:
    """The same pipeline in this test session's local Spark."""
    settings = load_settings(REPO_ROOT / "conf", _environment("local[2]", root, database_url))
    run = PipelineRun("local", "local[2] (the test session)", settings, database_url)
    pipeline = MonthlyPipeline(settings=settings, spark=spark, database_url=database_url)
    started = time.monotonic()
    run.stats = pipeline.run_month(raw, month=MONTH)
    run.seconds = time.monotonic() - started
    return run


def _submit(args: list[str], env: dict[str, str], cluster: StandaloneCluster) -> dict:
    """Run the pipeline through spark-submit.sh; fail with its stderr and the cluster's logs."""
    command = ["bash", str(REPO_ROOT / "spark-submit.sh"), JOB, *args]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_SEC)
        problem = None if process.returncode == 0 else f"exited with code {process.returncode}"
    except subprocess.TimeoutExpired:
        # spark-submit's JVM starts the Python driver: end the whole process group.
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        problem = f"timed out after {RUN_TIMEOUT_SEC} s"
    if problem is not None:
        details = [
            f"{JOB} on {env['SPARK_MASTER']} {problem} after {time.monotonic() - started:.0f} s",
            f"command: {' '.join(command)}",
            "--- stdout (last 20 lines)",
            "\n".join(stdout.splitlines()[-20:]),
            "--- stderr (last 60 lines)",
            "\n".join(stderr.splitlines()[-60:]),
            "--- cluster logs",
            cluster.log_tails(),
        ]
        pytest.fail("\n".join(details), pytrace=False)
    objects = [line for line in stdout.splitlines() if line.startswith("{")]
    return json.loads(objects[-1]) if objects else {}


def _read_delta(spark: SparkSession, path: Path) -> DataFrame:
    return spark.read.format("delta").load(str(path))


def _read_table(spark: SparkSession, run: PipelineRun, table: str) -> DataFrame:
    target = parse_database_url(run.database_url)
    return spark.read.jdbc(target.jdbc_url(), table, properties=target.jdbc_properties())


def _is_lineage(column: str) -> bool:
    return column == "run_id" or column.endswith(("_run_id", "_at"))


def _assert_same_rows(cluster_rows: DataFrame, local_rows: DataFrame, what: str) -> None:
    """Equal rows in any order, lineage columns aside.

    Doubles are rounded to 9 decimals: a sum or average adds its values in an order that
    depends on how the rows were partitioned, which differs between the two runs.
    """
    assert cluster_rows.columns == local_rows.columns, what
    kept = [c for c in local_rows.columns if not _is_lineage(c)]

    def comparable(rows: DataFrame) -> DataFrame:
        return rows.select(
            *(
                F.round(field.name, 9).alias(field.name)
                if isinstance(field.dataType, DoubleType)
                else field.name
                for field in rows.schema.fields
                if field.name in kept
            )
        )

    assert local_rows.count() > 0, f"{what}: the local run wrote no rows"
    assert_df_equality(comparable(cluster_rows), comparable(local_rows), ignore_row_order=True)


def _summary(pipeline_runs: dict[str, PipelineRun]) -> str:
    lines = ["cluster test pipeline runs (seconds):"]
    for mode, run in pipeline_runs.items():
        lines.append(f"  {mode} ({run.master}): {run.seconds:.0f}")
    return "\n".join(lines)
