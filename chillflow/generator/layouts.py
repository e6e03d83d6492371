"""The file layouts of each TLC vintage: column names, Arrow types, vocabularies, dirt kinds."""

from __future__ import annotations

import dataclasses

import pyarrow as pa

#: Kinds of dirty rows and their relative frequency.
DIRT_WEIGHTS = {
    "dropoff_not_after_pickup": 0.20,
    "absurd_speed": 0.10,
    "negative_amount": 0.20,
    "null_pickup_zone": 0.10,
    "null_pickup_time": 0.05,
    "zone_out_of_range": 0.10,
    "pickup_outside_month": 0.15,
    "very_long": 0.10,
}
FEES = ("congestion_surcharge", "airport_fee", "cbd_congestion_fee")
AMOUNTS = (
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    *FEES,
)
#: The values of string columns; the generator draws indexes into them.
VOCABULARIES = {
    "store_and_fwd_flag": ("N", "Y"),
    "dispatching_base_num": (
        "B00013", "B00037", "B00111", "B00254", "B00310", "B01145", "B01231", "B01745",
        "B02510", "B02764", "B02800", "B02875", "B03016", "B03160", "B03404",
    ),
}  # fmt: skip
VOCABULARIES["affiliated_base_number"] = VOCABULARIES["dispatching_base_num"]


@dataclasses.dataclass(frozen=True)
class Layout:
    """The columns of one file layout: (name in the file, generated field, Arrow type)."""

    profile: str
    columns: tuple[tuple[str, str, pa.DataType], ...]
    dirt: tuple[str, ...] = tuple(DIRT_WEIGHTS)

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of files with this layout."""
        return pa.schema([pa.field(name, dtype) for name, _, dtype in self.columns])

    @property
    def fields(self) -> frozenset[str]:
        """The generated fields that appear in files with this layout."""
        return frozenset(field for _, field, _ in self.columns)


_F64, _I64, _I32, _STR = pa.float64(), pa.int64(), pa.int32(), pa.string()
_US, _NS = pa.timestamp("us"), pa.timestamp("ns")
_METERED = (*AMOUNTS[:6], "total_amount")
_CONGESTION = ("congestion_surcharge", "congestion_surcharge")
_FEES_2025 = (_CONGESTION, ("Airport_fee", "airport_fee"), ("cbd_congestion_fee",) * 2)


def _tpep(
    *,
    timestamps: pa.DataType,
    ids: pa.DataType,
    codes: pa.DataType,
    payment: pa.DataType,
    fees: tuple[tuple[str, str], ...],
) -> Layout:
    """Yellow columns since 2016-07, with the vintage's types and trailing fee columns."""
    return Layout(
        "yellow",
        (
            ("VendorID", "vendor_id", ids),
            ("tpep_pickup_datetime", "pickup_ts", timestamps),
            ("tpep_dropoff_datetime", "dropoff_ts", timestamps),
            ("passenger_count", "passenger_count", codes),
            ("trip_distance", "trip_distance", _F64),
            ("RatecodeID", "ratecode", codes),
            ("store_and_fwd_flag", "store_and_fwd_flag", _STR),
            ("PULocationID", "pu_zone", ids),
            ("DOLocationID", "do_zone", ids),
            ("payment_type", "payment_type", payment),
            *((name, name, _F64) for name in _METERED),
            *((name, field, _F64) for name, field in fees),
        ),
    )


LAYOUTS = {
    "yellow/current": _tpep(timestamps=_US, ids=_I32, codes=_I64, payment=_I64, fees=_FEES_2025),
    "yellow/pandas_ns": _tpep(timestamps=_NS, ids=_I32, codes=_F64, payment=_I64, fees=_FEES_2025),
    "yellow/legacy_2019": _tpep(
        timestamps=_US, ids=_I64, codes=_F64, payment=_F64, fees=(_CONGESTION,)
    ),
    "yellow/lowercase_airport": _tpep(
        timestamps=_US, ids=_I64, codes=_F64, payment=_I64, fees=(_CONGESTION, ("airport_fee",) * 2)
    ),
    "yellow/pre2016": Layout(
        "yellow",
        (
            ("VendorID", "vendor_id", _I64),
            ("tpep_pickup_datetime", "pickup_ts", _US),
            ("tpep_dropoff_datetime", "dropoff_ts", _US),
            ("passenger_count", "passenger_count", _I64),
            ("trip_distance", "trip_distance", _F64),
            ("pickup_longitude", "pickup_longitude", _F64),
            ("pickup_latitude", "pickup_latitude", _F64),
            ("RateCodeID", "ratecode", _I64),
            ("store_and_fwd_flag", "store_and_fwd_flag", _STR),
            ("dropoff_longitude", "dropoff_longitude", _F64),
            ("dropoff_latitude", "dropoff_latitude", _F64),
            ("payment_type", "payment_type", _I64),
            *((name, name, _F64) for name in _METERED),
        ),
    ),
    "green/current": Layout(
        "green",
        (
            ("VendorID", "vendor_id", _I64),
            ("lpep_pickup_datetime", "pickup_ts", _US),
            ("lpep_dropoff_datetime", "dropoff_ts", _US),
            ("store_and_fwd_flag", "store_and_fwd_flag", _STR),
            ("RatecodeID", "ratecode", _F64),
            ("PULocationID", "pu_zone", _I64),
            ("DOLocationID", "do_zone", _I64),
            ("passenger_count", "passenger_count", _F64),
            ("trip_distance", "trip_distance", _F64),
            *((name, name, _F64) for name in _METERED[:5]),
            ("ehail_fee", "ehail_fee", pa.null()),
            *((name, name, _F64) for name in _METERED[5:]),
            ("payment_type", "payment_type", _F64),
            ("trip_type", "trip_type", _F64),
            ("congestion_surcharge", "congestion_surcharge", _F64),
        ),
    ),
    "fhv": Layout(
        "fhv",
        (
            ("dispatching_base_num", "dispatching_base_num", _STR),
            ("pickup_datetime", "pickup_ts", _US),
            ("dropOff_datetime", "dropoff_ts", _US),
            ("PUlocationID", "pu_zone", _F64),
            ("DOlocationID", "do_zone", _F64),
            ("SR_Flag", "sr_flag", _I32),
            ("Affiliated_base_number", "affiliated_base_number", _STR),
        ),
        # FHV files have no fares to refund and no speed to check.
        dirt=tuple(
            kind for kind in DIRT_WEIGHTS if kind not in ("absurd_speed", "negative_amount")
        ),
    ),
}
