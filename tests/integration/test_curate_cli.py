"""The curate command as users run it: ``python -m chillflow`` and ``spark-submit``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from chillflow.generator import generate_month
from tests.conftest import REPO_ROOT


def run(args, env_extra, timeout=300):
    env = {**os.environ, "LOG_LEVEL": "INFO", **env_extra}
    return subprocess.run(
        args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def cli_env(tmp_path):
    # No database: curate runs without one (and records no run).
    return {
        "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
        "SPARK_MASTER": "local[2]",
        "DATABASE_URL": "",
    }


def test_cli_curates_with_json_stats_and_fails_cleanly(tmp_path, cli_env):
    raw = generate_month(tmp_path / "yellow_tripdata_2025-03.parquet", month="2025-03", rows=2000)
    curated = tmp_path / "out/trips"
    bad = tmp_path / "yellow_tripdata_2025-04.parquet"
    bad.write_text("not parquet")

    done = run(
        [sys.executable, "-m", "chillflow", "curate", "month", str(raw), str(curated), "--json"],
        cli_env,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(done.stdout)
    assert stats["input_rows"] == 2000
    assert stats["input_rows"] == stats["output_rows"] + stats["quarantined_rows"]
    assert 0 < stats["retention_rate"] < 100
    assert set(stats) >= {"rejections", "duration_sec", "run_id"}
    assert (curated / "_delta_log").is_dir()
    assert (tmp_path / "out/trips_quarantine/_delta_log").is_dir()
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    finished = [e for e in events if e["event"] == "curate.finished"]
    assert finished and finished[0]["run_id"] == stats["run_id"]
    assert finished[0]["month"] == "2025-03" and finished[0]["job"] == "curate"
    assert "SparkStringUtils" not in done.stderr  # "Truncated the string representation …"

    failed = run([sys.executable, "-m", "chillflow", "curate", "month", str(bad)], cli_env)

    assert failed.returncode == 3
    assert f"error: {bad}: not a Parquet file" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_bad_month_and_unreadable_config_exit_non_zero(tmp_path, cli_env):
    raw = generate_month(tmp_path / "yellow_tripdata_2025-03.parquet", month="2025-03", rows=10)

    bad_month = run(
        [sys.executable, "-m", "chillflow", "curate", "month", str(raw), "--month", "2025-3"],
        cli_env,
    )
    bad_level = run(
        [sys.executable, "-m", "chillflow", "curate", "month", str(raw)],
        {**cli_env, "LOG_LEVEL": "loud"},
    )

    assert bad_month.returncode == 2
    assert "invalid month '2025-3': expected YYYY-MM" in bad_month.stderr
    assert bad_level.returncode == 2
    assert "LOG_LEVEL='LOUD'" in bad_level.stderr


def test_invalid_rule_fails_in_one_line_without_a_jvm_trace(tmp_path, cli_env):
    raw = generate_month(tmp_path / "yellow_tripdata_2025-03.parquet", month="2025-03", rows=10)
    conf = shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    rules = conf / "quality_rules.toml"
    rules.write_text(rules.read_text().replace('"total_amount >= 0"', '"totl_amount >= 0"'))

    failed = run(
        [sys.executable, "-m", "chillflow", "curate", "month", str(raw)],
        {**cli_env, "CHILLFLOW_CONF_DIR": str(conf)},
    )

    assert failed.returncode == 2, failed.stderr[-3000:]
    assert (
        "error: data-quality rule 'total_amount_non_negative': predicate 'totl_amount >= 0' "
        "is not a valid Spark SQL expression over the curated columns: "
        "[UNRESOLVED_COLUMN.WITH_SUGGESTION]" in failed.stderr
    )
    assert "SQLQueryContextLogger" not in failed.stderr
    assert "at org.apache.spark" not in failed.stderr
    assert "Traceback" not in failed.stderr


def test_spark_submit_runs_the_curate_job(tmp_path, cli_env):
    raw = generate_month(
        tmp_path / "green_tripdata_2025-02.parquet", service="green", month="2025-02", rows=1500
    )
    curated = tmp_path / "submitted/trips"

    done = run(
        ["bash", str(REPO_ROOT / "spark-submit.sh"), "curate", str(raw), str(curated), "--json"],
        {**cli_env, "SPARK_MASTER": "local[2]", "PYTHON": sys.executable},
    )

    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["input_rows"] == 1500
    assert stats["slices"] == [{"service": "green", "month": "2025-02"}]
