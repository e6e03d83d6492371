"""What NYC taxi trips look like: zones, each service's profile and a month's pickup intensity."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

SECONDS_PER_DAY = 86_400
JFK, LGA, EWR = 132, 138, 1
AIRPORTS = (JFK, LGA)

# Zone classes, from the TLC zone lookup: what a zone's demand and distances look like.
UNKNOWN, NEWARK, CORE, UPPER, BK, QN, BX, SI = range(8)
# The class of each LocationID 0-265: U unknown (0, 264, 265), E Newark, M Manhattan below 96th
# Street, D the part of it below 60th Street that pays the CBD toll, H upper Manhattan,
# B Brooklyn, Q Queens, X the Bronx, S Staten Island.
_ZONES = (
    "UEQXDSSQQQQBDDBQQBXQXBBSHBBQQBQXXBBBBBQBBHHMSDXXDBDXBQBBQQXXXBBBQB"
    "BBDXQBBQHHBBXDBXQQSBQDDBDBQQXQQBQSDQQDDDBDBSSBBDDSHQSXHQQBQDXHHQQQ"
    "QBQQXDQQMMMMDQQXDBBHHHBBSQDXQDDDDBHXXXDQSQXQSBBQQBXXXXDSBBBQQQHBQQ"
    "QXXQMQSQSQXDBDXXSQQBQQXSBQDBQBBDDDDDDXMMMMXXXHHSDXXDXSQQXBBBQXQDMM"
    "UU"
)
_CLASS_OF_LETTER = {"U": UNKNOWN, "E": NEWARK, "M": CORE, "D": CORE, "H": UPPER, "B": BK,
                    "Q": QN, "X": BX, "S": SI}  # fmt: skip
ZONE_IDS = np.arange(len(_ZONES))
ZONE_CLASS = np.array([_CLASS_OF_LETTER[letter] for letter in _ZONES])
BOROUGH = np.where(ZONE_CLASS == UPPER, CORE, ZONE_CLASS)
# Manhattan below 96th Street pays the congestion surcharge (2019+), below 60th the CBD toll.
IN_CONGESTION_ZONE = ZONE_CLASS == CORE
IN_CBD = np.array([letter == "D" for letter in _ZONES])

YELLOW_HOT = {
    161: 6.0, 237: 6.0, 236: 5.5, 162: 5.0, 230: 5.0, JFK: 5.0, LGA: 3.5, 186: 4.0, 142: 4.0,
    170: 4.0, 239: 4.0, 163: 3.5, 234: 3.5, 79: 3.5, 48: 3.5, 141: 3.5, 68: 3.0, 107: 3.0,
    140: 3.0, 229: 3.0, 263: 3.0, 238: 3.0, 164: 3.0, 249: 3.0, 90: 2.5, 100: 2.5, 246: 2.5,
    113: 2.0, 114: 2.0, 43: 2.0, 233: 2.0, 137: 2.0, 231: 2.0, 158: 1.8, 262: 1.5, 143: 1.5,
    87: 1.5, 211: 1.5, 125: 1.2, 13: 1.2, 261: 1.2, 151: 1.2, 50: 1.2,
}  # fmt: skip
GREEN_HOT = {
    74: 9.0, 75: 8.0, 41: 6.0, 42: 4.0, 244: 3.5, 95: 3.0, 97: 3.0, 166: 2.8, 65: 2.0, 43: 2.0,
    61: 1.8, 7: 1.7, 130: 1.6, 116: 1.5, 82: 1.5, 25: 1.3, 33: 1.2, 188: 1.2, 181: 1.1, 76: 1.1,
}  # fmt: skip

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
_STRAY_YEAR = 2088


def zone_weights(class_weights: tuple[float, ...], hot: dict[int, float]) -> np.ndarray:
    """Probability of each zone id (index), from a weight per zone class (in class order)."""
    weights = np.array(class_weights, dtype=float)[ZONE_CLASS]
    weights[0] = 0.0
    for zone, weight in hot.items():
        weights[zone] = weight
    return weights / weights.sum()


@dataclasses.dataclass(frozen=True)
class Profile:
    """What one service's trips look like, apart from the file layout."""

    vendors: tuple[int, ...]
    vendor_weights: tuple[float, ...]
    pickup_zone_weights: np.ndarray
    dropoff_zone_weights: np.ndarray
    local_share: float  # trips (not from an airport) that stay in the pickup's borough
    payment_types: tuple[int, ...]
    payment_weights: tuple[float, ...]
    null_block_payment_type: int | None  # None where the TLC leaves it null (green)
    night_extra: float
    rush_extra: float
    improvement_surcharge: float
    congestion_surcharge: float
    airport_fee: float
    jfk_flat_share: float
    jfk_flat_fare: float
    nassau_share: float
    negotiated_share: float
    null_block_rate: float = 0.01  # rows whose codes and fees are null together, as in real files


