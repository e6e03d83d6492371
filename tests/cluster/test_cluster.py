"""The pipeline on a real Spark standalone cluster equals the pipeline in local mode, row for row.

A master and two one-core workers start on 127.0.0.1 from the pyspark installation's own
``spark-class`` (tests/cluster/standalone_cluster.py); one small generated month then goes through
curate → process trips → aggregate via ``./spark-submit.sh`` against the cluster, into one lake
and one database, and through the stage functions in this session's local Spark, into another
lake and database (``./spark-submit.sh`` in local mode has tests of its own). Every table both
runs wrote must hold the same rows, apart from lineage columns (run ids and timestamps).

A step runs when its job script exists under ``jobs/``, so the test grows with the pipeline.
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

from chillflow.database_url import DatabaseUrl, parse_database_url
from chillflow.generator import generate_month
from chillflow.settings import Settings, load_settings
from chillflow.stages.aggregate import aggregate_full_refresh
from chillflow.stages.curate import curate
from chillflow.stages.trips import process_trips
from tests.cluster.standalone_cluster import StandaloneCluster
from tests.conftest import REPO_ROOT, create_database, drop_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MONTH = "2025-01"
ROWS = 4000
STEP_TIMEOUT_SEC = 900
SERVICE = "yellow"
MODES = ("cluster", "local")  # what each comparison unpacks, in this order


@dataclasses.dataclass(frozen=True)
class Step:
    job: str
    script: str
    args: tuple[str, ...]
    needs_database: bool

    @property
    def available(self) -> bool:
        return (REPO_ROOT / self.script).is_file()


# The raw file's path is put before curate's arguments.
STEPS = (
    Step("curate", "jobs/curate.py", ("--month", MONTH, "--json"), needs_database=False),
    Step(
        "process-trips",
        "jobs/process_trips.py",
        ("--month", MONTH, "--service", SERVICE, "--json"),
        needs_database=True,
    ),
    Step(
        "aggregate", "jobs/aggregate.py", ("run", "--full-refresh", "--json"), needs_database=True
    ),
)


@dataclasses.dataclass
class PipelineRun:
    mode: str
    master: str
    settings: Settings
    database_url: str | None
    stats: dict[str, dict] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def available_steps() -> list[Step]:
    return [step for step in STEPS if step.available]


def step_available(job: str) -> bool:
    return any(step.job == job and step.available for step in STEPS)


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
def server_url(request: pytest.FixtureRequest) -> DatabaseUrl | None:
    """A PostgreSQL server for the steps that need one: the suite's ``database_url``'s.

    Each mode gets a database of its own on that server.
    """
    if not any(step.needs_database for step in available_steps()):
        return None
    return request.getfixturevalue("database_url")


@pytest.fixture(scope="module")
def raw_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("landing") / f"{SERVICE}_tripdata_{MONTH}.parquet"
    return generate_month(path, service=SERVICE, month=MONTH, rows=ROWS, seed=2025)


@pytest.fixture(scope="module")
def runs(
    spark: SparkSession,
    cluster: StandaloneCluster,
    server_url: DatabaseUrl | None,
    raw_month: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, PipelineRun]]:
    """Run every available step on the cluster, then in this session; yield both runs."""
    masters = {"cluster": cluster.master_url, "local": "local[2]"}
    databases = {}
    try:
        pipeline_runs = {}
        for mode, master in masters.items():
            database_url = None
            if server_url is not None:
                created = create_database(server_url, f"chillflow_cluster_test_{mode}")
                databases[mode] = created.dbname
                database_url = created.url()
            root = tmp_path_factory.mktemp(f"run-{mode}")
            if mode == "cluster":
                run = _run_pipeline(mode, master, root, raw_month, database_url, cluster)
            else:
                run = _run_in_session(spark, root, raw_month, database_url)
            pipeline_runs[mode] = run
        print(_summary(pipeline_runs))
        yield pipeline_runs
    finally:
        for name in databases.values():
            with contextlib.suppress(psycopg2.Error):
                drop_database(server_url, name)


def test_every_step_ran_on_the_cluster_with_both_workers(runs, cluster):
    finished = {app["name"]: app for app in cluster.applications() if app["state"] == "FINISHED"}

    assert set(runs["cluster"].stats) == {step.job for step in available_steps()}
    for step in available_steps():
        app = finished.get(f"chillflow-{step.job}")
        assert app is not None, f"no finished application for {step.job}: {sorted(finished)}"
        workers = {path.parent.parent.name for path in cluster.executor_dirs(app["id"])}
        assert workers == {"worker-1", "worker-2"}, f"{step.job} executors ran on {workers}"


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
    _require("process-trips")
    cluster_rows, local_rows = (
        _read_table(spark, runs[mode], "stg.complete_trip") for mode in MODES
    )

    _assert_same_rows(cluster_rows, local_rows, "stg.complete_trip")
    curated = _read_delta(spark, runs["cluster"].settings.tables.curated)
    assert cluster_rows.count() == curated.count()


def test_kpis_equal_local_mode(runs, spark):
    _require("aggregate")
    delta_rows = [_read_delta(spark, runs[mode].settings.tables.kpis) for mode in MODES]
    mart_rows = [_read_table(spark, runs[mode], "mart.zone_hourly_kpis") for mode in MODES]

    _assert_same_rows(*delta_rows, "KPI Delta table")
    _assert_same_rows(*mart_rows, "mart.zone_hourly_kpis")


# ---------------------------------------------------------------------------------------------


def _require(job: str) -> None:
    if not step_available(job):
        pytest.skip(f"the {job} job does not exist yet")


def _environment(master: str, root: Path, database_url: str | None) -> dict[str, str]:
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
        }
    )
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


def _run_pipeline(
    mode: str,
    master: str,
    root: Path,
    raw: Path,
    database_url: str | None,
    cluster: StandaloneCluster | None,
) -> PipelineRun:
    env = _environment(master, root, database_url)
    run = PipelineRun(mode, master, load_settings(REPO_ROOT / "conf", env), database_url)
    for step in available_steps():
        args = list(step.args)
        if step.job == "curate":
            args.insert(0, str(raw))
        if step.job == "aggregate" and not step_available("process-trips"):
            args += ["--source", "curated"]  # no trips in PostgreSQL without process-trips
        started = time.monotonic()
        run.stats[step.job] = _submit(step.job, args, env, cluster)
        run.seconds[step.job] = time.monotonic() - started
    return run


def _run_in_session(
    spark: SparkSession, root: Path, raw: Path, database_url: str | None
) -> PipelineRun:
    """The same steps in this test session's local Spark, through the stage functions."""
    settings = load_settings(REPO_ROOT / "conf", _environment("local[2]", root, database_url))
    run = PipelineRun("local", "local[2] (the test session)", settings, database_url)
    source = None if step_available("process-trips") else "curated"
    stages = {
        "curate": lambda: curate(spark, settings, raw, database_url=settings.database_url),
        "process-trips": lambda: process_trips(
            spark, settings, settings.database_url, month=MONTH, service=SERVICE
        ),
        "aggregate": lambda: aggregate_full_refresh(
            spark, settings, settings.database_url, source=source
        ),
    }
    for step in available_steps():
        started = time.monotonic()
        run.stats[step.job] = stages[step.job]()
        run.seconds[step.job] = time.monotonic() - started
    return run


