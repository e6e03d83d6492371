"""Hostile, malformed and odd raw inputs: each ends in a documented outcome.

Row-level cases are files of one landing directory (a month each), curated together once:
every row is curated with its raw values, or quarantined with exactly the named rules. Files
that cannot be curated at all are refused before Spark starts, with one ``error:`` line and
exit code 3, and leave an existing month untouched.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from chillflow.errors import DataQualityError, SchemaError
from chillflow.settings import TablePaths
from chillflow.stages.curate import curate
from chillflow.storage.delta import read_table
from chillflow.storage.raw import find_raw_files, read_raw_file
from tests.conftest import run_chillflow
from tests.integration.rawfiles import (
    GREEN_2025,
    YELLOW_2025,
    as_green,
    read_rows,
    retyped,
    trip,
    write_rows,
    write_yellow,
)

PARSE = "raw_values_parsed"
FINITE = "numbers_finite"
AMOUNTS = "amounts_plausible"
DISTANCE = "trip_distance_plausible"
ORDER = "pickup_before_dropoff"
SPEED = "speed_plausible"
NEGATIVE = "total_amount_non_negative"
REQUIRED = "required_fields_present"
ZONES = "zone_ids_known"
MONTH = "pickup_in_file_month"
LONG = "duration_within_limit"

STANDARD = {
    "vendorid": "vendor_id",
    "tpep_pickup_datetime": "pickup_ts",
    "tpep_dropoff_datetime": "dropoff_ts",
    "lpep_pickup_datetime": "pickup_ts",
    "lpep_dropoff_datetime": "dropoff_ts",
    "ratecodeid": "rate_code",
    "pulocationid": "pu_zone_id",
    "dolocationid": "do_zone_id",
    **{
        name: name
        for name in (
            *("passenger_count", "trip_distance", "store_and_fwd_flag", "payment_type"),
            *("fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount"),
            *("improvement_surcharge", "total_amount", "congestion_surcharge", "airport_fee"),
            *("cbd_congestion_fee", "ehail_fee", "trip_type"),
        )
    },
}
TIMESTAMPS = ("pickup_ts", "dropoff_ts")
INTS = ("vendor_id", "passenger_count", "rate_code", "pu_zone_id", "do_zone_id")
INTS += ("payment_type", "trip_type")
STRINGS = ("store_and_fwd_flag",)


@dataclass
class Case:
    """One raw file: its rows, schema and the rules each quarantined row fails."""

    name: str
    file: str
    rows: list[dict]
    schema: pa.Schema = YELLOW_2025
    quarantined: dict[int, list[str]] = field(default_factory=dict)


def day(month: str, hour: int = 8, minute: int = 30) -> datetime:
    return datetime.strptime(f"{month}-15", "%Y-%m-%d").replace(hour=hour, minute=minute)


def good(month: str, count: int) -> list[dict]:
    return [trip(day(month, hour=h)) for h in range(count)]


def as_text(row: dict) -> dict:
    return {k: None if v is None else str(v) for k, v in row.items()}


def with_values(row: dict, **values) -> dict:
    return {**row, **values}


def string_typed() -> Case:
    m = "2031-01"
    base = trip(day(m))
    rows = [
        as_text(base),
        as_text(with_values(base, fare_amount="abc")),
        as_text(with_values(base, tpep_pickup_datetime="2031-13-45 08:30:00")),
        as_text(with_values(base, PULocationID="3000000000")),
        as_text(with_values(base, passenger_count="1.5")),
        as_text(with_values(base, passenger_count="", RatecodeID="  ")),
        as_text(with_values(base, total_amount="NaN")),
        as_text(with_values(base, VendorID="2.0", tpep_dropoff_datetime="2031-01-15T08:40:00")),
        as_text(with_values(base, tpep_dropoff_datetime="15/01/2031 08:40")),
        *[as_text(row) for row in good(m, 6)],
    ]
    return Case(
        "string-typed numerics and timestamps with garbage",
        f"yellow_tripdata_{m}.parquet",
        rows,
        pa.schema([(f.name, pa.string()) for f in YELLOW_2025]),
        {
            1: [PARSE],
            2: [PARSE, ORDER, SPEED, REQUIRED, MONTH, LONG],
            3: [PARSE, REQUIRED, ZONES],
            4: [PARSE],
            6: [FINITE, AMOUNTS],
            8: [PARSE, ORDER, SPEED, REQUIRED, LONG],
        },
    )


def timestamp_text_without_time_or_with_zone() -> Case:
    m = "2032-03"
    base = as_text(trip(day(m)))
    pickup = [PARSE, ORDER, SPEED, REQUIRED, MONTH, LONG]
    dropoff = [PARSE, ORDER, SPEED, REQUIRED, LONG]
    rows = [
        with_values(base, tpep_pickup_datetime="2032-03-15"),
        with_values(base, tpep_pickup_datetime="2032-03-15T08:30:00-05:00"),
        with_values(base, tpep_dropoff_datetime="2032-03-15T08:40:00Z"),
        with_values(base, tpep_dropoff_datetime="2032-03-15 08:40:00 America/New_York"),
        with_values(
            base,
            tpep_pickup_datetime="2032-03-15T08:30",
            tpep_dropoff_datetime=" 2032-03-15 08:40:00.5 ",
        ),
        *[as_text(row) for row in good(m, 16)],
    ]
    return Case(
        "timestamp text without a time of day or with a zone",
        f"yellow_tripdata_{m}.parquet",
        rows,
        pa.schema([(f.name, pa.string()) for f in YELLOW_2025]),
        {0: pickup, 1: pickup, 2: dropoff, 3: dropoff},
    )


def non_finite_measures() -> Case:
    m = "2031-02"
    rows, quarantined = [trip(day(m))], {}
    nan, inf = float("nan"), float("inf")
    expected = {
        "fare_amount": {nan: [FINITE, AMOUNTS], inf: [FINITE, AMOUNTS], -inf: [FINITE, AMOUNTS]},
        "tip_amount": {nan: [FINITE, AMOUNTS], inf: [FINITE, AMOUNTS], -inf: [FINITE, AMOUNTS]},
        "tolls_amount": {nan: [FINITE, AMOUNTS], inf: [FINITE, AMOUNTS], -inf: [FINITE, AMOUNTS]},
        # NaN >= 0 is true in Spark: only the finite rule catches a NaN total.
        "total_amount": {
            nan: [FINITE, AMOUNTS],
            inf: [FINITE, AMOUNTS],
            -inf: [FINITE, AMOUNTS, NEGATIVE],
        },
        # A NaN or +inf distance makes a NaN or +inf speed; 1e308 miles in 10 minutes too.
        "trip_distance": {
            nan: [FINITE, DISTANCE, SPEED],
            inf: [FINITE, DISTANCE, SPEED],
            -inf: [FINITE, DISTANCE],
            1e308: [FINITE, DISTANCE, SPEED],
        },
    }
    for column, outcomes in expected.items():
        outcomes.setdefault(1e308, [AMOUNTS])
        for value, rules in outcomes.items():
            quarantined[len(rows)] = rules
            rows.append(with_values(trip(day(m)), **{column: value}))
    return Case(
        "NaN, ±inf and 1e308 in each measure",
        f"yellow_tripdata_{m}.parquet",
        rows,
        quarantined=quarantined,
    )


def zone_ids() -> Case:
    m = "2031-03"
    rows = [trip(day(m))] + [
        trip(day(m), pu=pu, do=do)
        for pu, do in [(0, 236), (161, 266), (-1, 236), (2**31 - 1, 2**31 - 1)]
    ]
    return Case(
        "zone ids 0, 266, -1, 2^31-1",
        f"yellow_tripdata_{m}.parquet",
        rows,
        quarantined={1: [ZONES], 2: [ZONES], 3: [ZONES], 4: [ZONES]},
    )


def zone_ids_beyond_int() -> Case:
    m = "2031-04"
    rows = [trip(day(m), pu=2**31), trip(day(m), do=-(2**31) - 1), *good(m, 8)]
    schema = retyped(YELLOW_2025, PULocationID=pa.int64(), DOLocationID=pa.int64())
    rules = [PARSE, REQUIRED, ZONES]
    return Case(
        "int64 zone ids beyond int",
        f"yellow_tripdata_{m}.parquet",
        rows,
        schema,
        {0: rules, 1: rules},
    )


def all_null_columns() -> Case:
    m = "2031-05"
    nulls = dict.fromkeys(
        [
            "passenger_count",
            "RatecodeID",
            "store_and_fwd_flag",
            "congestion_surcharge",
            "Airport_fee",
            "cbd_congestion_fee",
        ]
    )
    rows = [with_values(row, **nulls) for row in good(m, 3)]
    return Case(
        "all-null columns and a null-typed one",
        f"yellow_tripdata_{m}.parquet",
        rows,
        retyped(YELLOW_2025, cbd_congestion_fee=pa.null()),
    )


def extra_columns() -> Case:
    m = "2031-06"
    schema = pa.schema([*YELLOW_2025, ("driver_note", pa.string()), ("LocationID", pa.int64())])
    rows = [with_values(row, driver_note="hi", LocationID=7) for row in good(m, 2)]
    return Case("unknown extra columns", f"yellow_tripdata_{m}.parquet", rows, schema)


def duplicate_rows() -> Case:
    m = "2031-07"
    return Case("two identical rows", f"yellow_tripdata_{m}.parquet", [trip(day(m))] * 2)


def nanosecond_timestamps() -> Case:
    m = "2031-08"
    rows = good(m, 2)
    for row in rows:  # as nanosecond counts, 789 ns past the microsecond
        for column in ("tpep_pickup_datetime", "tpep_dropoff_datetime"):
            row[column] = int((row[column] - datetime(1970, 1, 1)).total_seconds()) * 10**9 + 789
    schema = retyped(
        YELLOW_2025,
        tpep_pickup_datetime=pa.timestamp("ns"),
        tpep_dropoff_datetime=pa.timestamp("ns"),
    )
    return Case("nanosecond timestamps", f"yellow_tripdata_{m}.parquet", rows, schema)


def type_drift() -> Case:
    m = "2031-09"
    schema = retyped(
        YELLOW_2025,
        VendorID=pa.int64(),
        passenger_count=pa.float64(),
        RatecodeID=pa.float64(),
        payment_type=pa.float64(),
        PULocationID=pa.int64(),
        fare_amount=pa.float32(),
        trip_distance=pa.float32(),
    )
    rows = [
        with_values(trip(day(m)), passenger_count=2.0, fare_amount=12.5, trip_distance=1.6),
        with_values(trip(day(m)), passenger_count=2.5),
        with_values(trip(day(m)), RatecodeID=float("nan")),
        with_values(trip(day(m)), payment_type=1e10),
    ]
    return Case(
        "int32/int64/float/double drift",
        f"yellow_tripdata_{m}.parquet",
        rows,
        schema,
        {1: [PARSE], 2: [PARSE], 3: [PARSE]},
    )


def far_away_pickups() -> Case:
    m = "2031-10"
    rows = [
        trip(datetime(2088, 10, 15, 8, 30)),
        trip(datetime(2009, 1, 1, 0, 5)),
        trip(day(m), minutes=57 * 365 * 24 * 60),  # drops off in 2088
        *good(m, 3),
    ]
    return Case(
        "pickups years away (2088, 2009) and a dropoff in 2088",
        f"yellow_tripdata_{m}.parquet",
        rows,
        quarantined={0: [MONTH], 1: [MONTH], 2: [LONG]},
    )


def distances() -> Case:
    m = "2031-11"
    rows = [trip(day(m), miles=-2.0), trip(day(m), miles=0.0), trip(day(m), miles=1000.5)]
    return Case(
        "negative, zero and 1000+ mile distances",
        f"yellow_tripdata_{m}.parquet",
        rows,
        quarantined={0: [DISTANCE], 2: [DISTANCE, SPEED]},
    )


def durations() -> Case:
    m = "2031-12"
    rows = [trip(day(m), minutes=0), trip(day(m), minutes=-5), trip(day(m), minutes=720)]
    return Case(
        "zero and negative durations, and exactly 12 hours",
        f"yellow_tripdata_{m}.parquet",
        rows,
        quarantined={0: [ORDER, SPEED], 1: [ORDER, SPEED]},
    )


def dst_spring() -> Case:
    rows = [trip(datetime(2025, 3, 9, 1, 50), minutes=80)]  # 01:50 EST to 03:10 EDT
    return Case("a trip across the March clock change", "yellow_tripdata_2025-03.parquet", rows)


def dst_fall_back() -> Case:
    rows = [
        trip(datetime(2025, 11, 2, 1, 50), minutes=-40),  # 01:50 EDT to 01:10 EST
        trip(datetime(2025, 11, 2, 1, 10), minutes=30),
    ]
    return Case(
        "green trips in the repeated November hour",
        "green_tripdata_2025-11.parquet",
        [as_green(row) for row in rows],
        GREEN_2025,
    )


def glob_characters() -> Case:
    m = "2032-01"
    return Case(
        "glob characters in the name", f"yellow_tripdata_{m} [1]{{a,b}}*?.parquet", good(m, 2)
    )


def unicode_and_spaces() -> Case:
    m = "2032-02"
    return Case(
        "unicode and spaces in the name",
        f"données été yellow_tripdata_{m} (copie).parquet",
        good(m, 2),
    )


CASES = [
    string_typed(),
    timestamp_text_without_time_or_with_zone(),
    non_finite_measures(),
    zone_ids(),
    zone_ids_beyond_int(),
    all_null_columns(),
    extra_columns(),
    duplicate_rows(),
    nanosecond_timestamps(),
    type_drift(),
    far_away_pickups(),
    distances(),
    durations(),
    dst_spring(),
    dst_fall_back(),
    glob_characters(),
    unicode_and_spaces(),
]


@dataclass
class Batch:
    stats: dict
    curated: dict[tuple[str, int], dict]
    quarantined: dict[tuple[str, int], dict]
    raw: dict[tuple[str, int], dict]


def lake_settings(base_settings, lake: Path):
    tables = TablePaths(
        curated=lake / "curated/trips",
        quarantine=lake / "curated/quarantine",
        dq_metrics=lake / "curated/dq_metrics",
        kpis=lake / "marts/zone_hourly_kpis",
    )
    return dataclasses.replace(base_settings, lake_dir=lake, tables=tables)


@pytest.fixture(scope="module")
def batch(spark, base_settings, tmp_path_factory) -> Batch:
    """Every row-level case, curated in one run from one landing directory."""
    root = tmp_path_factory.mktemp("hostile")
    raw = {}
    for case in CASES:
        path = write_rows(root / "landing" / case.file, case.rows, case.schema)
        raw.update({(case.file, i): row for i, row in enumerate(read_rows(path))})
    settings = lake_settings(base_settings, root / "lake")

    stats = curate(spark, settings, root / "landing")

    def by_row(path):
        rows = read_table(spark, path).collect()
        return {(r["source_file"], r["source_row"]): r.asDict() for r in rows}

    return Batch(stats, by_row(settings.tables.curated), by_row(settings.tables.quarantine), raw)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_row_is_curated_or_quarantined_by_name(batch, case):
    quarantined = {
        row: batch.quarantined[(case.file, row)]["failed_rules"]
        for row in range(len(case.rows))
        if (case.file, row) in batch.quarantined
    }
    curated = {row for row in range(len(case.rows)) if (case.file, row) in batch.curated}

    assert quarantined == case.quarantined
    assert curated == set(range(len(case.rows))) - set(case.quarantined)


def expected_value(column: str, raw):
    """A raw value as the staged column must hold it; None where the raw value is missing."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if column in STRINGS:
        return raw
    if column in TIMESTAMPS:
        return datetime.fromisoformat(raw.strip()) if isinstance(raw, str) else raw
    if column in INTS:
        return int(float(raw))
    return float(raw)