# Zone class weights in class order: unknown, Newark, Manhattan core, upper Manhattan, Brooklyn,
# Queens, Bronx, Staten Island.
PROFILES = {
    "yellow": Profile(
        vendors=(1, 2, 6, 7), vendor_weights=(0.21, 0.77, 0.005, 0.015),
        pickup_zone_weights=zone_weights(
            (0.3, 0.002, 1.0, 0.3, 0.04, 0.03, 0.02, 0.002), YELLOW_HOT
        ),
        dropoff_zone_weights=zone_weights(
            (0.3, 0.03, 1.0, 0.5, 0.12, 0.1, 0.06, 0.005),
            {zone: weight**0.85 for zone, weight in YELLOW_HOT.items()} | {JFK: 2.0, LGA: 2.5},
        ),
        local_share=0.5, payment_types=(1, 2, 3, 4), payment_weights=(0.74, 0.20, 0.015, 0.045),
        null_block_payment_type=0, night_extra=1.0, rush_extra=2.5, improvement_surcharge=1.0,
        congestion_surcharge=2.5, airport_fee=1.75, jfk_flat_share=0.85, jfk_flat_fare=70.0,
        nassau_share=0.002, negotiated_share=0.008,
    ),
    "green": Profile(
        vendors=(1, 2), vendor_weights=(0.18, 0.82),
        pickup_zone_weights=zone_weights(
            (0.1, 0.001, 0.05, 0.8, 0.15, 0.15, 0.15, 0.01), GREEN_HOT
        ),
        dropoff_zone_weights=zone_weights(
            (0.1, 0.01, 0.35, 0.6, 0.2, 0.2, 0.2, 0.02),
            {zone: weight**0.7 for zone, weight in GREEN_HOT.items()},
        ),
        local_share=0.7, payment_types=(1, 2, 3, 4), payment_weights=(0.55, 0.42, 0.02, 0.01),
        null_block_payment_type=None, night_extra=0.5, rush_extra=1.0, improvement_surcharge=0.3,
        congestion_surcharge=2.75, airport_fee=0.0, jfk_flat_share=0.5, jfk_flat_fare=52.0,
        nassau_share=0.002, negotiated_share=0.04,
    ),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Month:
    """A calendar month (epoch seconds) and the cumulative pickup intensity over its hours."""

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
    day_of_week = (days + 3) % 7  # 1970-01-01, epoch day 0, was a Thursday
    hourly = np.where((day_of_week >= 5)[:, None], _WEEKEND_HOURS, _WEEKDAY_HOURS)
    weights = (np.array(_DAY_OF_WEEK_WEIGHTS)[day_of_week][:, None] * hourly).ravel()
    stray_month = np.datetime64(f"{_STRAY_YEAR}{month[4:]}", "M").astype("datetime64[s]")
    cdf = np.concatenate(([0.0], np.cumsum(weights) / weights.sum()))
    edges_s = np.arange(weights.size + 1, dtype=np.float64) * 3600.0
    return Month(start_s, end_s, int(stray_month.astype(np.int64)), cdf, edges_s)
