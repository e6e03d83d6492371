from datetime import datetime

import pytest
from chispa import assert_approx_df_equality

from chillflow.transforms.derived import ClockChange, clock_changes, with_derived_fields

DDL = "pickup_ts TIMESTAMP, dropoff_ts TIMESTAMP, trip_distance DOUBLE"
DERIVED = f"{DDL}, distance_km DOUBLE, duration_min DOUBLE, avg_speed_kmh DOUBLE"
NEW_YORK = "America/New_York"


def test_distance_duration_and_speed(spark):
    trips = spark.createDataFrame(
        [
            (datetime(2025, 1, 1, 10, 0), datetime(2025, 1, 1, 10, 30), 10.0),
            # crosses midnight and the month boundary
            (datetime(2025, 1, 31, 23, 50), datetime(2025, 2, 1, 0, 5, 30), 3.0),
            # zero duration: speed unknown, not a division-by-zero error
            (datetime(2025, 1, 1, 10, 0), datetime(2025, 1, 1, 10, 0), 1.0),
            # negative duration
            (datetime(2025, 1, 1, 10, 0), datetime(2025, 1, 1, 9, 0), 1.0),
            (None, datetime(2025, 1, 1, 9, 0), None),
        ],
        DDL,
    )

    derived = with_derived_fields(trips, NEW_YORK, ["2025-01"])

    expected = spark.createDataFrame(
        [
            (
                datetime(2025, 1, 1, 10, 0),
                datetime(2025, 1, 1, 10, 30),
                10.0,
                16.0934,
                30.0,
                32.1868,
            ),
            (
                datetime(2025, 1, 31, 23, 50),
                datetime(2025, 2, 1, 0, 5, 30),
                3.0,
                4.82802,
                15.5,
                18.689109677419356,
            ),
            (datetime(2025, 1, 1, 10, 0), datetime(2025, 1, 1, 10, 0), 1.0, 1.60934, 0.0, None),
            (datetime(2025, 1, 1, 10, 0), datetime(2025, 1, 1, 9, 0), 1.0, 1.60934, -60.0, None),
            (None, datetime(2025, 1, 1, 9, 0), None, None, None, None),
        ],
        DERIVED,
    )
    assert_approx_df_equality(derived, expected, 1e-9, ignore_nullable=True)


def test_fractional_seconds_count_in_duration(spark):
    trips = spark.createDataFrame(
        [(datetime(2025, 1, 1, 0, 0, 0, 500000), datetime(2025, 1, 1, 0, 1, 0), 0.5)], DDL
    )

    assert with_derived_fields(trips, NEW_YORK, ["2025-01"]).first()[
        "duration_min"
    ] == pytest.approx(59.5 / 60)


def test_derived_types_are_double(spark):
    trips = spark.createDataFrame([], DDL)

    types = dict(with_derived_fields(trips, NEW_YORK, ["2025-01"]).dtypes)

    assert [types[c] for c in ("distance_km", "duration_min", "avg_speed_kmh")] == ["double"] * 3


def test_durations_are_real_elapsed_time_across_new_york_clock_changes(spark):
    trips = spark.createDataFrame(
        [
            # Fall-back: 01:50 EDT, then 01:10 EST (the repeated hour): 20 minutes, not -40.
            (datetime(2025, 11, 2, 1, 50), datetime(2025, 11, 2, 1, 10), 5.0),
            # Both in the repeated hour and in order: the same offset, 30 minutes.
            (datetime(2025, 11, 2, 1, 10), datetime(2025, 11, 2, 1, 40), 5.0),
            # Across the whole fall-back: 00:30 EDT to 02:30 EST is 3 hours.
            (datetime(2025, 11, 2, 0, 30), datetime(2025, 11, 2, 2, 30), 30.0),
            # Spring forward: 01:50 EST to 03:10 EDT is 20 minutes, not 80.
            (datetime(2025, 3, 9, 1, 50), datetime(2025, 3, 9, 3, 10), 5.0),
            # The same times on an ordinary day.
            (datetime(2025, 3, 8, 1, 50), datetime(2025, 3, 8, 3, 10), 5.0),
            # A trip ending where the repeated hour begins, and one starting where it ends.
            (datetime(2025, 11, 2, 0, 40), datetime(2025, 11, 2, 1, 0), 1.0),
            (datetime(2025, 11, 2, 2, 0), datetime(2025, 11, 2, 2, 30), 1.0),
            (None, datetime(2025, 11, 2, 1, 10), 1.0),
        ],
        DDL,
    )

    derived = with_derived_fields(trips, NEW_YORK, ["2025-03", "2025-11"])

    expected = spark.createDataFrame(
        [
            (
                datetime(2025, 11, 2, 1, 50),
                datetime(2025, 11, 2, 1, 10),
                5.0,
                8.0467,
                20.0,
                24.1401,
            ),
            (
                datetime(2025, 11, 2, 1, 10),
                datetime(2025, 11, 2, 1, 40),
                5.0,
                8.0467,
                30.0,
                16.0934,
            ),
            (
                datetime(2025, 11, 2, 0, 30),
                datetime(2025, 11, 2, 2, 30),
                30.0,
                48.2802,
                180.0,
                16.0934,
            ),
            (datetime(2025, 3, 9, 1, 50), datetime(2025, 3, 9, 3, 10), 5.0, 8.0467, 20.0, 24.1401),
            (datetime(2025, 3, 8, 1, 50), datetime(2025, 3, 8, 3, 10), 5.0, 8.0467, 80.0, 6.035025),
            (
                datetime(2025, 11, 2, 0, 40),
                datetime(2025, 11, 2, 1, 0),
                1.0,
                1.60934,
                20.0,
                4.82802,
            ),
            (
                datetime(2025, 11, 2, 2, 0),
                datetime(2025, 11, 2, 2, 30),
                1.0,
                1.60934,
                30.0,
                3.21868,
            ),
            (None, datetime(2025, 11, 2, 1, 10), 1.0, 1.60934, None, None),
        ],
        DERIVED,
    )
    assert_approx_df_equality(derived, expected, 1e-9, ignore_nullable=True)


def test_clock_changes_of_a_month_and_the_day_around_it():
    hour = 3_600_000_000
    fall_back_2026 = 1_793_494_800_000_000  # 2026-11-01 01:00 as if UTC

    assert clock_changes(NEW_YORK, ["2025-01"]) == []
    assert clock_changes("UTC", ["2025-03", "2025-11"]) == []
    # 2026-11-01 is the first day of November: the October file's last trips may reach it.
    assert clock_changes(NEW_YORK, ["2026-10"]) == [
        ClockChange(fall_back_2026, fall_back_2026 + hour, hour)
    ]