def _submit(job: str, args: list[str], env: dict[str, str], cluster: StandaloneCluster | None):
    """Run one step through spark-submit.sh; fail with its stderr and the cluster's logs."""
    command = ["bash", str(REPO_ROOT / "spark-submit.sh"), job, *args]
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
        stdout, stderr = process.communicate(timeout=STEP_TIMEOUT_SEC)
        problem = None if process.returncode == 0 else f"exited with code {process.returncode}"
    except subprocess.TimeoutExpired:
        # spark-submit's JVM starts the Python driver: end the whole process group.
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        problem = f"timed out after {STEP_TIMEOUT_SEC} s"
    if problem is not None:
        details = [
            f"{job} on {env['SPARK_MASTER']} {problem} after {time.monotonic() - started:.0f} s",
            f"command: {' '.join(command)}",
            "--- stdout (last 20 lines)",
            "\n".join(stdout.splitlines()[-20:]),
            "--- stderr (last 60 lines)",
            "\n".join(stderr.splitlines()[-60:]),
        ]
        if cluster is not None:
            details += ["--- cluster logs", cluster.log_tails()]
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
    lines = ["cluster test steps (seconds):"]
    for mode, run in pipeline_runs.items():
        timings = ", ".join(f"{job} {sec:.0f}" for job, sec in run.seconds.items())
        lines.append(f"  {mode} ({run.master}): {timings}")
    skipped = [step.job for step in STEPS if not step.available]
    if skipped:
        lines.append(f"  not run (no job script yet): {', '.join(skipped)}")
    return "\n".join(lines)
