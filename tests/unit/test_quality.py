from datetime import datetime

import pytest
from chispa import assert_df_equality

from chillflow.settings import QualityRule
from chillflow.transforms.quality import (
    rejected_rows,
    rule_failure_counts,
    valid_rows,
    with_quality_flags,
)

pytestmark = pytest.mark.unit

DDL = "trip_id INT, pickup_ts TIMESTAMP, total_amount DOUBLE, passenger_count INT, month STRING"

RULES = (
    QualityRule("amount_non_negative", "total_amount >= 0", "quarantine"),
    QualityRule("pickup_in_month", "date_format(pickup_ts, 'yyyy-MM') = month", "quarantine"),
    QualityRule("passengers_plausible", "passenger_count BETWEEN 0 AND 9", "warn"),
)


@pytest.fixture
def trips(spark):
    return spark.createDataFrame(
        [
            (1, datetime(2025, 1, 1, 0, 0), 10.0, 1, "2025-01"),
            # last microsecond of the month: still inside
            (2, datetime(2025, 1, 31, 23, 59, 59, 999999), 0.0, 12, "2025-01"),
            # first instant of the next month, negative amount: fails two rules
            (3, datetime(2025, 2, 1, 0, 0), -5.0, 1, "2025-01"),
            # NULL predicates count as failed, never silently passed
            (4, None, None, None, "2025-01"),
        ],
        DDL,
    )


def test_flags_record_every_failed_rule(spark, trips):
    flagged = with_quality_flags(trips, RULES).select(
        "trip_id", "failed_rules", "dq_warnings", "_cf_rejected"
    )

    expected = spark.createDataFrame(
        [
            (1, [], [], False),
            (2, ["passengers_plausible"], ["passengers_plausible"], False),
            (3, ["amount_non_negative", "pickup_in_month"], [], True),
            (
                4,
                ["amount_non_negative", "pickup_in_month", "passengers_plausible"],
                ["passengers_plausible"],
                True,
            ),
        ],
        "trip_id INT, failed_rules ARRAY<STRING>, dq_warnings ARRAY<STRING>, _cf_rejected BOOLEAN",
    )
    assert_df_equality(flagged, expected, ignore_nullable=True)


def test_split_keeps_every_row_exactly_once(trips):
    flagged = with_quality_flags(trips, RULES)

    valid = sorted(r["trip_id"] for r in valid_rows(flagged).collect())
    rejected = sorted(r["trip_id"] for r in rejected_rows(flagged).collect())

    assert (valid, rejected) == ([1, 2], [3, 4])


def test_failure_counts_per_rule(trips):
    flagged = with_quality_flags(trips, RULES)

    counts = flagged.agg(*rule_failure_counts(RULES)).first().asDict()

    assert counts == {
        "fail__amount_non_negative": 2,
        "fail__pickup_in_month": 2,
        "fail__passengers_plausible": 2,
    }


def test_without_warn_rules_warnings_are_empty_arrays(spark, trips):
    flagged = with_quality_flags(trips, RULES[:1])

    assert [r["dq_warnings"] for r in flagged.orderBy("trip_id").collect()] == [[], [], [], []]
