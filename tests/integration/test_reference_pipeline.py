"""The DuckDB + COPY reference (bench/reference_pipeline.py) stays faithful to ChillFlow's stages.

Both run on the same generated month into one database; every curated and quarantined row
(with the rules it failed), every loaded trip and every KPI row must be equal. The comparison
itself must name what differs, and the rules must translate or fail loudly.
"""

from __future__ import annotations

import dataclasses
import sys
from calendar import monthrange
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chillflow.api.aggregate import BatchAggregator
from chillflow.api.curate import MonthlyLoader
from chillflow.api.trips import BatchTripProducer
from chillflow.generator import generate_month
from chillflow.settings import tlc_file_name
from chillflow.storage.postgres import connect, init_schema
from chillflow.storage.raw import RawFile, read_raw_file
from chillflow.transforms.derived import with_derived_fields
from chillflow.transforms.staging import plan_layout, stage_trips
from tests.conftest import REPO_ROOT, create_database, drop_database
from tests.layouts import write_layout

sys.path.insert(0, str(REPO_ROOT / "bench"))
import reference_pipeline as ref  # noqa: E402

SCHEMA = "reference_test"


@pytest.fixture(scope="module")
def module_db(database_url):
    """A database of this module's own: no other test's trips in stg.complete_trip."""
    url = create_database(database_url, "chillflow_reference")
    with connect(url) as conn:
        init_schema(conn)
    yield url
    drop_database(database_url, url.dbname)


def _query(url, statement, params=()):
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        rows = cur.fetchall() if cur.description else None
        conn.commit()
    return rows


def _run_both(spark, settings, raw, out):
    """ChillFlow's three stages through the Python API, then the reference, on one raw file."""
    month = ref.month_of(raw)
    service = raw.name.split("_")[0]
    first = date.fromisoformat(f"{month}-01")
    last = first.replace(day=monthrange(first.year, first.month)[1])
    MonthlyLoader(settings, spark).curate_month(raw)
    BatchTripProducer(settings, spark, settings.database_url).process_month(
        month=month, service=service
    )
    BatchAggregator(settings, spark, settings.database_url).aggregate_backfill(first, last)
    return ref.run_month(raw, out, settings.database_url.url(), settings.hash_salt, schema=SCHEMA)


def _differences(settings, stats, out):
    tables = settings.tables
    return ref.differences(
        settings.database_url.url(), SCHEMA, stats, tables.curated, tables.quarantine, out
    )


