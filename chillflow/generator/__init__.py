"""Deterministic generator of realistic NYC TLC monthly trip files (yellow 2025, green 2021).

Rows are drawn in blocks of ``_BLOCK_ROWS`` seeded by ``(seed, block index)``, so the data depends
only on the arguments that define it, never on the row-group size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chillflow.errors import ConfigError
from chillflow.generator import draws
from chillflow.generator.nyc import PROFILES, calendar
from chillflow.sections import check_number
from chillflow.settings import parse_month, parse_service

_BLOCK_ROWS = 500_000
_TYPES = {"f64": pa.float64(), "i64": pa.int64(), "i32": pa.int32(), "str": pa.string(),
          "us": pa.timestamp("us"), "null": pa.null()}  # fmt: skip
_FARE = "fare_amount extra mta_tax tip_amount tolls_amount"
_FEES = "improvement_surcharge total_amount"
#: Per service, the file's columns as ``name[=generated field]:type``.
_COLUMNS = {
    "yellow": "VendorID=vendor_id:i32 tpep_pickup_datetime=pickup_ts:us "
    "tpep_dropoff_datetime=dropoff_ts:us passenger_count:i64 trip_distance:f64 "
    "RatecodeID=ratecode:i64 store_and_fwd_flag:str PULocationID=pu_zone:i32 "
    f"DOLocationID=do_zone:i32 payment_type:i64 {_FARE} {_FEES} congestion_surcharge "
    "Airport_fee=airport_fee cbd_congestion_fee",
    "green": "VendorID=vendor_id:i64 lpep_pickup_datetime=pickup_ts:us "
    "lpep_dropoff_datetime=dropoff_ts:us store_and_fwd_flag:str RatecodeID=ratecode "
    f"PULocationID=pu_zone:i64 DOLocationID=do_zone:i64 passenger_count trip_distance {_FARE} "
    f"ehail_fee:null {_FEES} payment_type trip_type congestion_surcharge",
}
#: Per service: (name in the file, generated field, Arrow type); the type defaults to double.
_LAYOUTS = {
    service: tuple(
        (name.partition("=")[0], name.partition("=")[2] or name, _TYPES[dtype or "f64"])
        for name, _, dtype in (word.partition(":") for word in columns.split())
    )
    for service, columns in _COLUMNS.items()
}


def generate_trips_table(
    *,
    service: str = "yellow",
    month: str = "2025-01",
    rows: int = 1000,
    seed: int = 42,
    dirty_rate: float = 0.025,
) -> pa.Table:
    """Generate a month of trips in memory: the rows :func:`generate_month` writes."""
    spec = _make_spec(service, month, rows, seed, dirty_rate)
    return pa.concat_tables(_blocks(spec, service)) if rows else _schema(service).empty_table()


def generate_month(
    path: Path,
    *,
    service: str = "yellow",
    month: str = "2025-01",
    rows: int = 100_000,
    seed: int = 42,
    dirty_rate: float = 0.025,
    row_group_rows: int = 500_000,
) -> Path:
    """Write one TLC-style monthly Parquet file atomically, a block of rows at a time.

    ``dirty_rate`` is the fraction of rows breaking a data-quality rule; ``row_group_rows`` does
    not change the data.

    Raises:
        ConfigError: If an argument is invalid.
    """
    spec = _make_spec(service, month, rows, seed, dirty_rate)
    check_number("row_group_rows", row_group_rows, integer=True, positive=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with pq.ParquetWriter(partial, _schema(service), compression="snappy") as writer:
            pending = _schema(service).empty_table()
            for block in _blocks(spec, service):
                pending = pa.concat_tables([pending, block])
                whole = pending.num_rows - pending.num_rows % row_group_rows
                if whole:
                    writer.write_table(pending.slice(0, whole), row_group_size=row_group_rows)
                pending = pending.slice(whole)
            if pending.num_rows:
                writer.write_table(pending, row_group_size=row_group_rows)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _make_spec(service: str, month: str, rows: int, seed: int, dirty_rate: float) -> draws.Spec:
    parse_service(service)
    check_number("rows", rows, integer=True)
    check_number("seed", seed, integer=True)
    if not 0.0 <= dirty_rate <= 1.0:
        raise ConfigError(f"dirty_rate must be between 0 and 1, got {dirty_rate!r}")
    fields = frozenset(field for _, field, _ in _LAYOUTS[service])
    month_ = calendar(parse_month(month))
    return draws.Spec(fields, PROFILES[service], month_, rows, seed, float(dirty_rate))


def _schema(service: str) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, _, dtype in _LAYOUTS[service]])


def _blocks(spec: draws.Spec, service: str) -> Iterator[pa.Table]:
    for start in range(0, spec.rows, _BLOCK_ROWS):
        n = min(_BLOCK_ROWS, spec.rows - start)
        rng = np.random.default_rng([spec.seed, start // _BLOCK_ROWS])
        cols: dict[str, np.ndarray] = {}
        nulls: dict[str, np.ndarray] = {}
        draws.draw_trips(rng, spec, start, n, cols)
        draws.draw_codes(rng, spec.profile, n, cols, nulls)
        draws.draw_amounts(rng, spec, n, cols)
        draws.apply_dirt(rng, spec, n, cols, nulls)
        yield pa.Table.from_arrays(
            [_array(cols, nulls, field, dtype, n) for _, field, dtype in _LAYOUTS[service]],
            schema=_schema(service),
        )


def _array(cols: dict, nulls: dict, field: str, dtype: pa.DataType, n: int) -> pa.Array:
    if pa.types.is_null(dtype):
        return pa.nulls(n)
    values, mask = cols[field], nulls.get(field)
    if mask is not None and not mask.any():
        mask = None
    if pa.types.is_string(dtype):  # store_and_fwd_flag: the draws are indexes
        return pa.array(["N", "Y"], type=dtype).take(pa.array(values, mask=mask))
    if pa.types.is_timestamp(dtype):  # epoch seconds
        return pa.array(values * 1_000_000, type=dtype, mask=mask)
    return pa.array(values.astype(dtype.to_pandas_dtype()), type=dtype, mask=mask)