def test_no_present_value_becomes_null_silently(batch):
    assert batch.stats["input_rows"] == len(batch.raw)
    assert len(batch.curated) + len(batch.quarantined) == len(batch.raw)
    for key, raw in batch.raw.items():
        staged = batch.curated.get(key) or batch.quarantined[key]
        failed = {error.split("=")[0] for error in staged.get("parse_errors") or []}
        for raw_name, value in raw.items():
            column = STANDARD.get(raw_name.lower())
            if column is None or column in failed:
                continue
            expected = expected_value(column, value)
            if key in batch.curated:
                assert staged[column] == expected, (key, column)
            else:
                assert (staged[column] is None) == (expected is None), (key, column)
    assert all(
        len(r["parse_errors"]) > 0 for r in batch.quarantined.values() if PARSE in r["failed_rules"]
    )


def test_parse_errors_keep_the_raw_text(batch):
    strings, drift = CASES[0].file, "yellow_tripdata_2031-09.parquet"
    texts = "yellow_tripdata_2032-03.parquet"

    assert batch.quarantined[(strings, 1)]["parse_errors"] == ["fare_amount='abc'"]
    assert batch.quarantined[(strings, 2)]["parse_errors"] == ["pickup_ts='2031-13-45 08:30:00'"]
    assert batch.quarantined[(strings, 3)]["parse_errors"] == ["pu_zone_id='3000000000'"]
    assert batch.quarantined[(drift, 1)]["parse_errors"] == ["passenger_count='2.5'"]
    assert batch.quarantined[(drift, 2)]["parse_errors"] == ["rate_code='NaN'"]
    assert batch.quarantined[(drift, 3)]["parse_errors"] == ["payment_type='1.0E10'"]
    assert batch.quarantined[("yellow_tripdata_2031-02.parquet", 1)]["parse_errors"] is None
    assert batch.quarantined[(texts, 0)]["parse_errors"] == ["pickup_ts='2032-03-15'"]
    assert batch.quarantined[(texts, 2)]["parse_errors"] == ["dropoff_ts='2032-03-15T08:40:00Z'"]


