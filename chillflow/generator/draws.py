"""The random draws of one block of trips and its dirt, as numpy arrays by field."""

from __future__ import annotations

import dataclasses

import numpy as np

from chillflow.generator import nyc
from chillflow.generator.nyc import AIRPORTS, BOROUGH, CORE, JFK, Month, Profile

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
AMOUNTS = ("fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount",
           "improvement_surcharge", *FEES)  # fmt: skip
_KM_PER_MILE = 1.609344
_PICKUP_JITTER_S = 120
_SECOND_DIRT_RATE = 0.1
_MAX_CLEAN_MILES = 45.0
_MAX_CLEAN_DURATION_S = 4 * 3600
_CBD_FEE = 0.75
# The CBD toll started on 2025-01-05, not on the first of the month; stray pickups use the others.
_CBD_START_S, *_STRAY_DAYS_S = (
    int(np.datetime64(day, "s").astype(np.int64))
    for day in ("2025-01-05", "2008-12-31", "2009-01-01")
)
_OUT_OF_RANGE_ZONES = (0, 266, 300, 999)
#: Generated fields by name: values, or where a value is null.
_Arrays = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Spec:
    """Everything that defines the rows of one generated file."""

    fields: frozenset[str]
    profile: Profile
    month: Month
    rows: int
    seed: int
    dirty_rate: float


def draw_trips(rng: np.random.Generator, spec: Spec, start: int, n: int, cols: _Arrays) -> None:
    """Pickup time, zones, distance and duration of clean trips."""
    month, profile = spec.month, spec.profile
    # Stratified quantiles of the month's pickup intensity: each block covers its own stretch
    # of the month, so files come out roughly ordered by time like the published ones.
    quantiles = (start + np.arange(n) + rng.random(n)) / spec.rows
    offset_s = np.floor(np.interp(quantiles, month.cdf, month.edges_s)).astype(np.int64)
    offset_s += rng.integers(-_PICKUP_JITTER_S, _PICKUP_JITTER_S + 1, n)
    offset_s = np.clip(offset_s, 0, month.end_s - month.start_s - 1)
    pickup_zone = rng.choice(nyc.ZONE_IDS, n, p=profile.pickup_zone_weights)
    dropoff_zone = _draw_dropoff_zones(rng, profile, pickup_zone, n)
    median_mi, sigma = _distance_shape(pickup_zone, dropoff_zone)
    distance_mi = median_mi * np.exp(sigma * rng.standard_normal(n))
    distance_mi = np.clip(np.round(distance_mi, 2), 0.01, _MAX_CLEAN_MILES)
    speed_kmh = (11.0 + 6.0 * np.log1p(distance_mi)) * np.exp(0.3 * rng.standard_normal(n))
    speed_kmh = np.clip(speed_kmh, 6.0, 70.0)
    driving_s = np.round(distance_mi * _KM_PER_MILE / speed_kmh * 3600.0).astype(np.int64)
    duration_s = np.clip(driving_s + rng.integers(20, 121, n), 60, _MAX_CLEAN_DURATION_S)
    cols.update(pickup_ts=month.start_s + offset_s, duration_s=duration_s, pu_zone=pickup_zone,
                do_zone=dropoff_zone, trip_distance=distance_mi)  # fmt: skip


def _draw_dropoff_zones(
    rng: np.random.Generator, profile: Profile, pickup_zone: np.ndarray, n: int
) -> np.ndarray:
    """Dropoff zones: city-wide demand, or within the pickup's borough for local trips."""
    dropoff_zone = rng.choice(nyc.ZONE_IDS, n, p=profile.dropoff_zone_weights)
    local = (rng.random(n) < profile.local_share) & ~np.isin(pickup_zone, AIRPORTS)
    quantiles = rng.random(n)
    pickup_borough = BOROUGH[pickup_zone]
    for borough in (CORE, nyc.BK, nyc.QN, nyc.BX, nyc.SI):
        rows = local & (pickup_borough == borough)
        zones = np.flatnonzero(np.equal(BOROUGH, borough))
        cdf = np.cumsum(profile.dropoff_zone_weights[zones])
        picks = np.searchsorted(cdf / cdf[-1], quantiles[rows], side="right")
        dropoff_zone[rows] = zones[np.minimum(picks, zones.size - 1)]
    return dropoff_zone


