"""Turn per-rule failure counts into outcomes and decide whether the run may proceed."""

from __future__ import annotations

from dataclasses import dataclass

from chillflow.errors import DataQualityError
from chillflow.settings import QualityRule


@dataclass(frozen=True)
class RuleOutcome:
    """How one rule fared in one run."""

    rule: QualityRule
    evaluated: int
    failed: int

    @property
    def failure_rate(self) -> float:
        """Failed rows as a fraction of evaluated rows (0 for an empty input)."""
        return self.failed / self.evaluated if self.evaluated else 0.0

    @property
    def status(self) -> str:
        """``passed``, ``warned``, ``quarantined`` or ``failed`` (the run must stop)."""
        limit = self.rule.max_failure_rate
        if limit is not None and self.failure_rate > limit:
            return "failed"
        if self.failed == 0:
            return "passed"
        if self.rule.action == "fail" and limit is None:
            return "failed"
        return "warned" if self.rule.action == "warn" else "quarantined"


def assess_rules(
    rules: tuple[QualityRule, ...], failures: dict[str, int], evaluated: int
) -> list[RuleOutcome]:
    """Build one outcome per rule from the failure counts of a run."""
    return [RuleOutcome(rule, evaluated, int(failures.get(rule.name) or 0)) for rule in rules]


def raise_on_failed_rules(
    outcomes: list[RuleOutcome], source: str, kept_rows: int | None = None
) -> None:
    """Stop the run if any rule failed it, or if it would keep none of its rows.

    Raises:
        DataQualityError: Naming each failing rule, its failed rows and rate, and its limit,
            or, when no row would be kept, the rules that rejected them.
    """
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed and kept_rows == 0:
        rejected = (f"{o.rule.name} {o.failed}" for o in outcomes if o.status == "quarantined")
        raise DataQualityError(
            f"{source}: every row failed a rule, nothing written (the month would be replaced "
            f"with no trips); rows failed: {', '.join(rejected)}"
        )
    if not failed:
        return
    details = "; ".join(
        f"{o.rule.name}: {o.failed} of {o.evaluated} rows failed ({o.failure_rate:.2%}), "
        + (
            f"limit {o.rule.max_failure_rate:.2%}"
            if o.rule.max_failure_rate is not None
            else "action fail allows none"
        )
        for o in failed
    )
    raise DataQualityError(
        f"{source}: data-quality rules failed the run, nothing written: {details}"
    )
