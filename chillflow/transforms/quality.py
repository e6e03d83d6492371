"""Declarative data-quality rules: one non-null boolean column per rule, then the split."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from chillflow.settings import QualityRule

FAILED_RULES_COL = "failed_rules"
WARNINGS_COL = "dq_warnings"
REJECTED_COL = "_cf_rejected"


def rule_passes(rule: QualityRule) -> Column:
    """True where the row satisfies the rule; a NULL predicate counts as failed."""
    return F.coalesce(F.expr(rule.predicate), F.lit(False))


def passed_col(rule: QualityRule) -> str:
    """Name of the boolean column holding a rule's outcome."""
    return f"_cf_ok_{rule.name}"


def with_rule_results(trips: DataFrame, rules: tuple[QualityRule, ...]) -> DataFrame:
    """Evaluate all rules in one projection: one boolean per rule and a rejected flag.

    A row is rejected when a rule with action ``quarantine`` or ``fail`` fails.
    """
    results = trips.withColumns({passed_col(rule): rule_passes(rule) for rule in rules})
    rejected = F.lit(False)
    for rule in rules:
        if rule.action != "warn":
            rejected = rejected | ~F.col(passed_col(rule))
    return results.withColumn(REJECTED_COL, rejected)


def valid_rows(flagged: DataFrame, rules: tuple[QualityRule, ...]) -> DataFrame:
    """Rows that passed every rejecting rule, with ``dq_warnings`` (failed warn rules)."""
    warn_rules = tuple(rule for rule in rules if rule.action == "warn")
    return _drop_results(
        flagged.filter(~F.col(REJECTED_COL)).withColumn(WARNINGS_COL, _failed_names(warn_rules)),
        rules,
    )


def rejected_rows(flagged: DataFrame, rules: tuple[QualityRule, ...]) -> DataFrame:
    """Rows that failed a rejecting rule, with ``failed_rules`` (every rule they failed)."""
    return _drop_results(
        flagged.filter(F.col(REJECTED_COL)).withColumn(FAILED_RULES_COL, _failed_names(rules)),
        rules,
    )


def rule_failure_counts(rules: tuple[QualityRule, ...]) -> list[Column]:
    """One ``fail__<rule>`` count of failures per rule, for ``df.agg`` or ``df.observe``."""
    return [
        F.count(F.when(~F.col(passed_col(rule)), F.lit(1))).alias(f"fail__{rule.name}")
        for rule in rules
    ]


def _failed_names(rules: tuple[QualityRule, ...]) -> Column:
    if not rules:
        return F.array().cast("array<string>")
    names = [F.when(~F.col(passed_col(rule)), F.lit(rule.name)) for rule in rules]
    return F.array_compact(F.array(*names))


def _drop_results(rows: DataFrame, rules: tuple[QualityRule, ...]) -> DataFrame:
    return rows.drop(REJECTED_COL, *[passed_col(rule) for rule in rules])