def _distance_shape(pickup_zone: np.ndarray, dropoff_zone: np.ndarray) -> tuple[np.ndarray, ...]:
    """Median (miles) and log-spread of the trip distance between two zones."""
    pu_class, do_class = nyc.ZONE_CLASS[pickup_zone], nyc.ZONE_CLASS[dropoff_zone]
    pu_borough, do_borough = BOROUGH[pickup_zone], BOROUGH[dropoff_zone]

    def either(zone: int) -> np.ndarray:
        return (pickup_zone == zone) | (dropoff_zone == zone)

    cases = [
        (pickup_zone == dropoff_zone, 0.7, 0.6),
        (either(JFK), 17.5, 0.18),
        (either(nyc.LGA), 9.5, 0.22),
        (either(nyc.EWR), 17.0, 0.2),
        ((pu_class == nyc.UNKNOWN) | (do_class == nyc.UNKNOWN), 2.0, 1.0),
        ((pu_borough == CORE) & (do_borough == CORE), 1.45, 0.55),
        (pu_borough == do_borough, 1.8, 0.7),
    ]
    conditions = [condition for condition, _, _ in cases]
    median = np.select(conditions, [m for _, m, _ in cases], default=4.8)
    sigma = np.select(conditions, [s for _, _, s in cases], default=0.45)
    return median, sigma


