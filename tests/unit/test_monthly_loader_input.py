"""Bad raw input fails in MonthlyLoader before any SparkSession (and its JVM) is started."""

from __future__ import annotations

import pytest

from chillflow import runtime
from chillflow.batch import MonthlyLoader
from chillflow.errors import ConfigError, SchemaError


@pytest.fixture
def no_spark(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a SparkSession was requested before the input was checked")

    monkeypatch.setattr(runtime, "spark", refuse)


def test_a_missing_file_is_reported_without_starting_spark(tmp_path, no_spark):
    missing = tmp_path / "yellow_tripdata_2025-01.parquet"

    with pytest.raises(ConfigError, match="no raw Parquet file found at .*yellow_tripdata_2025-01"):
        MonthlyLoader().curate_month(missing)


def test_a_file_that_is_not_parquet_is_reported_without_starting_spark(tmp_path, no_spark):
    text = tmp_path / "yellow_tripdata_2025-01.parquet"
    text.write_text("trip_id,fare\n1,2.5\n")

    with pytest.raises(SchemaError, match="not a Parquet file"):
        MonthlyLoader().curate_month(text)


def test_a_file_name_without_a_month_is_reported_without_starting_spark(tmp_path, no_spark):
    unnamed = tmp_path / "trips.parquet"
    unnamed.write_bytes(b"PAR1" + b"\0" * 8 + b"PAR1")

    with pytest.raises(ConfigError, match="--month YYYY-MM"):
        MonthlyLoader().curate_month(unnamed)