def test_durations_are_elapsed_time_across_clock_changes(batch):
    spring = batch.curated[("yellow_tripdata_2025-03.parquet", 0)]
    fall = batch.curated[("green_tripdata_2025-11.parquet", 0)]
    repeated = batch.curated[("green_tripdata_2025-11.parquet", 1)]

    assert (spring["pickup_ts"], spring["duration_min"]) == (datetime(2025, 3, 9, 1, 50), 20.0)
    assert (fall["dropoff_ts"], fall["duration_min"]) == (datetime(2025, 11, 2, 1, 10), 20.0)
    assert fall["service"] == "green"
    assert repeated["duration_min"] == 30.0


def test_odd_names_are_read_and_kept_as_lineage(batch):
    for case in CASES[-2:]:
        assert {key for key in batch.curated if key[0] == case.file} == {
            (case.file, 0),
            (case.file, 1),
        }


FEB = "yellow_tripdata_2025-02.parquet"


def valid_bytes(tmp_path: Path) -> bytes:
    path = write_yellow(tmp_path / "valid" / FEB, good("2025-02", 3))
    return path.read_bytes()


def refused_file(kind: str, tmp_path: Path) -> Path:
    """Write the raw input of one refused case into a directory of its own; return that."""
    landing = tmp_path / kind
    landing.mkdir()
    target = landing / FEB
    data = valid_bytes(tmp_path) if kind != "chmod-000" else b""
    if kind == "empty":
        write_yellow(target, [])
    elif kind == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif kind == "no-end-magic":
        target.write_bytes(data[:-4] + b"XXXX")
    elif kind == "bad-footer":
        target.write_bytes(data[:-8] + b"\xff\xff\xff\x7fPAR1")
    elif kind == "zero-bytes":
        target.write_bytes(b"")
    elif kind == "not-parquet":
        target.write_text("VendorID,tpep_pickup_datetime\n2,2025-02-01 00:00:00\n")
    elif kind == "missing-columns":
        schema = pa.schema([f for f in YELLOW_2025 if f.name not in ("PULocationID", "extra")])
        write_rows(target, good("2025-02", 2), schema)
    elif kind == "case-duplicates":
        schema = pa.schema([*YELLOW_2025, ("AIRPORT_FEE", pa.float64())])
        write_rows(target, good("2025-02", 2), schema)
    elif kind == "duplicate-slice":
        target.write_bytes(data)
        (landing / "yellow_tripdata_2025-02 (1).parquet").write_bytes(data)
    elif kind == "colon-in-name":
        (landing / "yellow_tripdata_2025-02 12:00.parquet").write_bytes(data)
    elif kind in ("underscore-name", "dot-name"):
        prefix = "_" if kind == "underscore-name" else "."
        (landing / f"{prefix}{FEB}").write_bytes(data)
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "io-error":
        target.symlink_to("/proc/self/mem")  # opens, but reading offset 0 fails (EIO)
    elif kind == "zoned-timestamps":
        zoned = pa.timestamp("us", tz="America/New_York")
        schema = pa.schema([f.with_type(zoned) if "datetime" in f.name else f for f in YELLOW_2025])
        write_rows(target, good("2025-02", 2), schema)
    elif kind == "chmod-000":
        write_yellow(target, good("2025-02", 2)).chmod(0)
    elif kind == "date-times":
        write_yellow(target, good("2025-02", 2), retyped(YELLOW_2025, **{DROPOFF: pa.date32()}))
    elif kind == "time-of-day-times":
        table = pq.read_table(write_yellow(target, good("2025-02", 2)))
        times = pa.array([t.time() for t in table[PICKUP].to_pylist()], pa.time64("us"))
        pq.write_table(table.set_column(1, PICKUP, times), target)
    elif kind == "integer-times":
        table = pq.read_table(write_yellow(target, good("2025-02", 2)))
        millis = pc.divide(table[PICKUP].cast(pa.int64()), 1000)
        pq.write_table(table.set_column(1, PICKUP, millis), target)
    elif kind == "duration-times":
        table = pq.read_table(write_yellow(target, good("2025-02", 2)))
        since_epoch = table[DROPOFF].cast(pa.int64()).cast(pa.duration("us"))
        pq.write_table(table.set_column(2, DROPOFF, since_epoch), target)
    elif kind == "brotli":
        pq.write_table(pq.read_table(write_yellow(target, good("2025-02", 2))), target, **BROTLI)
    elif kind == "byte-stream-split":
        table = pq.read_table(write_yellow(target, good("2025-02", 2)))
        pq.write_table(table, target, use_dictionary=False, use_byte_stream_split=["tip_amount"])
    elif kind == "duplicate-columns":
        table = pq.read_table(write_yellow(target, good("2025-02", 2)))
        pq.write_table(table.append_column("fare_amount", table["fare_amount"]), target)
    elif kind == "other-service":
        write_rows(target, [as_green(row) for row in good("2025-02", 2)], GREEN_2025)
    elif kind == "spark-dataset":
        target.mkdir()
        write_yellow(target / "part-00000-c0.snappy.parquet", good("2025-02", 2))
        write_yellow(target / "part-00001-c0.snappy.parquet", good("2025-02", 2))
        (target / "_SUCCESS").write_bytes(b"")
    elif kind == "reserved-column":
        table = pq.read_table(write_yellow(target, good("2025-02", 2)))
        pq.write_table(table.append_column("_metadata", pa.array(["x", "y"])), target)
    return landing


