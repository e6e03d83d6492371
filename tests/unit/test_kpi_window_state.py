from datetime import datetime

import pytest
from chispa import assert_df_equality

from chillflow.schemas import HOURLY_KPIS_DDL, struct
from chillflow.storage.kpi_store import rows_after, window_state

H8 = datetime(2025, 1, 15, 8)
H9 = datetime(2025, 1, 15, 9)
EARLIER = datetime(2025, 1, 16, 1)
NOW = datetime(2025, 1, 17, 1)


def kpi(zone, hour, trips, fare, computed_at, outlier_rate=None):
    return (zone, hour, trips, fare, 1.0, 20.0, 3.0, 9.0, 50.0, trips, fare * trips,
            outlier_rate, computed_at)  # fmt: skip


@pytest.fixture
def state(spark):
    current = spark.createDataFrame(
        [
            kpi(1, H8, 4, 10.0, EARLIER),  # unchanged
            kpi(2, H8, 4, 10.0, EARLIER),  # a value changes
            kpi(3, H8, 1, 12.0, EARLIER),  # lost all its trips
            kpi(4, H9, 2, 11.0, EARLIER, outlier_rate=None),  # null -> value counts as a change
        ],
        struct(HOURLY_KPIS_DDL),
    )
    fresh = spark.createDataFrame(
        [
            kpi(1, H8, 4, 10.0, NOW),
            kpi(2, H8, 5, 10.0, NOW),
            kpi(4, H9, 2, 11.0, NOW, outlier_rate=50.0),
            kpi(5, H9, 1, 9.0, NOW),  # new group
        ],
        struct(HOURLY_KPIS_DDL),
    )
    return window_state(fresh, current)


def test_window_state_flags_every_group_once(spark, state):
    flags = state.select("zone_id", "_new", "_deleted", "_changed")
    expected = spark.createDataFrame(
        [
            (1, False, False, False),
            (2, False, False, True),
            (3, False, True, False),
            (4, False, False, True),
            (5, True, False, False),
        ],
        "zone_id INT, _new BOOLEAN, _deleted BOOLEAN, _changed BOOLEAN",
    )
    assert_df_equality(flags, expected, ignore_nullable=True, ignore_row_order=True)


def test_rows_after_keep_computed_at_of_unchanged_groups_and_drop_deleted_ones(spark, state):
    expected = spark.createDataFrame(
        [
            kpi(1, H8, 4, 10.0, EARLIER),
            kpi(2, H8, 5, 10.0, NOW),
            kpi(4, H9, 2, 11.0, NOW, outlier_rate=50.0),
            kpi(5, H9, 1, 9.0, NOW),
        ],
        struct(HOURLY_KPIS_DDL),
    )
    assert_df_equality(rows_after(state), expected, ignore_nullable=True, ignore_row_order=True)
