import pytest

from chillflow.errors import DataQualityError
from chillflow.settings import QualityRule
from chillflow.stages.rule_outcomes import assess_rules, raise_on_failed_rules


def rule(action, max_rate=None):
    return QualityRule("r", "x > 0", action, max_rate)


@pytest.mark.parametrize(
    ("action", "max_rate", "failed", "status"),
    [
        ("quarantine", None, 0, "passed"),
        ("quarantine", None, 5, "quarantined"),
        ("warn", None, 5, "warned"),
        ("fail", None, 0, "passed"),
        ("fail", None, 1, "failed"),
        ("fail", 0.1, 10, "quarantined"),
        ("fail", 0.1, 11, "failed"),
        ("quarantine", 0.1, 10, "quarantined"),
        ("quarantine", 0.1, 11, "failed"),
        ("warn", 0.0, 1, "failed"),
    ],
)
def test_status(action, max_rate, failed, status):
    [outcome] = assess_rules((rule(action, max_rate),), {"r": failed}, 100)

    assert outcome.status == status


def test_empty_input_passes():
    [outcome] = assess_rules((rule("fail", 0.0),), {"r": None}, 0)

    assert (outcome.failure_rate, outcome.status) == (0.0, "passed")


def test_failed_run_message_names_rule_counts_and_limit():
    outcomes = assess_rules(
        (QualityRule("zones", "z > 0", "quarantine", 0.2), QualityRule("ok", "1 = 1", "fail")),
        {"zones": 30, "ok": 0},
        100,
    )

    with pytest.raises(
        DataQualityError,
        match=r"f\.parquet: .*zones: 30 of 100 rows failed "
        r"\(30\.00%\), limit 20\.00%$",
    ):
        raise_on_failed_rules(outcomes, "f.parquet")


def test_a_run_that_would_keep_no_row_fails_naming_the_rejecting_rules():
    rules = (
        QualityRule("zones", "z > 0", "quarantine"),
        QualityRule("speed", "s < 9", "quarantine", 0.9),
        QualityRule("note", "n > 0", "warn"),
    )
    outcomes = assess_rules(rules, {"zones": 6, "speed": 2, "note": 6}, 6)
    raise_on_failed_rules(outcomes, "f.parquet", kept_rows=1)

    with pytest.raises(DataQualityError) as raised:
        raise_on_failed_rules(outcomes, "f.parquet", kept_rows=0)

    assert str(raised.value) == (
        "f.parquet: every row failed a rule, nothing written (the month would be replaced with "
        "no trips); rows failed: zones 6, speed 2"
    )