def _break_one_of_each(url, month, out):
    """Change a trip value beyond 1e-9, another within it, a failed-rule list; drop a KPI row."""
    (key, fare), (other, _) = _query(
        url,
        f"SELECT trip_key, fare_amount FROM {SCHEMA}.complete_trip "
        "WHERE pickup_month = %s AND fare_amount IS NOT NULL AND tip_amount IS NOT NULL "
        "ORDER BY trip_key LIMIT 2",
        (month,),
    )
    _query(
        url,
        f"UPDATE {SCHEMA}.complete_trip SET fare_amount = fare_amount + 1e-6 WHERE trip_key = %s",
        (key,),
    )
    _query(
        url,
        f"UPDATE {SCHEMA}.complete_trip SET tip_amount = tip_amount + 1e-12 WHERE trip_key = %s",
        (other,),
    )
    _query(
        url,
        f"DELETE FROM {SCHEMA}.zone_hourly_kpis WHERE (zone_id, hour_ts) = "
        f"(SELECT zone_id, hour_ts FROM {SCHEMA}.zone_hourly_kpis "
        "WHERE to_char(hour_ts, 'YYYY-MM') = %s ORDER BY 1, 2 LIMIT 1)",
        (month,),
    )
    quarantine = out / "quarantine.parquet"
    changed = duckdb.sql(
        f"SELECT * REPLACE (CASE WHEN source_row = (SELECT min(source_row) FROM '{quarantine}') "
        f"THEN ['made_up'] ELSE failed_rules END AS failed_rules) FROM '{quarantine}'"
    )
    changed.write_parquet(str(out / "changed.parquet"))
    (out / "changed.parquet").replace(quarantine)
    return key, fare


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("service", "month"),
    [("yellow", "2023-07"), ("green", "2023-08")],  # yellow as pandas writes it (ns timestamps)
)
def test_reference_equals_chillflow_row_for_row(
    spark, settings, module_db, tmp_path, service, month
):
    settings = dataclasses.replace(settings, database_url=module_db)
    path = tmp_path / tlc_file_name(service, month)
    kwargs = {"month": month, "rows": 3000, "seed": 11, "dirty_rate": 0.1}
    if service == "green":
        raw = generate_month(path, service=service, **kwargs)
    else:
        raw = write_layout(path, "pandas_ns", **kwargs)
    out = tmp_path / "reference"

    stats = _run_both(spark, settings, raw, out)
    problems, summary = _differences(settings, stats, out)

    assert problems == []
    assert stats["input_rows"] == 3000
    assert stats["quarantined_rows"] > 100  # dirty rows of every kind were compared
    assert stats["loaded"] == stats["output_rows"]
    assert f"{stats['output_rows']:,} curated" in summary

    key, fare = _break_one_of_each(module_db, month, out)
    problems, summary = _differences(settings, stats, out)

    assert [p.split(":")[0] for p in problems] == [
        "quarantine.failed_rules",
        "complete_trip.fare_amount",
        "zone_hourly_kpis",
    ]
    assert problems[0].startswith("quarantine.failed_rules: 1 rows differ")
    assert "'made_up'" in problems[0]
    assert problems[1].startswith("complete_trip.fare_amount: 1 rows differ")
    assert str(fare) in problems[1] and key in problems[1]
    assert problems[2].startswith("zone_hourly_kpis: 1 rows only in ChillFlow")
    assert summary.endswith("2 rows hold a double within 1e-9, not bit-identical")


@pytest.mark.postgres
def test_reference_tables_have_the_columns_and_keys_of_the_project_tables(module_db, tmp_path):
    raw = generate_month(tmp_path / tlc_file_name("yellow", "2023-10"), month="2023-10", rows=50)
    ref.run_month(raw, tmp_path / "reference", module_db.url(), "salt", schema=SCHEMA)
    shape = """
        SELECT c.column_name, c.data_type, c.character_maximum_length, c.is_nullable,
               c.column_default, coalesce(k.constraint_type, '')
        FROM information_schema.columns c
        LEFT JOIN information_schema.key_column_usage u
            USING (table_schema, table_name, column_name)
        LEFT JOIN information_schema.table_constraints k
            ON k.constraint_name = u.constraint_name AND k.table_schema = c.table_schema
        WHERE c.table_schema = %s AND c.table_name = %s ORDER BY c.ordinal_position
    """
    for ours, theirs in (
        (("stg", "complete_trip"), (SCHEMA, "complete_trip")),
        (("mart", "zone_hourly_kpis"), (SCHEMA, "zone_hourly_kpis")),
    ):
        project = _query(module_db, shape, ours)
        assert project, ours
        assert _query(module_db, shape, theirs) == project


def test_spark_rules_translate_to_duckdb_or_fail_loudly():
    month_rule = (
        "pickup_ts >= to_timestamp(month || '-01') "
        "AND pickup_ts < add_months(to_timestamp(month || '-01'), 1)"
    )
    assert ref.to_duckdb("in_month", month_rule) == (
        "pickup_ts >= spark_to_timestamp(month || '-01') "
        "AND pickup_ts < spark_add_months(spark_to_timestamp(month || '-01'), 1)"
    )
    assert ref.to_duckdb("quoted", "store_and_fwd_flag IN ('Y', 'date_format(')") == (
        "store_and_fwd_flag IN ('Y', 'date_format(')"
    )
    with pytest.raises(ref.ReferencePipelineError, match=r"'year_ok'.*date_format\(\)"):
        ref.to_duckdb("year_ok", "date_format(pickup_ts, 'yyyy') = '2025'")
    with pytest.raises(ref.ReferencePipelineError, match=r"'cast_ok'.*CAST\(\)"):
        ref.to_duckdb("cast_ok", "CAST(trip_distance AS INT) > 0")  # Spark truncates, DuckDB rounds
    with pytest.raises(ref.ReferencePipelineError, match="quotes or backticks"):
        ref.to_duckdb("string", 'store_and_fwd_flag = "Y"')


