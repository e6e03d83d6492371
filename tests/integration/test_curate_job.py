"""The curate job end to end on real Spark and real Delta tables."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
from chispa import assert_df_equality

from chillflow.errors import ConfigError, DataQualityError, SchemaError
from chillflow.settings import CurateSettings, QualityRule
from chillflow.stages.curate import curate
from chillflow.storage.delta import read_table, table_version
from tests.integration.rawfiles import trip, write_yellow

JAN = datetime(2025, 1, 15, 8, 30)
LINEAGE = ["run_id", "curated_at"]


@pytest.fixture
def january(tmp_path):
    """Six clean rows and four dirty ones, each dirty in a known way."""
    rows = [trip(JAN.replace(hour=h)) for h in range(6)]
    rows += [
        trip(JAN, minutes=-3),  # dropoff before pickup: also no speed
        trip(JAN, miles=80, minutes=5),  # 1545 km/h
        trip(JAN, total=-12.0),  # refund
        trip(datetime(2024, 12, 31, 23, 59, 59), pu=0),  # stray month and unknown zone
    ]
    return write_yellow(tmp_path / "raw/yellow_tripdata_2025-01.parquet", rows)


def test_curates_splits_and_conserves_rows(spark, settings, january):
    stats = curate(spark, settings, january)

    assert stats["input_rows"] == 10
    assert (stats["output_rows"], stats["quarantined_rows"]) == (6, 4)
    assert stats["retention_rate"] == 60.0
    assert stats["rejections"] == {
        "pickup_before_dropoff": 1,
        "speed_plausible": 2,
        "total_amount_non_negative": 1,
        "zone_ids_known": 1,
        "pickup_in_file_month": 1,
    }
    quarantine = read_table(spark, settings.tables.quarantine)
    failed = {r["source_row"]: r["failed_rules"] for r in quarantine.collect()}
    assert failed == {
        6: ["pickup_before_dropoff", "speed_plausible"],
        7: ["speed_plausible"],
        8: ["total_amount_non_negative"],
        9: ["zone_ids_known", "pickup_in_file_month"],
    }
    curated = read_table(spark, settings.tables.curated)
    assert sorted(r["source_row"] for r in curated.collect()) == [0, 1, 2, 3, 4, 5]
    assert {(r["service"], r["month"], r["source_file"]) for r in curated.collect()} == {
        ("yellow", "2025-01", "yellow_tripdata_2025-01.parquet")
    }


def test_curated_values_of_one_row(spark, settings, january):
    curate(spark, settings, january)

    row = read_table(spark, settings.tables.curated).filter("source_row = 0").first()

    assert row["pickup_ts"] == datetime(2025, 1, 15, 0, 30)
    assert row["dropoff_ts"] == datetime(2025, 1, 15, 0, 40)
    assert row["distance_km"] == pytest.approx(3.21868)
    assert row["duration_min"] == pytest.approx(10.0)
    assert row["avg_speed_kmh"] == pytest.approx(19.31208)
    assert row["cbd_congestion_fee"] == 0.75
    assert row["dq_warnings"] == []


def test_metrics_table_has_one_row_per_rule_with_totals(spark, settings, january):
    stats = curate(spark, settings, january)

    metrics = read_table(spark, settings.tables.dq_metrics)

    rows = {r["rule"]: r for r in metrics.collect()}
    assert set(rows) == {rule.name for rule in settings.curate.rules}
    speed = rows["speed_plausible"]
    assert (speed["evaluated"], speed["failed"], speed["status"]) == (10, 2, "quarantined")
    assert rows["passenger_count_plausible"]["status"] == "passed"
    assert {(r["input_rows"], r["output_rows"], r["quarantined_rows"]) for r in rows.values()} == {
        (10, 6, 4)
    }
    assert {r["run_id"] for r in rows.values()} == {stats["run_id"]}


def test_rerun_replaces_only_its_month(spark, settings, january, tmp_path):
    february = write_yellow(
        tmp_path / "raw/yellow_tripdata_2025-02.parquet",
        [trip(datetime(2025, 2, 3, 9)), trip(datetime(2025, 2, 3, 10))],
    )
    curate(spark, settings, january)
    curate(spark, settings, february)
    before = read_table(spark, settings.tables.curated).drop(*LINEAGE)
    quarantine_before = read_table(spark, settings.tables.quarantine).drop(
        "run_id", "quarantined_at"
    )

    curate(spark, settings, january)

    after = read_table(spark, settings.tables.curated).drop(*LINEAGE)
    quarantine_after = read_table(spark, settings.tables.quarantine).drop(
        "run_id", "quarantined_at"
    )
    assert_df_equality(after, before, ignore_row_order=True)
    assert_df_equality(quarantine_after, quarantine_before, ignore_row_order=True)
    assert after.filter("month = '2025-02'").count() == 2
    metrics = read_table(spark, settings.tables.dq_metrics)
    assert metrics.select("run_id", "month").distinct().count() == 2


def test_warn_rule_keeps_rows_and_lists_warning(spark, settings, tmp_path):
    raw = write_yellow(
        tmp_path / "yellow_tripdata_2025-01.parquet", [trip(JAN), trip(JAN, passengers=42)]
    )

    stats = curate(spark, settings, raw)

    assert (stats["output_rows"], stats["warnings"]["passenger_count_plausible"]) == (2, 1)
    warnings = {
        r["source_row"]: r["dq_warnings"]
        for r in read_table(spark, settings.tables.curated).collect()
    }
    assert warnings == {0: [], 1: ["passenger_count_plausible"]}


def test_a_month_whose_every_row_is_rejected_is_not_replaced(spark, settings, january, tmp_path):
    # Zone 0 fails zone_ids_known, a rule without a failure-rate limit: alone it would
    # replace the curated month with no trips, while PostgreSQL keeps the last load's.
    curate(spark, settings, january)
    before = table_version(spark, settings.tables.curated)
    broken = [trip(datetime(2025, 1, day, 9), pu=0, do=0) for day in (3, 4, 5)]
    raw = write_yellow(tmp_path / "broken/yellow_tripdata_2025-01.parquet", broken)

    with pytest.raises(DataQualityError) as raised:
        curate(spark, settings, raw)

    assert str(raised.value) == (
        f"{raw} (yellow 2025-01): every row failed a rule, nothing written (the month would "
        "be replaced with no trips); rows failed: zone_ids_known 3"
    )
    assert table_version(spark, settings.tables.curated) == before
    assert read_table(spark, settings.tables.curated).count() == 6


def with_rules(settings, *rules):
    return dataclasses.replace(settings, curate=CurateSettings(rules=tuple(rules)))


def test_fail_action_stops_the_run_before_writing(spark, settings, january):
    strict = with_rules(
        settings,
        QualityRule("amount_non_negative", "total_amount >= 0", "fail"),
    )

    with pytest.raises(DataQualityError, match="amount_non_negative: 1 of 10 rows failed"):
        curate(spark, strict, january)

    assert not settings.tables.curated.exists()
    assert not settings.tables.quarantine.exists()


def test_failure_rate_threshold(spark, settings, january):
    tolerant = with_rules(
        settings, QualityRule("sane_speed", "avg_speed_kmh <= 200", "quarantine", 0.25)
    )
    strict = with_rules(
        settings, QualityRule("sane_speed", "avg_speed_kmh <= 200", "quarantine", 0.15)
    )

    assert curate(spark, tolerant, january)["quarantined_rows"] == 2
    with pytest.raises(
        DataQualityError,
        match=r"sane_speed: 2 of 10 rows failed \(20\.00%\), "
        r"limit 15\.00%",
    ):
        curate(spark, strict, january)


def test_invalid_rule_predicate_is_a_config_error(spark, settings, january):
    broken = with_rules(settings, QualityRule("typo", "totl_amount >= 0", "quarantine"))

    with pytest.raises(ConfigError, match="rule 'typo': predicate 'totl_amount >= 0'"):
        curate(spark, broken, january)


@pytest.mark.parametrize(
    ("predicate", "message"),
    [
        # Spark would cast the flag's 'N' to false and 'Y' to true, and 'yes' to true.
        ("store_and_fwd_flag", "is of type string, not boolean"),
        ("'yes'", "is of type string, not boolean"),
        ("count(*) > 0", "is not a valid Spark SQL expression .*MISSING_GROUP_BY"),
    ],
)
def test_a_predicate_that_is_no_row_condition_is_a_config_error(
    spark, settings, january, predicate, message
):
    broken = with_rules(settings, QualityRule("odd", predicate, "quarantine"))

    with pytest.raises(ConfigError, match=f"rule 'odd': predicate .*{message}"):
        curate(spark, broken, january)


def test_unsupported_layout_is_a_schema_error(spark, settings, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "yellow_tripdata_2015-01.parquet"
    pq.write_table(
        pa.table({"VendorID": [1], "tpep_pickup_datetime": [JAN], "pickup_longitude": [-73.9]}),
        path,
    )

    with pytest.raises(SchemaError, match=f"{path}: .*Found: VendorID, tpep_pickup_datetime"):
        curate(spark, settings, path)


def test_not_parquet_and_missing_month(spark, settings, tmp_path):
    text = tmp_path / "yellow_tripdata_2025-01.parquet"
    text.write_text("VendorID,tpep_pickup_datetime\n")
    unnamed = write_yellow(tmp_path / "trips.parquet", [trip(JAN)])

    with pytest.raises(SchemaError, match="not a Parquet file"):
        curate(spark, settings, text)
    with pytest.raises(ConfigError, match="pass --month YYYY-MM"):
        curate(spark, settings, unnamed)
    assert curate(spark, settings, unnamed, month="2025-01")["output_rows"] == 1


def test_a_failed_quarantine_write_fails_the_run_and_empties_the_new_slice(
    spark, settings, january
):
    """The quarantine write's failure is not swallowed; the curated slice it had is taken out."""
    blocked = settings.tables.quarantine
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a directory")

    with pytest.raises(Exception, match="DELTA_CANNOT_CREATE_LOG_PATH.*quarantine") as failure:
        curate(spark, settings, january)

    assert not isinstance(failure.value, DataQualityError)
    assert not settings.tables.dq_metrics.exists()
    assert read_table(spark, settings.tables.curated).count() == 0
    blocked.unlink()
    stats = curate(spark, settings, january)
    assert (stats["output_rows"], stats["quarantined_rows"]) == (6, 4)
    assert read_table(spark, settings.tables.curated).count() == 6
