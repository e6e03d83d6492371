from datetime import datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql.types import (
    BinaryType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    NullType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
)

from chillflow.errors import SchemaError
from chillflow.schemas import STAGED_DDL, struct
from chillflow.transforms.staging import (
    SOURCE_FILE_COL,
    SOURCE_ROW_COL,
    plan_layout,
    stage_trips,
    trip_service,
)

YELLOW_CORE = [
    ("VendorID", IntegerType()),
    ("tpep_pickup_datetime", TimestampNTZType()),
    ("tpep_dropoff_datetime", TimestampNTZType()),
    ("passenger_count", LongType()),
    ("trip_distance", DoubleType()),
    ("RatecodeID", LongType()),
    ("store_and_fwd_flag", StringType()),
    ("PULocationID", IntegerType()),
    ("DOLocationID", IntegerType()),
    ("payment_type", LongType()),
    ("fare_amount", DoubleType()),
    ("extra", DoubleType()),
    ("mta_tax", DoubleType()),
    ("tip_amount", DoubleType()),
    ("tolls_amount", DoubleType()),
    ("improvement_surcharge", DoubleType()),
    ("total_amount", DoubleType()),
]


def schema_of(fields):
    return StructType([StructField(name, kind) for name, kind in fields])


def with_lineage(fields):
    return schema_of([*fields, (SOURCE_FILE_COL, StringType()), (SOURCE_ROW_COL, LongType())])


def test_yellow_2025_layout_with_capitalised_airport_fee(spark):
    fields = [
        *YELLOW_CORE,
        ("congestion_surcharge", DoubleType()),
        ("Airport_fee", DoubleType()),
        ("cbd_congestion_fee", DoubleType()),
    ]
    raw = spark.createDataFrame(
        [
            (
                2,
                datetime(2025, 1, 1, 0, 18, 38),
                datetime(2025, 1, 1, 0, 26, 59),
                1,
                1.6,
                1,
                "N",
                229,
                237,
                1,
                10.0,
                3.5,
                0.5,
                3.0,
                0.0,
                1.0,
                18.0,
                2.5,
                0.0,
                0.75,
                "yellow_tripdata_2025-01.parquet",
                0,
            ),
            (
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                "yellow_tripdata_2025-01.parquet",
                1,
            ),
        ],
        with_lineage(fields),
    )
    layout = plan_layout(schema_of(fields), "y.parquet")

    staged = stage_trips(raw, layout, "2025-01")

    expected = spark.createDataFrame(
        [
            (
                "yellow",
                2,
                datetime(2025, 1, 1, 0, 18, 38),
                datetime(2025, 1, 1, 0, 26, 59),
                1,
                1.6,
                1,
                "N",
                229,
                237,
                1,
                10.0,
                3.5,
                0.5,
                3.0,
                0.0,
                1.0,
                18.0,
                2.5,
                0.0,
                0.75,
                None,
                None,
                "2025-01",
                "yellow_tripdata_2025-01.parquet",
                0,
                None,
            ),
            (
                "yellow",
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                "2025-01",
                "yellow_tripdata_2025-01.parquet",
                1,
                None,
            ),
        ],
        struct(STAGED_DDL),
    )
    assert_df_equality(staged, expected, ignore_nullable=True)


def test_older_layout_gets_null_new_columns_and_double_counts_become_int(spark):
    fields = [
        (name, DoubleType() if name in ("passenger_count", "RatecodeID") else kind)
        for name, kind in YELLOW_CORE
    ]
    raw = spark.createDataFrame(
        [
            (
                1,
                datetime(2019, 3, 31, 23, 59, 59),
                datetime(2019, 4, 1, 0, 10),
                2.0,
                3.0,
                99.0,
                "Y",
                132,
                1,
                2,
                52.0,
                0.0,
                0.5,
                0.0,
                6.12,
                0.3,
                58.92,
                "f.parquet",
                7,
            )
        ],
        with_lineage(fields),
    )

    staged = stage_trips(raw, plan_layout(schema_of(fields), "f.parquet"), "2019-03")

    row = staged.first().asDict()
    assert (row["passenger_count"], row["rate_code"]) == (2, 99)
    assert row["congestion_surcharge"] is None
    assert row["airport_fee"] is None
    assert row["cbd_congestion_fee"] is None
    assert row["source_row"] == 7