def test_a_predicate_duckdb_cannot_evaluate_names_its_rule(tmp_path):
    raw = generate_month(tmp_path / tlc_file_name("yellow", "2023-11"), month="2023-11", rows=20)
    rules = (*ref.load_rules(), ref.Rule("spaceship", "pickup_ts <=> dropoff_ts", "warn"))
    with pytest.raises(ref.ReferencePipelineError, match="rule 'spaceship': not valid in DuckDB"):
        ref.curate_month(ref.connect_duckdb(), raw, tmp_path / "out", "2023-11", rules)


def test_edge_values_are_staged_and_derived_alike(spark, tmp_path):
    """Casts Spark and DuckDB would do differently: fractions, NaN, infinities, overflow, ns."""
    nanos = [-500, 1_735_700_000_000_000_999, None, 1_735_700_000_123_456_789, -1_000_000_001]
    amounts = [1.005, -0.0, None, float("inf"), float("nan")]
    raw = tmp_path / "yellow_tripdata_2025-01.parquet"
    columns = {
        "VendorID": pa.array([1, 3_000_000_000, -5, None, 7], pa.int64()),
        "tpep_pickup_datetime": pa.array(nanos, pa.timestamp("ns")),
        "tpep_dropoff_datetime": pa.array(nanos[::-1], pa.timestamp("ns")),
        "passenger_count": [1.7, -1.7, float("nan"), float("inf"), 1e10],
        "trip_distance": pa.array([1, 2, None, 4, 5], pa.int32()),
        "RatecodeID": [0.9999, -0.5, 99.0, None, -2.5],
        "store_and_fwd_flag": ["N", "Y", None, "", "n"],
        **{name: pa.array([1, 2, 3, None, 265], pa.int32()) for name in ("PULocationID",
                                                                        "DOLocationID")},
        "payment_type": pa.array([1, 2, 3, 4, -9_000_000_000], pa.int64()),
        **{name: amounts for name in ("fare_amount", "extra", "mta_tax", "tip_amount",
                                      "tolls_amount", "improvement_surcharge", "total_amount")},
    }  # fmt: skip
    pq.write_table(pa.table(columns), raw)
    rows, schema = read_raw_file(spark, RawFile(raw, "2025-01"))
    staged = stage_trips(rows, plan_layout(schema, str(raw)), "2025-01")
    derived = staged.transform(with_derived_fields, "America/New_York", ["2025-01"])
    expected = [tuple(r) for r in derived.orderBy("source_row").collect()]
    con = ref.connect_duckdb()
    ref.flag_trips(con, raw, "2025-01", ())
    names = ", ".join((*ref.STAGED, "parse_errors", *ref.DERIVED))
    actual = con.execute(f"SELECT {names} FROM flagged ORDER BY source_row").fetchall()

    assert len(actual) == len(expected) == 5
    errors = len(ref.STAGED)
    for ours, theirs in zip(expected, actual, strict=True):
        # NaN == NaN, -0.0 != 0.0; the lost values' text is Java's in Spark (1.0E10, not 1e10).
        assert [repr(v) for i, v in enumerate(theirs) if i != errors] == [
            repr(v) for i, v in enumerate(ours) if i != errors
        ]
        assert [e.split("=")[0] for e in theirs[errors]] == [e.split("=")[0] for e in ours[errors]]
    assert [len(r[errors]) for r in expected] == [2, 3, 1, 1, 3]
