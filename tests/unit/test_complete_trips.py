"""Curated trips -> stg.complete_trip rows, load settings, staging names and progress lines."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime
from pathlib import Path

import pytest
import structlog
from chispa import assert_df_equality

from chillflow.cli.db import SHARED_ZONE_LOOKUP, zone_lookup_path
from chillflow.database_url import parse_database_url
from chillflow.errors import ConfigError
from chillflow.logs import configure_logging
from chillflow.progress import spark_progress
from chillflow.schemas import COMPLETE_TRIP_DDL, CURATED_DDL
from chillflow.sections import TripLoadSettings
from chillflow.storage.jdbc import jdbc_write_options
from chillflow.storage.trips_pg import COMPARED_COLUMNS, LOAD_COLUMNS, staging_table
from chillflow.transforms.complete_trips import to_complete_trips, with_skip_reason

PICKUPS = "service STRING, month STRING, pickup_ts TIMESTAMP"


@contextlib.contextmanager
def info_logging():
    """JSON log lines at INFO to the current sys.stderr (capfd's inside a test), then as before.

    Configured inside the test body: pytest swaps sys.stderr between fixture setup and the call.
    """
    saved = structlog.get_config()
    configure_logging("INFO", json=True)
    try:
        yield
    finally:
        structlog.configure(**saved)


def test_skip_reason_marks_missing_and_out_of_month_pickups(spark):
    trips = spark.createDataFrame(
        [
            ("yellow", "2025-01", datetime(2025, 1, 15, 8, 30)),
            ("yellow", "2025-01", datetime(2025, 1, 1)),  # first instant of the month
            ("yellow", "2025-01", datetime(2025, 1, 31, 23, 59, 59, 999999)),  # last one
            ("yellow", "2025-01", datetime(2025, 2, 1)),
            ("green", "2025-01", datetime(2024, 12, 31, 23, 59, 59, 999999)),
            ("yellow", "2025-01", None),
        ],
        PICKUPS,
    )

    marked = with_skip_reason(trips)

    expected = spark.createDataFrame(
        [
            ("yellow", "2025-01", datetime(2025, 1, 15, 8, 30), None),
            ("yellow", "2025-01", datetime(2025, 1, 1), None),
            ("yellow", "2025-01", datetime(2025, 1, 31, 23, 59, 59, 999999), None),
            ("yellow", "2025-01", datetime(2025, 2, 1), "pickup_outside_month"),
            (
                "green",
                "2025-01",
                datetime(2024, 12, 31, 23, 59, 59, 999999),
                "pickup_outside_month",
            ),
            ("yellow", "2025-01", None, "pickup_ts_missing"),
        ],
        f"{PICKUPS}, skip_reason STRING",
    )
    assert_df_equality(marked, expected, ignore_nullable=True)


CURATED_ROW = (
    "yellow", 2, datetime(2025, 1, 20, 12, 0, 0, 123456), datetime(2025, 1, 20, 12, 10),
    1, 2.0, 1, "N", 161, 236, 1, 15.0, 1.0, 0.5, 2.0, 0.0, 1.0, 20.0, 2.5, 0.0, 0.75, None,
    None, "2025-01", "yellow_tripdata_2025-01.parquet", 4,
    3.218688, 9.998, 19.3, [], "abc123def456", datetime(2025, 2, 1),
)  # fmt: skip
NULL_ROW = (
    "green", None, datetime(2025, 1, 1), None, *([None] * 19), "2025-01", None, 7,
    None, None, None, None, "abc123def456", datetime(2025, 2, 1),
)  # fmt: skip


def test_complete_trips_select_rename_and_cast(spark):
    curated = spark.createDataFrame(
        [(*CURATED_ROW, "k1", "veh_1"), (*NULL_ROW, "k2", "veh_2")],
        f"{CURATED_DDL}, trip_key STRING, vehicle_id_h STRING",
    )

    rows = to_complete_trips(curated)

    expected = spark.createDataFrame(
        [
            (
                "k1", "veh_1", "yellow", 2, datetime(2025, 1, 20, 12, 0, 0, 123456),
                datetime(2025, 1, 20, 12, 10), "2025-01", 1, 161, 236, 1, 1, 2.0, 3.218688,
                9.998, 19.3, 15.0, 2.0, 0.0, 20.0, 2.5, 0.0, "yellow_tripdata_2025-01.parquet",
                4, "abc123def456",
            ),
            (
                "k2", "veh_2", "green", None, datetime(2025, 1, 1), None, "2025-01",
                *([None] * 15), None, 7, "abc123def456",
            ),
        ],
        COMPLETE_TRIP_DDL,
    )  # fmt: skip
    assert_df_equality(rows, expected, ignore_nullable=True)


def test_load_columns_follow_the_ddl_and_compare_all_but_key_and_lineage():
    assert LOAD_COLUMNS[:3] == ("trip_key", "vehicle_id_h", "service")
    assert LOAD_COLUMNS[-1] == "curated_run_id"
    assert set(LOAD_COLUMNS) - set(COMPARED_COLUMNS) == {"trip_key", "curated_run_id"}


def test_trip_load_settings_defaults_and_validation():
    assert TripLoadSettings.from_section({}) == TripLoadSettings()
    loaded = TripLoadSettings.from_section({"jdbc_partitions": 2})
    assert loaded.jdbc_partitions == 2

    with pytest.raises(ConfigError, match=r"\[trips\]: unknown keys \['writers'\]"):
        TripLoadSettings.from_section({"writers": "copy"})
    with pytest.raises(ConfigError, match=r"\[trips\]: unknown keys \['writer'\]"):
        TripLoadSettings.from_section({"writer": "copy"})
    with pytest.raises(ConfigError, match="jdbc_partitions=0: expected a positive integer"):
        TripLoadSettings.from_section({"jdbc_partitions": 0})
    with pytest.raises(ConfigError, match="work_mem='256 MB; DROP'"):
        TripLoadSettings.from_section({"work_mem": "256 MB; DROP"})


def test_staging_table_names_are_safe_and_dated():
    assert staging_table("abc123", datetime(2025, 1, 2, 3, 4, 5)) == (
        "stg",
        "load_20250102t030405_abc123",
    )
    with pytest.raises(ConfigError, match="run id 'x; DROP TABLE'"):
        staging_table("x; DROP TABLE", datetime(2025, 1, 1))


def test_jdbc_options_carry_credentials_only_as_properties():
    target = parse_database_url("postgresql://u:s3cret@db.example:5433/trips?sslmode=require")

    options = jdbc_write_options(
        target, "stg.load_x", partitions=3, batch_size=500, rewrite_batched_inserts=True
    )

    assert options["url"] == "jdbc:postgresql://db.example:5433/trips"
    assert (options["user"], options["password"], options["sslmode"]) == ("u", "s3cret", "require")
    assert (options["numPartitions"], options["batchsize"]) == ("3", "500")
    assert options["reWriteBatchedInserts"] == "true"
    assert "s3cret" not in options["url"]


def test_zone_lookup_prefers_option_then_setting_then_shared_copy(tmp_path):
    given, configured = tmp_path / "given.csv", tmp_path / "configured.csv"

    assert zone_lookup_path(given, configured) == given
    assert zone_lookup_path(None, configured) == configured
    fallback = zone_lookup_path(None, None)
    assert fallback == (SHARED_ZONE_LOOKUP if SHARED_ZONE_LOOKUP.is_file() else None)


def test_zone_lookup_is_none_without_any_file(monkeypatch):
    monkeypatch.setattr("chillflow.cli.db.SHARED_ZONE_LOOKUP", Path("/nonexistent/zones.csv"))

    assert zone_lookup_path(None, None) is None


def test_progress_lines_carry_rows_done_and_rate(spark, capfd):
    with (
        info_logging(),
        spark_progress(spark, "unit", every_sec=0.05, expected_rows=10, rows_done=lambda: 4),
    ):
        time.sleep(0.3)

    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    progress = [x for x in lines if x["event"] == "unit.progress"]
    assert progress
    assert progress[0]["rows_done"] == 4 and progress[0]["expected_rows"] == 10
    assert progress[0]["rows_per_sec"] > 0