def test_nanosecond_timestamps_read_as_long_are_converted_exactly(spark):
    fields = [
        (name, LongType() if name.endswith("datetime") else kind) for name, kind in YELLOW_CORE
    ]
    pickup_ns = 1_735_690_718_123_456_000  # 2025-01-01T00:18:38.123456
    raw = spark.createDataFrame(
        [
            (
                2,
                pickup_ns,
                pickup_ns + 60_000_000_000,
                1,
                1.0,
                1,
                "N",
                1,
                2,
                1,
                5.0,
                0.0,
                0.5,
                0.0,
                0.0,
                1.0,
                6.5,
                "n.parquet",
                0,
            )
        ],
        with_lineage(fields),
    )

    staged = stage_trips(raw, plan_layout(schema_of(fields), "n.parquet"), "2025-01")

    row = staged.first()
    assert row["pickup_ts"] == datetime(2025, 1, 1, 0, 18, 38, 123456)
    assert row["dropoff_ts"] == datetime(2025, 1, 1, 0, 19, 38, 123456)


def test_green_layout_with_null_typed_ehail_fee(spark):
    fields = [
        ("VendorID", LongType()),
        ("lpep_pickup_datetime", TimestampNTZType()),
        ("lpep_dropoff_datetime", TimestampNTZType()),
        *[(n, k) for n, k in YELLOW_CORE[3:]],
        ("ehail_fee", NullType()),
        ("trip_type", DoubleType()),
        ("congestion_surcharge", DoubleType()),
    ]
    raw = spark.createDataFrame(
        [
            (
                2,
                datetime(2021, 1, 1, 0, 15, 56),
                datetime(2021, 1, 1, 0, 19, 52),
                1,
                1.0,
                1,
                "N",
                43,
                151,
                2,
                5.5,
                0.5,
                0.5,
                0.0,
                0.0,
                0.3,
                6.8,
                None,
                1.0,
                0.0,
                "g.parquet",
                3,
            )
        ],
        with_lineage(fields),
    )

    staged = stage_trips(raw, plan_layout(schema_of(fields), "g.parquet"), "2021-01")

    row = staged.first()
    assert row["service"] == "green"
    assert row["ehail_fee"] is None
    assert row["trip_type"] == 1
    assert dict(staged.dtypes)["trip_type"] == "int"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            [
                ("vendor_id", StringType()),
                ("pickup_datetime", TimestampNTZType()),
                ("pickup_longitude", DoubleType()),
                ("pickup_latitude", DoubleType()),
            ],
            "tpep_/lpep_pickup_datetime",
        ),
        (
            [
                ("dispatching_base_num", StringType()),
                ("pickup_datetime", TimestampNTZType()),
                ("PUlocationID", DoubleType()),
            ],
            "tpep_/lpep_pickup_datetime",
        ),
        (
            [(n, k) for n, k in YELLOW_CORE if n not in ("PULocationID", "fare_amount")],
            "PULocationID, fare_amount",
        ),
    ],
    ids=["pre-2016-lat-lon", "fhv", "missing-columns"],
)
def test_unsupported_layouts_name_file_expected_and_found_columns(fields, expected):
    with pytest.raises(SchemaError) as raised:
        plan_layout(schema_of(fields), "/data/old_tripdata_2015-01.parquet")

    message = str(raised.value)
    assert message.startswith("/data/old_tripdata_2015-01.parquet: not a yellow/green TLC")
    assert f"Expected column(s): {expected}." in message
    assert f"Found: {fields[0][0]}, {fields[1][0]}" in message