PICKUP, DROPOFF = "tpep_pickup_datetime", "tpep_dropoff_datetime"
BROTLI = {"compression": {"VendorID": "snappy", "fare_amount": "brotli"}}


REFUSED = {
    "empty": "the file holds no rows; expected a month of trips",
    "truncated": "corrupt or truncated Parquet file (",
    "no-end-magic": "corrupt or truncated Parquet file (",
    "bad-footer": "corrupt or truncated Parquet file (",
    "zero-bytes": "not a Parquet file (expected the PAR1 magic bytes)",
    "not-parquet": "not a Parquet file (expected the PAR1 magic bytes)",
    "missing-columns": "not a yellow/green TLC trip layout from 2016-07 on. "
    "Expected column(s): PULocationID, extra. Found: VendorID,",
    "case-duplicates": "columns 'Airport_fee' and 'AIRPORT_FEE' differ only in case",
    "duplicate-slice": "both hold yellow trips for 2025-02: curating both would count the "
    "month twice; keep one if it is a copy, or merge them into one file if each holds a part",
    "colon-in-name": "Hadoop cannot open a file name containing ':'; rename it",
    "underscore-name": "Spark reads no file whose name starts with '.' or '_' (hidden); rename it",
    "dot-name": "Spark reads no file whose name starts with '.' or '_' (hidden); rename it",
    "fifo": "not a regular file; expected a Parquet file",
    "other-service": "the name says yellow trips but the columns are green's "
    "(lpep_pickup_datetime); expected the trips the name says: rename or replace the file",
    "spark-dataset": "a directory (as Spark writes a dataset, of part files); expected one "
    "Parquet file per service and month: merge its files into one",
    "io-error": "cannot read the file: Input/output error",
    "chmod-000": "cannot read the file: Permission denied",
    "zoned-timestamps": "column tpep_pickup_datetime holds instants in time zone "
    "America/New_York, which Spark would read shifted to UTC; expected TLC wall-clock times",
    "date-times": "column tpep_dropoff_datetime is of type date32[day]; expected timestamps "
    "(TLC wall-clock date and time of day): a date alone would put every trip at midnight, a "
    "time alone has no date",
    "time-of-day-times": "column tpep_pickup_datetime is of type time64[us]; expected "
    "timestamps (TLC wall-clock date and time of day): a date alone would put every trip at "
    "midnight, a time alone has no date",
    "integer-times": "column tpep_pickup_datetime is of type int64; expected timestamps "
    "(TLC wall-clock date and time of day): a number or duration has no epoch or unit",
    "duration-times": "column tpep_dropoff_datetime is of type duration[us]; expected timestamps "
    "(TLC wall-clock date and time of day): a number or duration has no epoch or unit",
    "brotli": "column fare_amount is stored with BROTLI, which Spark cannot read; expected "
    "SNAPPY, GZIP, ZSTD, LZ4 or no compression and PLAIN, dictionary or DELTA encodings: "
    "rewrite the file with pyarrow's defaults",
    "byte-stream-split": "column tip_amount is stored with BYTE_STREAM_SPLIT, which Spark cannot "
    "read; expected SNAPPY, GZIP, ZSTD, LZ4 or no compression and PLAIN, dictionary or DELTA "
    "encodings: rewrite the file with pyarrow's defaults",
    "duplicate-columns": "column 'fare_amount' appears twice; expected each column once",
    "reserved-column": "column '_metadata' has a name Spark and ChillFlow reserve",
}


