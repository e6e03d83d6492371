from datetime import datetime

import pytest
from chispa import assert_approx_df_equality

from chillflow.transforms.derived import with_derived_fields

pytestmark = pytest.mark.unit

DDL = "pickup_ts TIMESTAMP, dropoff_ts TIMESTAMP, trip_distance DOUBLE"


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

    derived = with_derived_fields(trips)

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
        f"{DDL}, distance_km DOUBLE, duration_min DOUBLE, avg_speed_kmh DOUBLE",
    )
    assert_approx_df_equality(derived, expected, 1e-9, ignore_nullable=True)


def test_fractional_seconds_count_in_duration(spark):
    trips = spark.createDataFrame(
        [(datetime(2025, 1, 1, 0, 0, 0, 500000), datetime(2025, 1, 1, 0, 1, 0), 0.5)], DDL
    )

    assert with_derived_fields(trips).first()["duration_min"] == pytest.approx(59.5 / 60)


def test_derived_types_are_double(spark):
    trips = spark.createDataFrame([], DDL)

    types = dict(with_derived_fields(trips).dtypes)

    assert [types[c] for c in ("distance_km", "duration_min", "avg_speed_kmh")] == ["double"] * 3