def staged_values(spark, fields, rows, names):
    raw = spark.createDataFrame(
        [(*row, "s.parquet", i) for i, row in enumerate(rows)], with_lineage(fields)
    )
    staged = stage_trips(raw, plan_layout(schema_of(fields), "s.parquet"), "2025-01")
    return [tuple(r) for r in staged.select(*names, "parse_errors").orderBy("source_row").collect()]


def test_string_typed_columns_are_cast_and_unparsable_values_are_listed(spark):
    fields = [(name, StringType()) for name, _ in YELLOW_CORE]
    good = ["2", "2025-01-01 00:18:38", "2025-01-01T00:26:59", " 1 ", "1.6", "1.0", "N"]
    good += ["229", "237", "1", "10", "3.5", "0.5", "3", "0", "1", "18"]
    bad = ["abc", "2025-13-45", "2025-01-01 00:26:59", "1.5", "1.6", "99", "Y"]
    bad += ["3000000000", "", "  ", "1e400", "NaN", "0.5", "x", "0", "1", "18"]

    rows = staged_values(
        spark,
        fields,
        [good, bad, [None] * len(fields)],
        ["vendor_id", "pickup_ts", "dropoff_ts", "passenger_count", "rate_code"],
    )

    assert rows[0] == (
        2,
        datetime(2025, 1, 1, 0, 18, 38),
        datetime(2025, 1, 1, 0, 26, 59),
        1,
        1,
        None,
    )
    # Blank strings are missing values; '1e400' and 'NaN' are doubles (the finite rule's job).
    assert rows[1] == (
        None,
        None,
        datetime(2025, 1, 1, 0, 26, 59),
        None,
        99,
        [
            "vendor_id='abc'",
            "pickup_ts='2025-13-45'",
            "passenger_count='1.5'",
            "pu_zone_id='3000000000'",
            "tip_amount='x'",
        ],
    )
    assert rows[2] == (None, None, None, None, None, None)


def test_timestamp_text_needs_a_time_of_day_and_no_zone(spark):
    fields = [(name, StringType()) for name, _ in YELLOW_CORE]
    base = ["2", "2025-01-15 08:30:00", "2025-01-15 08:40:00", "1", "1.6", "1", "N", "229"]
    base += ["237", "1", "10", "3.5", "0.5", "3", "0", "1", "18"]
    texts = [
        ("2025-01-15T08:30", " 2025-01-15 08:40:00.5 "),
        ("2025-01-15", "2025-01-15 08:40:00-05:00"),
        ("2025-01-15T13:30:00Z", "2025-01-15 08:40:00 America/New_York"),
        ("2025-01", "2025-01-15T08:40:00+00:00"),
    ]
    rows = [[base[0], pickup, dropoff, *base[3:]] for pickup, dropoff in texts]

    staged = staged_values(spark, fields, rows, ["pickup_ts", "dropoff_ts"])

    assert staged == [
        (datetime(2025, 1, 15, 8, 30), datetime(2025, 1, 15, 8, 40, 0, 500000), None),
        (None, None, ["pickup_ts='2025-01-15'", "dropoff_ts='2025-01-15 08:40:00-05:00'"]),
        (
            None,
            None,
            [
                "pickup_ts='2025-01-15T13:30:00Z'",
                "dropoff_ts='2025-01-15 08:40:00 America/New_York'",
            ],
        ),
        (None, None, ["pickup_ts='2025-01'", "dropoff_ts='2025-01-15T08:40:00+00:00'"]),
    ]