def draw_codes(
    rng: np.random.Generator, profile: Profile, n: int, cols: _Arrays, nulls: _Arrays
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
    jfk_manhattan = ((pu == JFK) & (BOROUGH[do] == CORE)) | ((do == JFK) & (BOROUGH[pu] == CORE))
    ratecode = np.where(jfk_manhattan & (rng.random(n) < profile.jfk_flat_share), 2, ratecode)
    ratecode = np.where(do == nyc.EWR, 3, ratecode)
    cols.update(
        vendor_id=rng.choice(profile.vendors, n, p=profile.vendor_weights),
        passenger_count=rng.choice(np.arange(1, 7), n, p=(0.72, 0.15, 0.04, 0.03, 0.035, 0.025)),
        store_and_fwd_flag=(rng.random(n) < 0.003).astype(np.int64), payment_type=payment,
        ratecode=ratecode, trip_type=np.where(ratecode == 5, 2, 1), null_block=null_block,
    )  # fmt: skip
    for field in ("passenger_count", "ratecode", "store_and_fwd_flag", *FEES[:2]):
        nulls[field] = null_block
    if profile.null_block_payment_type is None:
        nulls["payment_type"] = null_block
        nulls["trip_type"] = null_block


def draw_amounts(rng: np.random.Generator, spec: Spec, n: int, cols: _Arrays) -> None:
    """Fare components in USD and their total; fees the layout lacks are not charged."""
    profile, fields = spec.profile, spec.fields
    pu, do, ratecode = cols["pu_zone"], cols["do_zone"], cols["ratecode"]
    pickup_s, null_block = cols["pickup_ts"], cols["null_block"]
    minutes = cols["duration_s"] / 60.0
    metered = np.round(3.0 + 2.8 * cols["trip_distance"] + 0.7 * minutes, 1)
    negotiated = np.round(metered * rng.uniform(0.8, 1.5, n), 1)
    fare = np.where(ratecode == 5, negotiated, metered)
    fare = np.where(ratecode == 2, profile.jfk_flat_fare, fare)
    hour = (pickup_s // 3600) % 24
    weekday = (pickup_s // nyc.SECONDS_PER_DAY + 3) % 7 < 5
    night = (hour >= 20) | (hour < 6)
    rush = weekday & (hour >= 16) & (hour < 20)
    extra = np.where(night, profile.night_extra, np.where(rush, profile.rush_extra, 0.0))
    mta_tax = np.where(np.isin(ratecode, (3, 4, 5)), 0.0, 0.5)
    in_congestion = nyc.IN_CONGESTION_ZONE[pu] | nyc.IN_CONGESTION_ZONE[do]
    in_cbd = (nyc.IN_CBD[pu] | nyc.IN_CBD[do]) & (pickup_s >= _CBD_START_S)
    charges = {
        "congestion_surcharge": (in_congestion & ~null_block, profile.congestion_surcharge),
        "airport_fee": (np.isin(pu, AIRPORTS) & ~null_block, profile.airport_fee),
        "cbd_congestion_fee": (in_cbd, _CBD_FEE),
    }
    fees = {
        name: np.where(charged & (name in fields), amount, 0.0)
        for name, (charged, amount) in charges.items()
    }
    long_trip = (BOROUGH[pu] != BOROUGH[do]) | np.isin(pu, AIRPORTS) | np.isin(do, AIRPORTS)
    tolled = rng.random(n) < np.where(long_trip, 0.2, 0.004)
    tolls = np.where(tolled, rng.choice((6.94, 13.88), n, p=(0.93, 0.07)), 0.0)
    tip_share = rng.choice(
        (0.0, 0.15, 0.18, 0.2, 0.22, 0.25, 0.3), n, p=(0.12, 0.1, 0.12, 0.3, 0.1, 0.16, 0.1)
    )
    improvement = np.full(n, profile.improvement_surcharge)
    # Tipped on the metered part only, not on the congestion, airport and CBD fees.
    tipped = fare + extra + mta_tax + improvement
    tip = np.where(cols["payment_type"] == 1, np.round(tip_share * tipped, 2), 0.0)
    cols.update(fare_amount=fare, extra=extra, mta_tax=mta_tax, tip_amount=tip, tolls_amount=tolls,
                improvement_surcharge=improvement, **fees)  # fmt: skip
    cols["total_amount"] = np.round(sum(cols[name] for name in AMOUNTS), 2)


def apply_dirt(rng: np.random.Generator, spec: Spec, n: int, cols: _Arrays, nulls: _Arrays) -> None:
    """Break a ``dirty_rate`` share of rows, a few of them in two ways at once.

    Every random draw happens whatever the rate, so clean rows are the same at any rate.
    """
    kinds = tuple(DIRT_WEIGHTS)
    weights = np.array([DIRT_WEIGHTS[kind] for kind in kinds])
    dirty = rng.random(n) < spec.dirty_rate
    primary = rng.choice(len(kinds), n, p=weights / weights.sum())
    twice = rng.random(n) < _SECOND_DIRT_RATE
    secondary = (primary + rng.integers(1, len(kinds), n)) % len(kinds)

    def hit(kind: str) -> np.ndarray:
        index = kinds.index(kind)
        return dirty & ((primary == index) | (twice & (secondary == index)))

    stray_s = _stray_pickups(rng, spec.month, cols["pickup_ts"], n)
    very_long_s = rng.integers(int(1.05 * nyc.SECONDS_PER_DAY), 4 * nyc.SECONDS_PER_DAY, n)
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
    for name in (*AMOUNTS, "total_amount"):
        # 0.0 - x rather than -x: a refund of a zero component stays 0.0, not -0.0.
        cols[name] = np.where(negative, 0.0 - cols[name], cols[name])
    out_of_range = hit("zone_out_of_range")
    cols["pu_zone"] = np.where(out_of_range & on_pickup, bad_zone, cols["pu_zone"])
    cols["do_zone"] = np.where(out_of_range & ~on_pickup, bad_zone, cols["do_zone"])
    nulls["pu_zone"] = hit("null_pickup_zone")
    nulls["pickup_ts"] = hit("null_pickup_time")


def _stray_pickups(
    rng: np.random.Generator, month: Month, pickup_s: np.ndarray, n: int
) -> np.ndarray:
    """Pickups outside the file's month, like those real files carry."""
    time_of_day_s = rng.integers(0, nyc.SECONDS_PER_DAY, n)
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
