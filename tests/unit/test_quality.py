from datetime import datetime

import pytest
from chispa import assert_df_equality

from chillflow.settings import QualityRule
from chillflow.transforms.quality import (
    rejected_rows,
    rule_failure_counts,
    valid_rows,
    with_rule_results,
)

DDL = "trip_id INT, pickup_ts TIMESTAMP, total_amount DOUBLE, passenger_count INT, month STRING"

RULES = (
    QualityRule("amount_non_negative", "total_amount >= 0", "quarantine"),
    QualityRule(
        "pickup_in_month",
        "pickup_ts >= to_timestamp(month || '-01') "
        "AND pickup_ts < add_months(to_timestamp(month || '-01'), 1)",
        "quarantine",
    ),
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


def test_valid_rows_carry_their_warnings(spark, trips):
    valid = valid_rows(with_rule_results(trips, RULES), RULES)

    expected = spark.createDataFrame(
        [
            (1, datetime(2025, 1, 1, 0, 0), 10.0, 1, "2025-01", []),
            (
                2,
                datetime(2025, 1, 31, 23, 59, 59, 999999),
                0.0,
                12,
                "2025-01",
                ["passengers_plausible"],
            ),
        ],
        f"{DDL}, dq_warnings ARRAY<STRING>",
    )
    assert_df_equality(valid, expected, ignore_nullable=True)


def test_rejected_rows_list_every_failed_rule(spark, trips):
    rejected = rejected_rows(with_rule_results(trips, RULES), RULES)

    expected = spark.createDataFrame(
        [
            (
                3,
                datetime(2025, 2, 1, 0, 0),
                -5.0,
                1,
                "2025-01",
                ["amount_non_negative", "pickup_in_month"],
            ),
            (
                4,
                None,
                None,
                None,
                "2025-01",
                ["amount_non_negative", "pickup_in_month", "passengers_plausible"],
            ),
        ],
        f"{DDL}, failed_rules ARRAY<STRING>",
    )
    assert_df_equality(rejected, expected, ignore_nullable=True)


def test_failure_counts_per_rule(trips):
    flagged = with_rule_results(trips, RULES)

    counts = flagged.agg(*rule_failure_counts(RULES)).first().asDict()

    assert counts == {
        "fail__amount_non_negative": 2,
        "fail__pickup_in_month": 2,
        "fail__passengers_plausible": 2,
    }


def test_without_warn_rules_warnings_are_empty_arrays(trips):
    rules = RULES[:1]

    valid = valid_rows(with_rule_results(trips, rules), rules)

    assert [r["dq_warnings"] for r in valid.orderBy("trip_id").collect()] == [[], []]


def test_fail_action_rejects_like_quarantine(trips):
    rules = (QualityRule("amount_non_negative", "total_amount >= 0", "fail"),)

    rejected = rejected_rows(with_rule_results(trips, rules), rules)

    assert sorted(r["trip_id"] for r in rejected.collect()) == [3, 4]