def test_lossy_numeric_casts_to_int_are_listed(spark):
    drift = {"VendorID": LongType(), "passenger_count": DoubleType(), "RatecodeID": DoubleType()}
    fields = [(name, drift.get(name, kind)) for name, kind in YELLOW_CORE]
    base = [2, datetime(2025, 1, 1), datetime(2025, 1, 1, 0, 10), 1.0, 1.6, 1.0, "N", 229, 237]
    base += [1, 10.0, 3.5, 0.5, 3.0, 0.0, 1.0, 18.0]

    def row(**values):
        return [values.get(name, value) for (name, _), value in zip(fields, base, strict=True)]

    rows = staged_values(
        spark,
        fields,
        [
            row(passenger_count=3.0, RatecodeID=-0.0, VendorID=2_147_483_647),
            row(passenger_count=2.5, RatecodeID=float("nan"), VendorID=2_147_483_648),
            row(passenger_count=float("inf"), RatecodeID=None, VendorID=-2_147_483_649),
        ],
        ["vendor_id", "passenger_count", "rate_code"],
    )

    assert rows == [
        (2_147_483_647, 3, 0, None),
        (
            None,
            None,
            None,
            ["vendor_id='2147483648'", "passenger_count='2.5'", "rate_code='NaN'"],
        ),
        (None, None, None, ["vendor_id='-2147483649'", "passenger_count='Infinity'"]),
    ]


def test_a_file_whose_types_match_checks_no_cast(spark):
    fields = [(n, IntegerType() if k == LongType() else k) for n, k in YELLOW_CORE]
    layout = plan_layout(schema_of(fields), "t.parquet")
    raw = spark.createDataFrame([], with_lineage(fields))

    plan = stage_trips(raw, layout, "2025-01").select("parse_errors")._jdf.queryExecution()

    assert "null AS parse_errors" in plan.optimizedPlan().toString()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            [*YELLOW_CORE, ("airport_fee", DoubleType()), ("Airport_fee", DoubleType())],
            "columns 'airport_fee' and 'Airport_fee' differ only in case; expected one of them",
        ),
        (
            [(n, BinaryType() if n == "fare_amount" else k) for n, k in YELLOW_CORE],
            "column fare_amount is of type binary; expected double, or a number, string or "
            "timestamp convertible to it",
        ),
        (
            [(n, DoubleType() if n.endswith("datetime") else k) for n, k in YELLOW_CORE],
            "column tpep_pickup_datetime is of type double; expected timestamp",
        ),
        (
            [(n, DateType() if n.endswith("datetime") else k) for n, k in YELLOW_CORE],
            "column tpep_pickup_datetime is of type date; expected timestamp",
        ),
    ],
    ids=["case-duplicates", "binary-amount", "double-timestamp", "date-timestamp"],
)
def test_columns_that_cannot_be_staged_name_the_file_and_column(fields, message):
    with pytest.raises(SchemaError) as raised:
        plan_layout(schema_of(fields), "/in/y.parquet")

    assert str(raised.value).startswith(f"/in/y.parquet: {message}")


def test_a_layout_refusal_shows_names_with_surrounding_spaces_quoted():
    fields = [(f" {n} " if n == "PULocationID" else n, k) for n, k in YELLOW_CORE]

    with pytest.raises(SchemaError) as raised:
        plan_layout(schema_of(fields), "/in/y.parquet")

    assert "Expected column(s): PULocationID. Found: " in str(raised.value)
    assert "store_and_fwd_flag, ' PULocationID ', DOLocationID," in str(raised.value)


def test_trip_service_reads_the_layout_from_column_names_alone():
    yellow = [name.upper() for name, _ in YELLOW_CORE]
    green = [name.replace("tpep", "lpep") for name, _ in YELLOW_CORE]

    assert trip_service(yellow, "y.parquet") == "yellow"
    assert trip_service([*green, "ehail_fee", "trip_type"], "g.parquet") == "green"
    with pytest.raises(
        SchemaError, match=r"g.parquet: .*Expected column\(s\): lpep_dropoff_datetime"
    ):
        trip_service([n for n in green if n != "lpep_dropoff_datetime"], "g.parquet")
    with pytest.raises(SchemaError, match=r"Expected column\(s\): tpep_/lpep_pickup_datetime"):
        trip_service(["dispatching_base_num", "pickup_datetime"], "fhv.parquet")
