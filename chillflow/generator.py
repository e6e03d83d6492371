"""Deterministic generator of realistic NYC TLC monthly trip files.

Benchmarks and tests need TLC-like months of any size without downloading them. The rows follow
the shapes of the real files (time-of-day profile, skewed zones, lognormal distances, fares that
add up) and carry a controlled share of dirty rows of the kinds real files contain. Layout
variants reproduce the column names and type drift between TLC vintages.

Rows are drawn in fixed blocks of ``_BLOCK_ROWS`` whose random stream is derived from
``(seed, block index)``, so the data depends only on the arguments that define it and never on
the Parquet row-group size. Pickups are stratified over the month, so a file is roughly ordered
by pickup time like the published ones.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chillflow.errors import ConfigError
from chillflow.settings import parse_month

#: Supported file layouts; see :func:`generate_month`.
VARIANTS: tuple[str, ...] = (
    "current",
    "pandas_ns",
    "legacy_2019",
    "lowercase_airport",
    "pre2016",
    "fhv",
)
#: Supported services (the ``{service}_tripdata_`` prefix of TLC file names).
SERVICES: tuple[str, ...] = ("yellow", "green", "fhv")

_BLOCK_ROWS = 500_000
_SECONDS_PER_DAY = 86_400
_KM_PER_MILE = 1.609344
_PICKUP_JITTER_S = 120
_NULL_BLOCK_RATE = 0.01
_SECOND_DIRT_RATE = 0.1
_MAX_CLEAN_MILES = 45.0
_MAX_CLEAN_DURATION_S = 4 * 3600
_CBD_FEE = 0.75
# The Manhattan congestion relief zone toll started on this day, not on the first of the month.
_CBD_START_S = int(np.datetime64("2025-01-05", "s").astype(np.int64))
_STRAY_DAYS_S = (
    int(np.datetime64("2008-12-31", "s").astype(np.int64)),
    int(np.datetime64("2009-01-01", "s").astype(np.int64)),
)
_STRAY_YEAR = 2088

_JFK, _LGA, _EWR = 132, 138, 1
_AIRPORTS = (_JFK, _LGA)
_OUT_OF_RANGE_ZONES = (0, 266, 300, 999)
_TIMESTAMP_SCALE = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

# Zone ids by borough, from the TLC taxi zone lookup; 264 and 265 are "Unknown".
_MANHATTAN = (
    4, 12, 13, 24, 41, 42, 43, 45, 48, 50, 68, 74, 75, 79, 87, 88, 90, 100, 103, 104, 105, 107,
    113, 114, 116, 120, 125, 127, 128, 137, 140, 141, 142, 143, 144, 148, 151, 152, 153, 158,
    161, 162, 163, 164, 166, 170, 186, 194, 202, 209, 211, 224, 229, 230, 231, 232, 233, 234,
    236, 237, 238, 239, 243, 244, 246, 249, 261, 262, 263,
)  # fmt: skip
_UPPER_MANHATTAN = (24, 41, 42, 74, 75, 116, 120, 127, 128, 151, 152, 153, 166, 194, 243, 244)
_BROOKLYN = (
    11, 14, 17, 21, 22, 25, 26, 29, 33, 34, 35, 36, 37, 39, 40, 49, 52, 54, 55, 61, 62, 63, 65,
    66, 67, 71, 72, 76, 77, 80, 85, 89, 91, 97, 106, 108, 111, 112, 123, 133, 149, 150, 154,
    155, 165, 177, 178, 181, 188, 189, 190, 195, 210, 217, 222, 225, 227, 228, 255, 256, 257,
)  # fmt: skip
_QUEENS = (
    2, 7, 8, 9, 10, 15, 16, 19, 27, 28, 30, 38, 53, 56, 57, 64, 70, 73, 82, 83, 86, 92, 93, 95,
    96, 98, 101, 102, 117, 121, 122, 124, 129, 130, 131, 132, 134, 135, 138, 139, 145, 146, 157,
    160, 171, 173, 175, 179, 180, 191, 192, 193, 196, 197, 198, 201, 203, 205, 207, 215, 216,
    218, 219, 223, 226, 252, 253, 258, 260,
)  # fmt: skip
_BRONX = (
    3, 18, 20, 31, 32, 46, 47, 51, 58, 59, 60, 69, 78, 81, 94, 119, 126, 136, 147, 159, 167,
    168, 169, 174, 182, 183, 184, 185, 199, 200, 208, 212, 213, 220, 235, 240, 241, 242, 247,
    248, 250, 254, 259,
)  # fmt: skip
_STATEN_ISLAND = (
    5, 6, 23, 44, 84, 99, 109, 110, 115, 118, 156, 172, 176, 187, 204, 206, 214, 221, 245, 251,
)  # fmt: skip
# Manhattan below 60th Street: the congestion relief zone that pays cbd_congestion_fee.
_CBD = (
    4, 12, 13, 45, 48, 50, 68, 79, 87, 88, 90, 100, 103, 104, 105, 107, 113, 114, 125, 137, 144,
    148, 158, 161, 162, 163, 164, 170, 186, 209, 211, 224, 229, 230, 231, 232, 233, 234, 246,
    249, 261,
)  # fmt: skip

# Zone classes: what a zone's demand and distances look like.
_UNKNOWN, _NEWARK, _CORE, _UPPER, _BK, _QN, _BX, _SI = range(8)
_CLASS_OF_BOROUGH = (
    (_MANHATTAN, _CORE),
    (_UPPER_MANHATTAN, _UPPER),
    (_BROOKLYN, _BK),
    (_QUEENS, _QN),
    (_BRONX, _BX),
    (_STATEN_ISLAND, _SI),
    ((_EWR,), _NEWARK),
)
# (latitude, longitude, spread in degrees) of each class, for the pre-2016 coordinate layout.
_CLASS_CENTRES = {
    _UNKNOWN: (40.75, -73.97, 0.05),
    _NEWARK: (40.6895, -74.1745, 0.004),
    _CORE: (40.750, -73.985, 0.018),
    _UPPER: (40.820, -73.945, 0.015),
    _BK: (40.665, -73.950, 0.035),
    _QN: (40.730, -73.820, 0.045),
    _BX: (40.845, -73.880, 0.025),
    _SI: (40.580, -74.150, 0.030),
}
_AIRPORT_CENTRES = {_JFK: (40.6413, -73.7781, 0.006), _LGA: (40.7769, -73.8740, 0.004)}

# Relative pickup intensity per hour of day: night low, morning and evening peaks.
_WEEKDAY_HOURS = (
    1.6, 0.9, 0.55, 0.4, 0.4, 0.6, 1.5, 2.9, 3.9, 4.1, 4.0, 4.2,
    4.5, 4.6, 4.9, 5.1, 5.3, 5.9, 6.2, 5.6, 4.8, 4.6, 4.3, 3.0,
)  # fmt: skip
_WEEKEND_HOURS = (
    3.4, 2.7, 2.0, 1.4, 0.9, 0.6, 0.6, 0.9, 1.4, 2.2, 3.0, 3.7,
    4.1, 4.3, 4.4, 4.5, 4.6, 4.8, 4.9, 4.7, 4.3, 4.1, 4.0, 3.7,
)  # fmt: skip
_DAY_OF_WEEK_WEIGHTS = (0.92, 1.0, 1.05, 1.1, 1.08, 1.0, 0.85)  # Monday first

_DIRT_WEIGHTS = {
    "dropoff_not_after_pickup": 0.20,
    "absurd_speed": 0.10,
    "negative_amount": 0.20,
    "null_pickup_zone": 0.10,
    "null_pickup_time": 0.05,
    "zone_out_of_range": 0.10,
    "pickup_outside_month": 0.15,
    "very_long": 0.10,
}
_FHV_DIRT = (
    "dropoff_not_after_pickup",
    "null_pickup_zone",
    "null_pickup_time",
    "zone_out_of_range",
    "pickup_outside_month",
    "very_long",
)

_FEES = ("congestion_surcharge", "airport_fee", "cbd_congestion_fee")
_AMOUNTS = (
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    *_FEES,
)
_VOCABULARIES = {
    "store_and_fwd_flag": ("N", "Y"),
    "dispatching_base_num": (
        "B00013", "B00037", "B00111", "B00254", "B00310", "B01145", "B01231", "B01745",
        "B02510", "B02764", "B02800", "B02875", "B03016", "B03160", "B03404",
    ),
}  # fmt: skip
_VOCABULARIES["affiliated_base_number"] = _VOCABULARIES["dispatching_base_num"]


@dataclasses.dataclass(frozen=True)
class _Profile:
    """What one service's trips look like, apart from the file layout."""

    vendors: tuple[int, ...]
    vendor_weights: tuple[float, ...]
    pickup_zone_weights: np.ndarray
    dropoff_zone_weights: np.ndarray
    # Share of trips (not from an airport) that stay in the pickup's borough.
    local_share: float
    payment_types: tuple[int, ...]
    payment_weights: tuple[float, ...]
    # payment_type of the null-block rows; None where the TLC leaves it null (green).
    null_block_payment_type: int | None
    null_block_rate: float
    night_extra: float
    rush_extra: float
    improvement_surcharge: float
    congestion_surcharge: float
    airport_fee: float
    jfk_flat_share: float
    jfk_flat_fare: float
    nassau_share: float
    negotiated_share: float


