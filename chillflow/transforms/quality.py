"""Declarative data-quality rules: flag every row with the rules it fails, then split."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from chillflow.settings import QualityRule

FAILED_RULES_COL = "failed_rules"
WARNINGS_COL = "dq_warnings"
REJECTED_COL = "_cf_rejected"


def rule_passes(rule: QualityRule) -> Column:
    """Return a non-null boolean column: True where the row satisfies the rule.

    A predicate that evaluates to NULL counts as failed, so no row vanishes from both sides.
    """
    return F.coalesce(F.expr(rule.predicate), F.lit(False))


def with_quality_flags(trips: DataFrame, rules: tuple[QualityRule, ...]) -> DataFrame:
    """Evaluate all rules in one projection and record the outcome on each row.

    Adds ``failed_rules`` (every failed rule, in rule order), ``dq_warnings`` (failed rules
    with action ``warn``) and a boolean ``_cf_rejected`` (a ``quarantine`` or ``fail`` rule
    failed).

    Args:
        trips: Trips with derived fields.
        rules: The configured rules.

    Returns:
        The trips with the three flag columns appended.
    """
    failures = [F.when(~rule_passes(rule), F.lit(rule.name)) for rule in rules]
    warn_names = [rule.name for rule in rules if rule.action == "warn"]
    rejecting_names = [rule.name for rule in rules if rule.action != "warn"]
    failed = F.col(FAILED_RULES_COL)
    return trips.withColumn(FAILED_RULES_COL, F.array_compact(F.array(*failures))).withColumns(
        {
            WARNINGS_COL: F.array_intersect(failed, _names(warn_names)),
            REJECTED_COL: F.arrays_overlap(failed, _names(rejecting_names)),
        }
    )


def valid_rows(flagged: DataFrame) -> DataFrame:
    """Rows that passed every rejecting rule (warnings allowed)."""
    return flagged.filter(~F.col(REJECTED_COL))


def rejected_rows(flagged: DataFrame) -> DataFrame:
    """Rows that failed at least one rejecting rule."""
    return flagged.filter(F.col(REJECTED_COL))


def rule_failure_counts(rules: tuple[QualityRule, ...]) -> list[Column]:
    """Aggregate expressions counting each rule's failures on flagged rows.

    Returns:
        One ``fail__<rule>`` column per rule, for ``df.observe`` or ``df.agg``.
    """
    return [
        F.sum(F.array_contains(FAILED_RULES_COL, rule.name).cast("long")).alias(
            f"fail__{rule.name}"
        )
        for rule in rules
    ]


def _names(names: list[str]) -> Column:
    return F.array(*[F.lit(name) for name in names]).cast("array<string>")