@pytest.mark.parametrize("kind", REFUSED)
def test_unusable_files_are_refused_before_spark_starts(kind, tmp_path):
    if kind == "chmod-000" and os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000; the io-error case covers a failing read")
    if kind == "io-error" and not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux /proc/self/mem for a file whose read fails")
    landing = refused_file(kind, tmp_path)

    started = time.monotonic()
    with pytest.raises(SchemaError) as raised:
        find_raw_files(landing)

    assert time.monotonic() - started < 1.0
    message = str(raised.value)
    assert message.startswith(str(landing)), message
    assert REFUSED[kind] in message
    if kind == "duplicate-slice":
        assert f"{landing / 'yellow_tripdata_2025-02 (1).parquet'} and {landing / FEB}" in message


def test_a_directory_yields_parquet_files_whatever_the_case_of_their_extension(tmp_path):
    yellow = write_yellow(tmp_path / FEB, good("2025-02", 2))
    green = [as_green(row) for row in good("2025-02", 2)]
    write_rows(tmp_path / "GREEN_TRIPDATA_2025-02.PARQUET", green, GREEN_2025)
    (tmp_path / f"{FEB}.part").write_bytes(b"PAR1")

    found = find_raw_files(tmp_path)

    assert [f.path.name for f in found] == ["GREEN_TRIPDATA_2025-02.PARQUET", yellow.name]