@dataclasses.dataclass(frozen=True)
class _Layout:
    """The columns of one file layout: (name in the file, generated field, Arrow type)."""

    profile: str
    columns: tuple[tuple[str, str, pa.DataType], ...]
    dirt: tuple[str, ...] = tuple(_DIRT_WEIGHTS)

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of files with this layout."""
        return pa.schema([pa.field(name, dtype) for name, _, dtype in self.columns])

    @property
    def fields(self) -> frozenset[str]:
        """The generated fields that appear in files with this layout."""
        return frozenset(field for _, field, _ in self.columns)


@dataclasses.dataclass(frozen=True)
class _Month:
    """A calendar month and the cumulative pickup intensity over its hours."""

    start_s: int
    end_s: int
    start_2088_s: int
    cdf: np.ndarray
    edges_s: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Everything that defines the rows of one generated file."""

    layout: _Layout
    profile: _Profile
    month: _Month
    rows: int
    seed: int
    dirty_rate: float


def tlc_file_name(service: str, month: str) -> str:
    """Return the TLC file name of a service's month, e.g. ``yellow_tripdata_2025-01.parquet``.

    Raises:
        ConfigError: If the service or month is invalid.
    """
    _check_service(service)
    return f"{service}_tripdata_{parse_month(month)}.parquet"


