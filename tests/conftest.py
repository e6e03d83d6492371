"""Shared fixtures: one local SparkSession, per-test Delta lakes, real data and PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
from pyspark.sql import SparkSession

from chillflow.logs import configure_logging
from chillflow.session import build_spark
from chillflow.settings import Settings, TablePaths, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent

_TEST_SPARK_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.databricks.delta.snapshotPartitions": "1",
    "spark.driver.memory": "2g",
}


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("chillflow-data")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CHILLFLOW_ENV", "HASH_SALT", "CHILLFLOW_LAKE_DIR")
    }
    env["CHILLFLOW_DATA_DIR"] = str(data_dir)
    env["SPARK_MASTER"] = "local[2]"
    settings = load_settings(REPO_ROOT / "conf", env)
    configure_logging("WARNING", json=True)
    spark_settings = dataclasses.replace(
        settings.spark,
        conf=MappingProxyType({**settings.spark.conf, **_TEST_SPARK_CONF}),
    )
    return dataclasses.replace(settings, spark=spark_settings)


@pytest.fixture(scope="session")
def spark(base_settings: Settings) -> Iterator[SparkSession]:
    session = build_spark(base_settings.spark, app_name="chillflow-tests")
    yield session
    session.stop()


@pytest.fixture
def settings(base_settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose lake is a fresh directory for this test."""
    lake = tmp_path / "lake"
    return dataclasses.replace(
        base_settings,
        lake_dir=lake,
        tables=TablePaths(
            curated=lake / "curated/trips",
            quarantine=lake / "curated/quarantine",
            dq_metrics=lake / "curated/dq_metrics",
            kpis=lake / "marts/zone_hourly_kpis",
        ),
    )


@pytest.fixture(scope="session")
def tlc_dir() -> Path:
    """The real TLC sample files (``CHILLFLOW_TLC_DIR`` or ``../shared/data/tlc``)."""
    path = Path(os.environ.get("CHILLFLOW_TLC_DIR", REPO_ROOT.parent / "shared/data/tlc"))
    if not (path / "taxi_zone_lookup.csv").is_file():
        pytest.skip(f"real TLC files not found at {path} (set CHILLFLOW_TLC_DIR)")
    return path