def test_part_files_of_one_month_are_refused_with_a_way_to_merge_them(tmp_path):
    dataset = refused_file("spark-dataset", tmp_path) / FEB

    with pytest.raises(SchemaError) as raised:
        find_raw_files(dataset, month="2025-02")

    assert str(raised.value) == (
        f"{dataset / 'part-00000-c0.snappy.parquet'} and {dataset / 'part-00001-c0.snappy.parquet'}"
        " both hold yellow trips for 2025-02: curating both would count the month twice; keep "
        "one if it is a copy, or merge them into one file if each holds a part"
    )


@pytest.fixture(scope="module")
def february(spark, base_settings, tmp_path_factory):
    """A lake whose yellow 2025-02 month is curated, and a way to read that month back."""
    root = tmp_path_factory.mktemp("february")
    settings = lake_settings(base_settings, root / "lake")
    curate(spark, settings, write_yellow(root / "raw" / FEB, good("2025-02", 4)))

    def snapshot():
        history = spark.sql(f"DESCRIBE HISTORY delta.`{settings.tables.curated}`")
        rows = read_table(spark, settings.tables.curated).drop("dq_warnings").collect()
        return history.agg({"version": "max"}).first()[0], sorted(map(tuple, rows))

    return settings, snapshot


@pytest.mark.parametrize("kind", ["empty", "duplicate-slice", "truncated", "missing-columns"])
def test_the_cli_refuses_in_one_line_and_leaves_the_month_alone(kind, february, tmp_path):
    settings, snapshot = february
    before = snapshot()
    landing = refused_file(kind, tmp_path)
    env = {
        **os.environ,
        "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
        "CHILLFLOW_LAKE_DIR": str(settings.lake_dir),
        "LOG_LEVEL": "INFO",
    }

    started = time.monotonic()
    done = run_chillflow("curate", "month", str(landing), "--json", env=env)

    elapsed = time.monotonic() - started
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 3, done.stderr[-2000:]
    assert len(errors) == 1 and REFUSED[kind] in errors[0]
    assert "Traceback" not in done.stderr and "SparkSession" not in done.stderr
    assert done.stdout == ""
    assert snapshot() == before
    print(f"{kind}: refused in {elapsed:.1f} s")


