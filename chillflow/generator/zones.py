"""NYC taxi zones for the generator: boroughs, zone classes, centres, hot spots, zone weights."""

from __future__ import annotations

import numpy as np

JFK, LGA, EWR = 132, 138, 1
AIRPORTS = (JFK, LGA)

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
UNKNOWN, NEWARK, CORE, UPPER, BK, QN, BX, SI = range(8)
_CLASS_OF_BOROUGH = (
    (_MANHATTAN, CORE),
    (_UPPER_MANHATTAN, UPPER),
    (_BROOKLYN, BK),
    (_QUEENS, QN),
    (_BRONX, BX),
    (_STATEN_ISLAND, SI),
    ((EWR,), NEWARK),
)
# (latitude, longitude, spread in degrees) of each class, for the pre-2016 coordinate layout.
_CLASS_CENTRES = {
    UNKNOWN: (40.75, -73.97, 0.05),
    NEWARK: (40.6895, -74.1745, 0.004),
    CORE: (40.750, -73.985, 0.018),
    UPPER: (40.820, -73.945, 0.015),
    BK: (40.665, -73.950, 0.035),
    QN: (40.730, -73.820, 0.045),
    BX: (40.845, -73.880, 0.025),
    SI: (40.580, -74.150, 0.030),
}
_AIRPORT_CENTRES = {JFK: (40.6413, -73.7781, 0.006), LGA: (40.7769, -73.8740, 0.004)}


def _zone_classes() -> np.ndarray:
    classes = np.full(266, UNKNOWN, dtype=np.int64)
    for zones, zone_class in _CLASS_OF_BOROUGH:
        classes[list(zones)] = zone_class
    return classes


def _zone_centres() -> np.ndarray:
    centres = np.array([_CLASS_CENTRES[zone_class] for zone_class in ZONE_CLASS])
    for zone, centre in _AIRPORT_CENTRES.items():
        centres[zone] = centre
    return centres


ZONE_IDS = np.arange(266)
ZONE_CLASS = _zone_classes()
BOROUGH = np.where(ZONE_CLASS == UPPER, CORE, ZONE_CLASS)
# Manhattan south of 96th Street pays the congestion surcharge (2019+).
IN_CONGESTION_ZONE = ZONE_CLASS == CORE
IN_CBD = np.isin(ZONE_IDS, _CBD)
ZONE_CENTRES = _zone_centres()


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


def zone_weights(class_weights: tuple[float, ...], hot: dict[int, float]) -> np.ndarray:
    """Probability of each zone id (index), from a weight per zone class (in class order)."""
    weights = np.array(class_weights, dtype=float)[ZONE_CLASS]
    weights[0] = 0.0
    for zone, weight in hot.items():
        weights[zone] = weight
    return weights / weights.sum()
