"""What each service's trips look like, and when in a month they happen."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from chillflow.generator.zones import GREEN_HOT, JFK, LGA, YELLOW_HOT, zone_weights

SECONDS_PER_DAY = 86_400
_STRAY_YEAR = 2088

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


@dataclasses.dataclass(frozen=True)
class Profile:
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
    night_extra: float
    rush_extra: float
    improvement_surcharge: float
    congestion_surcharge: float
    airport_fee: float
    jfk_flat_share: float
    jfk_flat_fare: float
    nassau_share: float
    negotiated_share: float
    # Share of rows whose codes and fees are null together, as in real files.
    null_block_rate: float = 0.01


@dataclasses.dataclass(frozen=True)
class Month:
    """A calendar month and the cumulative pickup intensity over its hours."""

    start_s: int
    end_s: int
    start_2088_s: int
    cdf: np.ndarray
    edges_s: np.ndarray


@lru_cache(maxsize=32)
def calendar(month: str) -> Month:
    """The month ``YYYY-MM`` with its pickup intensity by hour."""
    start = np.datetime64(month, "M")
    start_s = int(start.astype("datetime64[s]").astype(np.int64))
    end_s = int((start + 1).astype("datetime64[s]").astype(np.int64))
    days = np.arange(start_s // SECONDS_PER_DAY, end_s // SECONDS_PER_DAY)
    # 1970-01-01, epoch day 0, was a Thursday.
    day_of_week = (days + 3) % 7
    hourly = np.where(
        (day_of_week >= 5)[:, None], np.array(_WEEKEND_HOURS), np.array(_WEEKDAY_HOURS)
    )
    weights = (np.array(_DAY_OF_WEEK_WEIGHTS)[day_of_week][:, None] * hourly).ravel()
    stray_month = np.datetime64(f"{_STRAY_YEAR}{month[4:]}", "M").astype("datetime64[s]")
    return Month(
        start_s=start_s,
        end_s=end_s,
        start_2088_s=int(stray_month.astype(np.int64)),
        cdf=np.concatenate(([0.0], np.cumsum(weights) / weights.sum())),
        edges_s=np.arange(weights.size + 1, dtype=np.float64) * 3600.0,
    )


# Zone class weights in class order: unknown, Newark, Manhattan core, upper Manhattan, Brooklyn,
# Queens, Bronx, Staten Island.
_YELLOW = Profile(
    vendors=(1, 2, 6, 7),
    vendor_weights=(0.21, 0.77, 0.005, 0.015),
    pickup_zone_weights=zone_weights((0.3, 0.002, 1.0, 0.3, 0.04, 0.03, 0.02, 0.002), YELLOW_HOT),
    dropoff_zone_weights=zone_weights(
        (0.3, 0.03, 1.0, 0.5, 0.12, 0.1, 0.06, 0.005),
        {zone: weight**0.85 for zone, weight in YELLOW_HOT.items()} | {JFK: 2.0, LGA: 2.5},
    ),
    local_share=0.5,
    payment_types=(1, 2, 3, 4),
    payment_weights=(0.74, 0.20, 0.015, 0.045),
    null_block_payment_type=0,
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
_GREEN = Profile(
    vendors=(1, 2),
    vendor_weights=(0.18, 0.82),
    pickup_zone_weights=zone_weights((0.1, 0.001, 0.05, 0.8, 0.15, 0.15, 0.15, 0.01), GREEN_HOT),
    dropoff_zone_weights=zone_weights(
        (0.1, 0.01, 0.35, 0.6, 0.2, 0.2, 0.2, 0.02),
        {zone: weight**0.7 for zone, weight in GREEN_HOT.items()},
    ),
    local_share=0.7,
    payment_types=(1, 2, 3, 4),
    payment_weights=(0.55, 0.42, 0.02, 0.01),
    null_block_payment_type=None,
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
PROFILES = {
    "yellow": _YELLOW,
    "green": _GREEN,
    "fhv": dataclasses.replace(_GREEN, null_block_rate=0.0),
}
