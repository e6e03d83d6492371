"""Curated trips -> stg.complete_trip rows."""

from __future__ import annotations

from datetime import datetime

from chispa import assert_df_equality

from chillflow.schemas import COMPLETE_TRIP_DDL, CURATED_DDL
from chillflow.transforms.complete_trips import to_complete_trips, with_skip_reason

PICKUPS = "service STRING, month STRING, pickup_ts TIMESTAMP"


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