def generate_trips_table(
    *,
    service: str = "yellow",
    month: str = "2025-01",
    rows: int = 1000,
    seed: int = 42,
    dirty_rate: float = 0.025,
    variant: str = "current",
) -> pa.Table:
    """Generate a month of trips in memory; the same rows :func:`generate_month` writes.

    Args:
        service: ``yellow``, ``green`` or ``fhv``.
        month: The month of the pickups, ``YYYY-MM``.
        rows: Number of rows.
        seed: Non-negative seed; the same arguments always give the same rows.
        dirty_rate: Fraction of rows that break at least one data-quality rule.
        variant: File layout, one of :data:`VARIANTS`.

    Returns:
        The rows with the layout's schema.

    Raises:
        ConfigError: If an argument is invalid.
    """
    spec = _make_spec(service, month, rows, seed, dirty_rate, variant)
    tables = list(_generate_blocks(spec))
    if not tables:
        return spec.layout.schema.empty_table()
    return pa.concat_tables(tables)


def generate_month(
    path: Path,
    *,
    service: str = "yellow",
    month: str = "2025-01",
    rows: int = 100_000,
    seed: int = 42,
    dirty_rate: float = 0.025,
    variant: str = "current",
    row_group_rows: int = 500_000,
) -> Path:
    """Write one TLC-style monthly Parquet file.

    Rows are generated and written a block at a time, so memory stays flat whatever ``rows``
    (about one block plus one row group). The file appears atomically: it is written under a
    hidden temporary name and renamed.

    Layouts (``variant``): ``current`` is yellow 2025 as published (int32 ids, µs timestamps,
    ``Airport_fee``, ``cbd_congestion_fee``); ``pandas_ns`` the same rewritten by pandas (ns
    timestamps, double passenger_count/RatecodeID); ``legacy_2019`` has neither airport nor CBD
    fee and int64/double codes; ``lowercase_airport`` is 2023 with ``airport_fee``; ``pre2016``
    has latitude/longitude instead of zone ids. For ``service="green"`` only ``current`` (the
    2021 LPEP layout) exists. ``fhv`` (or ``service="fhv"``) writes an FHV file.

    Args:
        path: The file to write; parent directories are created.
        service: ``yellow``, ``green`` or ``fhv``.
        month: The month of the pickups, ``YYYY-MM``.
        rows: Number of rows.
        seed: Non-negative seed; the same arguments always give the same rows.
        dirty_rate: Fraction of rows that break at least one data-quality rule.
        variant: File layout, one of :data:`VARIANTS`.
        row_group_rows: Rows per Parquet row group; does not change the data.

    Returns:
        ``path``.

    Raises:
        ConfigError: If an argument is invalid.
    """
    spec = _make_spec(service, month, rows, seed, dirty_rate, variant)
    if not isinstance(row_group_rows, int) or row_group_rows < 1:
        raise ConfigError(f"row_group_rows must be a positive integer, got {row_group_rows!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with pq.ParquetWriter(partial, spec.layout.schema, compression="snappy") as writer:
            for table in _row_groups(_generate_blocks(spec), row_group_rows):
                writer.write_table(table, row_group_size=row_group_rows)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _row_groups(blocks: Iterator[pa.Table], row_group_rows: int) -> Iterator[pa.Table]:
    """Re-slice generated blocks into tables of whole row groups (the last may be short)."""
    pending: list[pa.Table] = []
    pending_rows = 0
    for block in blocks:
        pending.append(block)
        pending_rows += block.num_rows
        if pending_rows >= row_group_rows:
            table = pa.concat_tables(pending)
            whole = pending_rows - pending_rows % row_group_rows
            yield table.slice(0, whole)
            rest = table.slice(whole)
            pending, pending_rows = [rest], rest.num_rows
    if pending_rows:
        yield pa.concat_tables(pending)


def _make_spec(
    service: str, month: str, rows: int, seed: int, dirty_rate: float, variant: str
) -> _Spec:
    layout = _layout_of(service, variant)
    if not isinstance(rows, int) or rows < 0:
        raise ConfigError(f"rows must be a non-negative integer, got {rows!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= dirty_rate <= 1.0:
        raise ConfigError(f"dirty_rate must be between 0 and 1, got {dirty_rate!r}")
    return _Spec(
        layout=layout,
        profile=_PROFILES[layout.profile],
        month=_calendar(parse_month(month)),
        rows=rows,
        seed=seed,
        dirty_rate=float(dirty_rate),
    )


def _check_service(service: str) -> None:
    if service not in SERVICES:
        raise ConfigError(f"unknown service {service!r}: expected one of {', '.join(SERVICES)}")


def _layout_of(service: str, variant: str) -> _Layout:
    _check_service(service)
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    key = "fhv" if variant == "fhv" or service == "fhv" else f"{service}/{variant}"
    if key not in _LAYOUTS or (service == "fhv" and variant not in ("current", "fhv")):
        supported = ", ".join(sorted(_LAYOUTS))
        raise ConfigError(
            f"variant {variant!r} does not exist for service {service!r}; supported: {supported}"
        )
    return _LAYOUTS[key]


@lru_cache(maxsize=32)
def _calendar(month: str) -> _Month:
    start = np.datetime64(month, "M")
    start_s = int(start.astype("datetime64[s]").astype(np.int64))
    end_s = int((start + 1).astype("datetime64[s]").astype(np.int64))
    first_day = start_s // _SECONDS_PER_DAY
    days = np.arange(first_day, end_s // _SECONDS_PER_DAY)
    # 1970-01-01, epoch day 0, was a Thursday.
    day_of_week = (days + 3) % 7
    hourly = np.where(
        (day_of_week >= 5)[:, None], np.array(_WEEKEND_HOURS), np.array(_WEEKDAY_HOURS)
    )
    weights = (np.array(_DAY_OF_WEEK_WEIGHTS)[day_of_week][:, None] * hourly).ravel()
    cdf = np.concatenate(([0.0], np.cumsum(weights) / weights.sum()))
    stray_month = np.datetime64(f"{_STRAY_YEAR}{month[4:]}", "M").astype("datetime64[s]")
    return _Month(
        start_s=start_s,
        end_s=end_s,
        start_2088_s=int(stray_month.astype(np.int64)),
        cdf=cdf,
        edges_s=np.arange(weights.size + 1, dtype=np.float64) * 3600.0,
    )


def _generate_blocks(spec: _Spec) -> Iterator[pa.Table]:
    for start in range(0, spec.rows, _BLOCK_ROWS):
        yield _generate_block(spec, start, min(_BLOCK_ROWS, spec.rows - start))


def _generate_block(spec: _Spec, start: int, n: int) -> pa.Table:
    rng = np.random.default_rng([spec.seed, start // _BLOCK_ROWS])
    cols: dict[str, np.ndarray] = {}
    nulls: dict[str, np.ndarray] = {}
    _draw_trips(rng, spec, start, n, cols)
    _draw_codes(rng, spec.profile, n, cols, nulls)
    _draw_amounts(rng, spec, n, cols)
    _apply_dirt(rng, spec, n, cols, nulls)
    if "pickup_longitude" in spec.layout.fields:
        _draw_coordinates(rng, n, cols, nulls)
    if "dispatching_base_num" in spec.layout.fields:
        _draw_fhv_bases(rng, n, cols, nulls)
    return _to_table(spec.layout, n, cols, nulls)


def _draw_trips(
    rng: np.random.Generator, spec: _Spec, start: int, n: int, cols: dict[str, np.ndarray]
) -> None:
    """Pickup time, zones, distance and duration of clean trips."""
    month, profile = spec.month, spec.profile
    # Stratified quantiles of the month's pickup intensity: each block covers its own stretch
    # of the month, so files come out roughly ordered by time like the published ones.
    quantiles = (start + np.arange(n) + rng.random(n)) / spec.rows
    offset_s = np.floor(np.interp(quantiles, month.cdf, month.edges_s)).astype(np.int64)
    offset_s += rng.integers(-_PICKUP_JITTER_S, _PICKUP_JITTER_S + 1, n)
    offset_s = np.clip(offset_s, 0, month.end_s - month.start_s - 1)
    pickup_zone = rng.choice(_ZONE_IDS, n, p=profile.pickup_zone_weights)
    dropoff_zone = _draw_dropoff_zones(rng, profile, pickup_zone, n)
    median_mi, sigma = _distance_shape(pickup_zone, dropoff_zone)
    distance_mi = median_mi * np.exp(sigma * rng.standard_normal(n))
    distance_mi = np.clip(np.round(distance_mi, 2), 0.01, _MAX_CLEAN_MILES)
    speed_kmh = (11.0 + 6.0 * np.log1p(distance_mi)) * np.exp(0.3 * rng.standard_normal(n))
    speed_kmh = np.clip(speed_kmh, 6.0, 70.0)
    driving_s = np.round(distance_mi * _KM_PER_MILE / speed_kmh * 3600.0).astype(np.int64)
    duration_s = np.clip(driving_s + rng.integers(20, 121, n), 60, _MAX_CLEAN_DURATION_S)
    cols.update(
        pickup_ts=month.start_s + offset_s,
        duration_s=duration_s,
        pu_zone=pickup_zone,
        do_zone=dropoff_zone,
        trip_distance=distance_mi,
    )


def _draw_dropoff_zones(
    rng: np.random.Generator, profile: _Profile, pickup_zone: np.ndarray, n: int
) -> np.ndarray:
    """Dropoff zones: city-wide demand, or within the pickup's borough for local trips."""
    dropoff_zone = rng.choice(_ZONE_IDS, n, p=profile.dropoff_zone_weights)
    local = (rng.random(n) < profile.local_share) & ~np.isin(pickup_zone, _AIRPORTS)
    quantiles = rng.random(n)
    pickup_borough = _BOROUGH[pickup_zone]
    for borough in (_CORE, _BK, _QN, _BX, _SI):
        rows = local & (pickup_borough == borough)
        zones = np.flatnonzero(np.equal(_BOROUGH, borough))
        cdf = np.cumsum(profile.dropoff_zone_weights[zones])
        picks = np.searchsorted(cdf / cdf[-1], quantiles[rows], side="right")
        dropoff_zone[rows] = zones[np.minimum(picks, zones.size - 1)]
    return dropoff_zone


def _distance_shape(pickup_zone: np.ndarray, dropoff_zone: np.ndarray) -> tuple[np.ndarray, ...]:
    """Median (miles) and log-spread of the trip distance between two zones."""
    pu_class, do_class = _ZONE_CLASS[pickup_zone], _ZONE_CLASS[dropoff_zone]
    pu_borough, do_borough = _BOROUGH[pickup_zone], _BOROUGH[dropoff_zone]

    def either(zone: int) -> np.ndarray:
        return (pickup_zone == zone) | (dropoff_zone == zone)

    cases = [
        (pickup_zone == dropoff_zone, 0.7, 0.6),
        (either(_JFK), 17.5, 0.18),
        (either(_LGA), 9.5, 0.22),
        (either(_EWR), 17.0, 0.2),
        ((pu_class == _UNKNOWN) | (do_class == _UNKNOWN), 2.0, 1.0),
        ((pu_borough == _CORE) & (do_borough == _CORE), 1.45, 0.55),
        (pu_borough == do_borough, 1.8, 0.7),
    ]
    conditions = [condition for condition, _, _ in cases]
    median = np.select(conditions, [m for _, m, _ in cases], default=4.8)
    sigma = np.select(conditions, [s for _, _, s in cases], default=0.45)
    return median, sigma


def _draw_codes(
    rng: np.random.Generator,
    profile: _Profile,
    n: int,
    cols: dict[str, np.ndarray],
    nulls: dict[str, np.ndarray],
) -> None:
    """Vendor, passengers, rate code, payment type and the valid null block."""
    pu, do = cols["pu_zone"], cols["do_zone"]
    # Real files have ~1% rows (Flex Fare and similar) where these columns are null together.
    null_block = rng.random(n) < profile.null_block_rate
    payment = rng.choice(profile.payment_types, n, p=profile.payment_weights)
    if profile.null_block_payment_type is not None:
        payment = np.where(null_block, profile.null_block_payment_type, payment)
    other_rates = (profile.nassau_share, profile.negotiated_share)
    ratecode = rng.choice((1, 4, 5), n, p=(1.0 - sum(other_rates), *other_rates))
    jfk_manhattan = ((pu == _JFK) & (_BOROUGH[do] == _CORE)) | (
        (do == _JFK) & (_BOROUGH[pu] == _CORE)
    )
    ratecode = np.where(jfk_manhattan & (rng.random(n) < profile.jfk_flat_share), 2, ratecode)
    ratecode = np.where(do == _EWR, 3, ratecode)
    cols.update(
        vendor_id=rng.choice(profile.vendors, n, p=profile.vendor_weights),
        passenger_count=rng.choice(np.arange(1, 7), n, p=(0.72, 0.15, 0.04, 0.03, 0.035, 0.025)),
        store_and_fwd_flag=(rng.random(n) < 0.003).astype(np.int64),
        payment_type=payment,
        ratecode=ratecode,
        trip_type=np.where(ratecode == 5, 2, 1),
        null_block=null_block,
    )
    for field in ("passenger_count", "ratecode", "store_and_fwd_flag", *_FEES[:2]):
        nulls[field] = null_block
    if profile.null_block_payment_type is None:
        nulls["payment_type"] = null_block
        nulls["trip_type"] = null_block


def _draw_amounts(
    rng: np.random.Generator, spec: _Spec, n: int, cols: dict[str, np.ndarray]
) -> None:
    """Fare components in USD and their total; fees the layout lacks are not charged."""
    profile, fields = spec.profile, spec.layout.fields
    pu, do, ratecode = cols["pu_zone"], cols["do_zone"], cols["ratecode"]
    pickup_s, null_block = cols["pickup_ts"], cols["null_block"]
    minutes = cols["duration_s"] / 60.0
    metered = np.round(3.0 + 2.8 * cols["trip_distance"] + 0.7 * minutes, 1)
    negotiated = np.round(metered * rng.uniform(0.8, 1.5, n), 1)
    fare = np.where(ratecode == 5, negotiated, metered)
    fare = np.where(ratecode == 2, profile.jfk_flat_fare, fare)
    hour = (pickup_s // 3600) % 24
    weekday = (pickup_s // _SECONDS_PER_DAY + 3) % 7 < 5
    night = (hour >= 20) | (hour < 6)
    rush = weekday & (hour >= 16) & (hour < 20)
    extra = np.where(night, profile.night_extra, np.where(rush, profile.rush_extra, 0.0))
    mta_tax = np.where(np.isin(ratecode, (3, 4, 5)), 0.0, 0.5)
    in_congestion = _IN_CONGESTION_ZONE[pu] | _IN_CONGESTION_ZONE[do]
    in_cbd = (_IN_CBD[pu] | _IN_CBD[do]) & (pickup_s >= _CBD_START_S)
    charges = {
        "congestion_surcharge": (in_congestion & ~null_block, profile.congestion_surcharge),
        "airport_fee": (np.isin(pu, _AIRPORTS) & ~null_block, profile.airport_fee),
        "cbd_congestion_fee": (in_cbd, _CBD_FEE),
    }
    fees = {
        name: np.where(charged & (name in fields), amount, 0.0)
        for name, (charged, amount) in charges.items()
    }
    long_trip = (_BOROUGH[pu] != _BOROUGH[do]) | np.isin(pu, _AIRPORTS) | np.isin(do, _AIRPORTS)
    tolled = rng.random(n) < np.where(long_trip, 0.2, 0.004)
    tolls = np.where(tolled, rng.choice((6.94, 13.88), n, p=(0.93, 0.07)), 0.0)
    tip_share = rng.choice(
        (0.0, 0.15, 0.18, 0.2, 0.22, 0.25, 0.3), n, p=(0.12, 0.1, 0.12, 0.3, 0.1, 0.16, 0.1)
    )
    improvement = np.full(n, profile.improvement_surcharge)
    # Tipped on the metered part only, so every yellow layout carries the same tips.
    tipped = fare + extra + mta_tax + improvement
    tip = np.where(cols["payment_type"] == 1, np.round(tip_share * tipped, 2), 0.0)
    cols.update(
        fare_amount=fare,
        extra=extra,
        mta_tax=mta_tax,
        tip_amount=tip,
        tolls_amount=tolls,
        improvement_surcharge=improvement,
        **fees,
    )
    cols["total_amount"] = np.round(sum(cols[name] for name in _AMOUNTS), 2)


def _apply_dirt(
    rng: np.random.Generator,
    spec: _Spec,
    n: int,
    cols: dict[str, np.ndarray],
    nulls: dict[str, np.ndarray],
) -> None:
    """Break a ``dirty_rate`` share of rows, a few of them in two ways at once.

    Every random draw happens whatever the rate, so clean rows are the same at any rate.
    """
    kinds = spec.layout.dirt
    weights = np.array([_DIRT_WEIGHTS[kind] for kind in kinds])
    dirty = rng.random(n) < spec.dirty_rate
    primary = rng.choice(len(kinds), n, p=weights / weights.sum())
    twice = rng.random(n) < _SECOND_DIRT_RATE
    secondary = (primary + rng.integers(1, len(kinds), n)) % len(kinds)

    def hit(kind: str) -> np.ndarray:
        if kind not in kinds:
            return np.zeros(n, dtype=bool)
        index = kinds.index(kind)
        return dirty & ((primary == index) | (twice & (secondary == index)))

    stray_s = _stray_pickups(rng, spec.month, cols["pickup_ts"], n)
    very_long_s = rng.integers(int(1.05 * _SECONDS_PER_DAY), 4 * _SECONDS_PER_DAY, n)
    backwards_s = np.where(rng.random(n) < 0.3, 0, rng.integers(1, 2701, n))
    absurd_mi = np.round(rng.uniform(60.0, 120.0, n), 2)
    absurd_s = rng.integers(60, 481, n)
    bad_zone = rng.choice(_OUT_OF_RANGE_ZONES, n)
    on_pickup = rng.random(n) < 0.6

    # Later timing faults are set relative to the final pickup, so each leaves its row dirty.
    pickup_s = np.where(hit("pickup_outside_month"), stray_s, cols["pickup_ts"])
    dropoff_s = pickup_s + cols["duration_s"]
    dropoff_s = np.where(hit("very_long"), pickup_s + very_long_s, dropoff_s)
    dropoff_s = np.where(hit("dropoff_not_after_pickup"), pickup_s - backwards_s, dropoff_s)
    absurd = hit("absurd_speed")
    dropoff_s = np.where(absurd, pickup_s + absurd_s, dropoff_s)
    cols["trip_distance"] = np.where(absurd, absurd_mi, cols["trip_distance"])
    cols["pickup_ts"], cols["dropoff_ts"] = pickup_s, dropoff_s
    negative = hit("negative_amount")
    for name in (*_AMOUNTS, "total_amount"):
        # 0.0 - x rather than -x: a refund of a zero component stays 0.0, not -0.0.
        cols[name] = np.where(negative, 0.0 - cols[name], cols[name])
    out_of_range = hit("zone_out_of_range")
    cols["pu_zone"] = np.where(out_of_range & on_pickup, bad_zone, cols["pu_zone"])
    cols["do_zone"] = np.where(out_of_range & ~on_pickup, bad_zone, cols["do_zone"])
    nulls["pu_zone"] = hit("null_pickup_zone")
    nulls["pickup_ts"] = hit("null_pickup_time")


def _stray_pickups(
    rng: np.random.Generator, month: _Month, pickup_s: np.ndarray, n: int
) -> np.ndarray:
    """Pickups outside the file's month, like those real files carry."""
    time_of_day_s = rng.integers(0, _SECONDS_PER_DAY, n)
    last_hour_before = month.start_s - 3600 + time_of_day_s % 3600
    candidates = (
        _STRAY_DAYS_S[0] + time_of_day_s,
        _STRAY_DAYS_S[1] + time_of_day_s,
        last_hour_before,
        month.start_2088_s + (pickup_s - month.start_s),
    )
    stray_s = np.choose(rng.integers(0, len(candidates), n), candidates)
    # A 2009-01 or 2088 file would otherwise get "stray" pickups inside its own month.
    inside = (stray_s >= month.start_s) & (stray_s < month.end_s)
    return np.where(inside, last_hour_before, stray_s)


def _draw_coordinates(
    rng: np.random.Generator, n: int, cols: dict[str, np.ndarray], nulls: dict[str, np.ndarray]
) -> None:
    """Latitude and longitude around each zone, for the pre-2016 layout."""
    for end, zone_field in (("pickup", "pu_zone"), ("dropoff", "do_zone")):
        zone = cols[zone_field]
        known = (zone >= 1) & (zone <= 265)
        latitude, longitude, spread = _ZONE_CENTRES[np.where(known, zone, 0)].T
        latitude = latitude + spread * rng.standard_normal(n)
        longitude = longitude + 1.3 * spread * rng.standard_normal(n)
        # Old files mark trips they could not locate with (0, 0) rather than null.
        cols[f"{end}_latitude"] = np.where(known, latitude, 0.0)
        cols[f"{end}_longitude"] = np.where(known, longitude, 0.0)
        if zone_field in nulls:
            nulls[f"{end}_latitude"] = nulls[f"{end}_longitude"] = nulls[zone_field]


def _draw_fhv_bases(
    rng: np.random.Generator, n: int, cols: dict[str, np.ndarray], nulls: dict[str, np.ndarray]
) -> None:
    """Dispatching and affiliated base licences and the shared-ride flag of FHV trips."""
    bases = len(_VOCABULARIES["dispatching_base_num"])
    weights = 1.0 / np.arange(1, bases + 1)
    dispatching = rng.choice(bases, n, p=weights / weights.sum())
    other = rng.choice(bases, n, p=weights / weights.sum())
    affiliation = rng.random(n)
    cols["dispatching_base_num"] = dispatching
    cols["affiliated_base_number"] = np.where(affiliation < 0.8, dispatching, other)
    nulls["affiliated_base_number"] = affiliation >= 0.95
    cols["sr_flag"] = np.ones(n, dtype=np.int64)
    nulls["sr_flag"] = rng.random(n) >= 0.03


def _to_table(
    layout: _Layout, n: int, cols: dict[str, np.ndarray], nulls: dict[str, np.ndarray]
) -> pa.Table:
    arrays = [_to_array(field, dtype, n, cols, nulls) for _, field, dtype in layout.columns]
    return pa.Table.from_arrays(arrays, schema=layout.schema)


def _to_array(
    field: str,
    dtype: pa.DataType,
    n: int,
    cols: dict[str, np.ndarray],
    nulls: dict[str, np.ndarray],
) -> pa.Array:
    if pa.types.is_null(dtype):
        return pa.nulls(n)
    values = cols[field]
    mask = nulls.get(field)
    if mask is not None and not mask.any():
        mask = None
    if pa.types.is_string(dtype):
        return pa.array(_VOCABULARIES[field], type=dtype).take(pa.array(values, mask=mask))
    if pa.types.is_timestamp(dtype):
        return pa.array(values * _TIMESTAMP_SCALE[dtype.unit], type=dtype, mask=mask)
    return pa.array(values.astype(dtype.to_pandas_dtype()), type=dtype, mask=mask)


def _zone_classes() -> np.ndarray:
    classes = np.full(266, _UNKNOWN, dtype=np.int64)
    for zones, zone_class in _CLASS_OF_BOROUGH:
        classes[list(zones)] = zone_class
    return classes


def _zone_centres() -> np.ndarray:
    centres = np.array([_CLASS_CENTRES[zone_class] for zone_class in _ZONE_CLASS])
    for zone, centre in _AIRPORT_CENTRES.items():
        centres[zone] = centre
    return centres


_ZONE_IDS = np.arange(266)
_ZONE_CLASS = _zone_classes()
_BOROUGH = np.where(_ZONE_CLASS == _UPPER, _CORE, _ZONE_CLASS)
# Manhattan south of 96th Street pays the congestion surcharge (2019+).
_IN_CONGESTION_ZONE = _ZONE_CLASS == _CORE
_IN_CBD = np.isin(_ZONE_IDS, _CBD)
_ZONE_CENTRES = _zone_centres()


def _zone_weights(class_weights: dict[int, float], hot: dict[int, float]) -> np.ndarray:
    """Probability of each zone id (index), from a weight per zone class and hot spots."""
    weights = np.array([class_weights[zone_class] for zone_class in _ZONE_CLASS], dtype=float)
    weights[0] = 0.0
    for zone, weight in hot.items():
        weights[zone] = weight
    return weights / weights.sum()


_YELLOW_HOT = {
    161: 6.0, 237: 6.0, 236: 5.5, 162: 5.0, 230: 5.0, _JFK: 5.0, _LGA: 3.5, 186: 4.0, 142: 4.0,
    170: 4.0, 239: 4.0, 163: 3.5, 234: 3.5, 79: 3.5, 48: 3.5, 141: 3.5, 68: 3.0, 107: 3.0,
    140: 3.0, 229: 3.0, 263: 3.0, 238: 3.0, 164: 3.0, 249: 3.0, 90: 2.5, 100: 2.5, 246: 2.5,
    113: 2.0, 114: 2.0, 43: 2.0, 233: 2.0, 137: 2.0, 231: 2.0, 158: 1.8, 262: 1.5, 143: 1.5,
    87: 1.5, 211: 1.5, 125: 1.2, 13: 1.2, 261: 1.2, 151: 1.2, 50: 1.2,
}  # fmt: skip
_GREEN_HOT = {
    74: 9.0, 75: 8.0, 41: 6.0, 42: 4.0, 244: 3.5, 95: 3.0, 97: 3.0, 166: 2.8, 65: 2.0, 43: 2.0,
    61: 1.8, 7: 1.7, 130: 1.6, 116: 1.5, 82: 1.5, 25: 1.3, 33: 1.2, 188: 1.2, 181: 1.1, 76: 1.1,
}  # fmt: skip


def _classes(
    unknown: float, newark: float, core: float, upper: float, outer: tuple[float, ...]
) -> dict[int, float]:
    brooklyn, queens, bronx, staten_island = outer
    return {
        _UNKNOWN: unknown, _NEWARK: newark, _CORE: core, _UPPER: upper,
        _BK: brooklyn, _QN: queens, _BX: bronx, _SI: staten_island,
    }  # fmt: skip


_YELLOW = _Profile(
    vendors=(1, 2, 6, 7),
    vendor_weights=(0.21, 0.77, 0.005, 0.015),
    pickup_zone_weights=_zone_weights(
        _classes(0.3, 0.002, 1.0, 0.3, (0.04, 0.03, 0.02, 0.002)), _YELLOW_HOT
    ),
    dropoff_zone_weights=_zone_weights(
        _classes(0.3, 0.03, 1.0, 0.5, (0.12, 0.1, 0.06, 0.005)),
        {zone: weight**0.85 for zone, weight in _YELLOW_HOT.items()} | {_JFK: 2.0, _LGA: 2.5},
    ),
    local_share=0.5,
    payment_types=(1, 2, 3, 4),
    payment_weights=(0.74, 0.20, 0.015, 0.045),
    null_block_payment_type=0,
    null_block_rate=_NULL_BLOCK_RATE,
    night_extra=1.0,
    rush_extra=2.5,
    improvement_surcharge=1.0,
    congestion_surcharge=2.5,
    airport_fee=1.75,
    jfk_flat_share=0.85,
    jfk_flat_fare=70.0,
    nassau_share=0.002,
    negotiated_share=0.008,
)
_GREEN = _Profile(
    vendors=(1, 2),
    vendor_weights=(0.18, 0.82),
    pickup_zone_weights=_zone_weights(
        _classes(0.1, 0.001, 0.05, 0.8, (0.15, 0.15, 0.15, 0.01)), _GREEN_HOT
    ),
    dropoff_zone_weights=_zone_weights(
        _classes(0.1, 0.01, 0.35, 0.6, (0.2, 0.2, 0.2, 0.02)),
        {zone: weight**0.7 for zone, weight in _GREEN_HOT.items()},
    ),
    local_share=0.7,
    payment_types=(1, 2, 3, 4),
    payment_weights=(0.55, 0.42, 0.02, 0.01),
    null_block_payment_type=None,
    null_block_rate=_NULL_BLOCK_RATE,
    night_extra=0.5,
    rush_extra=1.0,
    improvement_surcharge=0.3,
    congestion_surcharge=2.75,
    airport_fee=0.0,
    jfk_flat_share=0.5,
    jfk_flat_fare=52.0,
    nassau_share=0.002,
    negotiated_share=0.04,
)
_PROFILES = {
    "yellow": _YELLOW,
    "green": _GREEN,
    "fhv": dataclasses.replace(_GREEN, null_block_rate=0.0),
}

_F64, _I64, _I32, _STR = pa.float64(), pa.int64(), pa.int32(), pa.string()
_US, _NS = pa.timestamp("us"), pa.timestamp("ns")
_METERED = (
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
)


def _tpep_columns(
    *,
    timestamps: pa.DataType,
    ids: pa.DataType,
    codes: pa.DataType,
    payment: pa.DataType,
    fees: tuple[tuple[str, str], ...],
) -> tuple[tuple[str, str, pa.DataType], ...]:
    """Yellow columns since 2016-07, with the vintage's types and trailing fee columns."""
    return (
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
    )


_CONGESTION = ("congestion_surcharge", "congestion_surcharge")
_CBD_COLUMN = ("cbd_congestion_fee", "cbd_congestion_fee")
_LAYOUTS = {
    "yellow/current": _Layout(
        "yellow",
        _tpep_columns(
            timestamps=_US,
            ids=_I32,
            codes=_I64,
            payment=_I64,
            fees=(_CONGESTION, ("Airport_fee", "airport_fee"), _CBD_COLUMN),
        ),
    ),
    "yellow/pandas_ns": _Layout(
        "yellow",
        _tpep_columns(
            timestamps=_NS,
            ids=_I32,
            codes=_F64,
            payment=_I64,
            fees=(_CONGESTION, ("Airport_fee", "airport_fee"), _CBD_COLUMN),
        ),
    ),
    "yellow/legacy_2019": _Layout(
        "yellow",
        _tpep_columns(timestamps=_US, ids=_I64, codes=_F64, payment=_F64, fees=(_CONGESTION,)),
    ),
    "yellow/lowercase_airport": _Layout(
        "yellow",
        _tpep_columns(
            timestamps=_US,
            ids=_I64,
            codes=_F64,
            payment=_I64,
            fees=(_CONGESTION, ("airport_fee", "airport_fee")),
        ),
    ),
    "yellow/pre2016": _Layout(
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
    "green/current": _Layout(
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
    "fhv": _Layout(
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
        dirt=_FHV_DIRT,
    ),
}
