"""Older TLC file layouts, made from a generated yellow 2025 table with pyarrow.

``pandas_ns``: rewritten by pandas (ns timestamps, double passenger_count/RatecodeID);
``legacy_2019``: no airport or CBD fee, int64/double codes; ``lowercase_airport``: 2023 with
``airport_fee``; ``pre2016``: latitude/longitude instead of zone ids; ``fhv``: an FHV file.
Fees a layout lacks are taken out of ``total_amount``, as its vintage did not charge them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chillflow.generator import generate_trips_table

LAYOUTS = ("pandas_ns", "legacy_2019", "lowercase_airport", "pre2016", "fhv")
F64, I64, NS = pa.float64(), pa.int64(), pa.timestamp("ns")
FEES = ("congestion_surcharge", "Airport_fee", "cbd_congestion_fee")
TYPES = {
    "pandas_ns": {"tpep_pickup_datetime": NS, "tpep_dropoff_datetime": NS,
                  "passenger_count": F64, "RatecodeID": F64},
    "legacy_2019": {"VendorID": I64, "passenger_count": F64, "RatecodeID": F64,
                    "PULocationID": I64, "DOLocationID": I64, "payment_type": F64},
    "lowercase_airport": {"VendorID": I64, "passenger_count": F64, "RatecodeID": F64,
                          "PULocationID": I64, "DOLocationID": I64},
    "pre2016": {"VendorID": I64},
}  # fmt: skip
DROPPED = {"legacy_2019": FEES[1:], "lowercase_airport": FEES[2:], "pre2016": FEES}


def tlc_layout(table: pa.Table, layout: str) -> pa.Table:
    """Return a generated yellow ``table`` in an older ``layout``."""
    if layout == "fhv":
        return _fhv(table)
    total = table["total_amount"]
    for fee in DROPPED.get(layout, ()):
        total = pc.subtract(total, pc.fill_null(table[fee], 0.0))
    table = table.set_column(table.schema.get_field_index("total_amount"), "total_amount",
                             pc.round(total, 2))  # fmt: skip
    table = table.drop_columns(list(DROPPED.get(layout, ())))
    for name, dtype in TYPES.get(layout, {}).items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table[name].cast(dtype))
    if layout == "lowercase_airport":
        table = table.rename_columns(
            ["airport_fee" if n == "Airport_fee" else n for n in table.column_names]
        )
    if layout == "pre2016":
        table = _with_coordinates(table)
    return table


def write_layout(path: Path, layout: str, **generate) -> Path:
    """Write a generated month (``generate_trips_table`` arguments) in ``layout`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(tlc_layout(generate_trips_table(**generate), layout), path)
    return path


def _with_coordinates(table: pa.Table) -> pa.Table:
    """Zone ids replaced by coordinates in New York, ``RateCodeID`` as files before 2016 had."""
    rng = np.random.default_rng(table.num_rows)
    coordinate = {
        f"{end}_{axis}": pa.array(rng.uniform(low, high, table.num_rows))
        for end in ("pickup", "dropoff")
        for axis, low, high in (("longitude", -74.05, -73.75), ("latitude", 40.55, 40.9))
    }
    names = ["VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "passenger_count",
             "trip_distance", "pickup_longitude", "pickup_latitude", "RatecodeID",
             "store_and_fwd_flag", "dropoff_longitude", "dropoff_latitude", "payment_type",
             "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount",
             "improvement_surcharge", "total_amount"]  # fmt: skip
    columns = [coordinate[name] if name in coordinate else table[name] for name in names]
    return pa.table(columns, names=[n.replace("RatecodeID", "RateCodeID") for n in names])


def _fhv(table: pa.Table) -> pa.Table:
    """An FHV file of the same trips: base licences instead of fares."""
    bases = pc.binary_join_element_wise("B0", pc.cast(table["VendorID"], pa.string()), "")
    sr_flag = pa.array(
        np.ones(table.num_rows, dtype=np.int32), mask=np.arange(table.num_rows) % 30 > 0
    )
    return pa.table(
        {
            "dispatching_base_num": bases,
            "pickup_datetime": table["tpep_pickup_datetime"],
            "dropOff_datetime": table["tpep_dropoff_datetime"],
            "PUlocationID": table["PULocationID"].cast(F64),
            "DOlocationID": table["DOLocationID"].cast(F64),
            "SR_Flag": sr_flag,
            "Affiliated_base_number": bases,
        }
    )
