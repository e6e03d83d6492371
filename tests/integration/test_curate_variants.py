"""Curate every TLC layout vintage, generated and real, through the real job."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import TimestampType

from chillflow.errors import SchemaError
from chillflow.generator import generate_month
from chillflow.schemas import CURATED_DDL, struct
from chillflow.settings import tlc_file_name
from chillflow.stages.curate import curate
from chillflow.storage.delta import read_table
from chillflow.storage.raw import RawFile, read_raw_file
from tests.integration.rawfiles import trip, write_yellow
from tests.layouts import write_layout


def assert_conserved_and_typed(spark, settings, stats):
    curated = read_table(spark, settings.tables.curated)
    quarantine = read_table(spark, settings.tables.quarantine)
    assert stats["input_rows"] == stats["output_rows"] + stats["quarantined_rows"]
    assert curated.count() == stats["output_rows"]
    assert quarantine.count() == stats["quarantined_rows"]
    expected = {f.name: f.dataType for f in struct(CURATED_DDL).fields}
    assert {f.name: f.dataType for f in curated.schema.fields} == expected
    return curated, quarantine


@pytest.mark.parametrize(
    ("service", "layout"),
    [
        ("yellow", None),
        ("yellow", "pandas_ns"),
        ("yellow", "legacy_2019"),
        ("yellow", "lowercase_airport"),
        ("green", None),
    ],
)
def test_every_supported_layout_curates_to_one_schema(spark, settings, tmp_path, service, layout):
    month = "2019-03" if layout == "legacy_2019" else "2025-01"
    path, kwargs = (
        tmp_path / tlc_file_name(service, month),
        {"month": month, "rows": 3000, "seed": 7},
    )
    if layout is None:
        raw = generate_month(path, service=service, **kwargs)
    else:
        raw = write_layout(path, layout, **kwargs)

    stats = curate(spark, settings, raw)

    curated, quarantine = assert_conserved_and_typed(spark, settings, stats)
    assert stats["input_rows"] == 3000
    assert 0 < stats["quarantined_rows"] < 300
    outside = curated.filter(F.date_format("pickup_ts", "yyyy-MM") != month).count()
    assert outside == 0
    assert curated.filter(F.col("pickup_ts").isNull() | F.col("pu_zone_id").isNull()).count() == 0
    assert quarantine.filter(F.size("failed_rules") == 0).count() == 0
    assert {r["service"] for r in curated.select("service").distinct().collect()} == {service}


def test_nanosecond_and_microsecond_files_give_identical_rows(spark, settings, tmp_path):
    kwargs = {"service": "yellow", "month": "2025-01", "rows": 500, "seed": 3}
    micros = generate_month(tmp_path / "us/yellow_tripdata_2025-01.parquet", **kwargs)
    nanos = write_layout(tmp_path / "ns/yellow_tripdata_2025-01.parquet", "pandas_ns", **kwargs)

    curate(spark, settings, micros)
    from_micros = read_table(spark, settings.tables.curated).select("source_row", "pickup_ts")
    from_micros = {r["source_row"]: r["pickup_ts"] for r in from_micros.collect()}
    curate(spark, settings, nanos)
    from_nanos = read_table(spark, settings.tables.curated).select("source_row", "pickup_ts")

    assert {r["source_row"]: r["pickup_ts"] for r in from_nanos.collect()} == from_micros


def test_wall_clock_timestamps_read_as_timestamps_in_a_utc_session(spark, tmp_path):
    pickup = datetime(2025, 1, 31, 23, 30)
    raw = write_yellow(tmp_path / "yellow_tripdata_2025-01.parquet", [trip(pickup)])

    rows, schema = read_raw_file(spark, RawFile(raw, "2025-01"))

    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert schema["tpep_pickup_datetime"].dataType == TimestampType()
    micros = rows.select(F.unix_micros("tpep_pickup_datetime")).first()[0]
    assert micros == int(pickup.replace(tzinfo=timezone.utc).timestamp()) * 1_000_000


@pytest.mark.parametrize(
    ("layout", "expected"),
    [("pre2016", "PULocationID, DOLocationID"), ("fhv", "tpep_/lpep_pickup_datetime")],
)
def test_unsupported_vintages_raise_schema_error(spark, settings, tmp_path, layout, expected):
    raw = write_layout(
        tmp_path / "yellow_tripdata_2015-01.parquet", layout, month="2015-01", rows=10
    )

    with pytest.raises(SchemaError, match=f"Expected column\\(s\\): {expected}\\. Found: "):
        curate(spark, settings, raw)
    assert not settings.tables.curated.exists()


def test_directory_of_months_and_services(spark, settings, tmp_path):
    landing = tmp_path / "landing"
    for service, month in [("yellow", "2025-01"), ("yellow", "2025-02"), ("green", "2025-01")]:
        generate_month(
            landing / tlc_file_name(service, month), service=service, month=month, rows=400
        )

    stats = curate(spark, settings, landing)

    assert_conserved_and_typed(spark, settings, stats)
    assert stats["input_rows"] == 1200
    slices = read_table(spark, settings.tables.curated).select("service", "month").distinct()
    assert sorted(tuple(r) for r in slices.collect()) == [
        ("green", "2025-01"),
        ("yellow", "2025-01"),
        ("yellow", "2025-02"),
    ]
    metrics = read_table(spark, settings.tables.dq_metrics)
    assert metrics.groupBy("service", "month").count().count() == 3


def test_real_green_month(spark, settings, tlc_dir):
    stats = curate(spark, settings, tlc_dir / "green_tripdata_2021-01.parquet")

    curated, quarantine = assert_conserved_and_typed(spark, settings, stats)
    assert stats["input_rows"] == 76_518
    assert stats["retention_rate"] > 95
    strays = quarantine.filter(F.array_contains("failed_rules", "pickup_in_file_month"))
    assert strays.filter(F.year("pickup_ts") == 2009).count() > 0
    assert curated.filter(F.col("ehail_fee").isNotNull()).count() == 0
    assert curated.agg(F.min("source_row"), F.max("source_row")).first()[0] >= 0


def test_real_yellow_head_with_nanosecond_timestamps(spark, settings, tlc_dir):
    stats = curate(
        spark, settings, tlc_dir / "yellow_tripdata_2025-01_head10k.parquet", month="2025-01"
    )

    curated, quarantine = assert_conserved_and_typed(spark, settings, stats)
    assert stats["input_rows"] == 10_000
    december = quarantine.filter(F.col("pickup_ts") < F.lit("2025-01-01").cast("timestamp"))
    assert december.count() == stats["rejections"]["pickup_in_file_month"] > 0
    first = curated.filter("source_row = 0").first()
    assert first is None or first["pickup_ts"].year == 2025
    assert curated.filter(F.col("cbd_congestion_fee").isNotNull()).count() > 0
    assert curated.filter(F.col("airport_fee").isNotNull()).count() > 0