def test_rows_of_another_month_fail_the_run_and_leave_the_month_alone(spark, february, tmp_path):
    settings, snapshot = february
    before = snapshot()
    march_rows = write_yellow(tmp_path / FEB, good("2025-03", 3) + good("2025-02", 1))

    with pytest.raises(DataQualityError, match="pickup_in_file_month"):
        curate(spark, settings, march_rows)

    assert snapshot() == before


def test_a_stale_hadoop_checksum_is_named_as_the_cause(spark, tmp_path):
    raw = write_yellow(tmp_path / FEB, good("2025-02", 3))
    # Hadoop's local file system checks NAME against .NAME.crc (CRC32 of every 512 bytes);
    # this one was computed for an earlier version of the file.
    earlier = raw.read_bytes()
    chunks = [earlier[i : i + 512] for i in range(0, len(earlier), 512)]
    crcs = b"".join(struct.pack(">I", zlib.crc32(chunk)) for chunk in chunks)
    (tmp_path / f".{FEB}.crc").write_bytes(b"crc\0" + struct.pack(">i", 512) + crcs)
    write_yellow(raw, good("2025-02", 4))
    (found,) = find_raw_files(raw)

    with pytest.raises(SchemaError) as raised:
        read_raw_file(spark, found)

    message = str(raised.value)
    assert message.startswith(f"{raw}: Spark cannot read this Parquet file: ")
    assert "org.apache.hadoop.fs.ChecksumException: Checksum error: " in message
    assert message.endswith(
        f"if the file was replaced, delete .{FEB}.crc, its stale Hadoop checksum"
    )


def test_a_file_whose_pages_spark_cannot_decode_is_named_with_the_cause(spark, february, tmp_path):
    settings, snapshot = february
    before = snapshot()
    raw = write_yellow(tmp_path / "odd name [1].parquet", good("2025-02", 3))
    # The footer stays intact (vetting passes); the header of fare_amount's data page does not.
    page = pq.ParquetFile(raw).metadata.row_group(0).column(10).data_page_offset
    data = bytearray(raw.read_bytes())
    data[page : page + 8] = b"\xff" * 8
    raw.write_bytes(data)

    with pytest.raises(SchemaError) as raised:
        curate(spark, settings, raw, month="2025-02")

    message = str(raised.value)
    assert message.startswith(f"{raw}: Spark cannot read this Parquet file: "), message
    assert "PageHeader" in message
    assert message.endswith("expected an intact file: copy or download it again")
    assert snapshot() == before
