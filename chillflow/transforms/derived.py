"""Derived trip measures: metric distance, duration and average speed."""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

KM_PER_MILE = 1.60934
_MICROS_PER_MINUTE = 60_000_000.0  # a double: a decimal literal made curate ~1.6x slower


def with_derived_fields(trips: DataFrame) -> DataFrame:
    """Add ``distance_km``, ``duration_min`` and ``avg_speed_kmh``.

    ``avg_speed_kmh`` is null where the duration is not positive (Spark's ANSI mode would
    otherwise raise on the division by zero).

    Args:
        trips: Staged trips.

    Returns:
        The trips with the three derived columns appended.
    """
    duration_min = (F.unix_micros("dropoff_ts") - F.unix_micros("pickup_ts")) / F.lit(
        _MICROS_PER_MINUTE
    )
    distance_km = F.col("trip_distance") * F.lit(KM_PER_MILE)
    has_positive_duration = duration_min > 0
    return trips.withColumns(
        {
            "distance_km": distance_km,
            "duration_min": duration_min,
            "avg_speed_kmh": F.when(has_positive_duration, distance_km / (duration_min / 60.0)),
        }
    )
