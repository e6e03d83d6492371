"""DuckDB baseline of the hourly pickup-zone KPIs, over the curated and quarantine Parquet files.

The same definitions as ``chillflow.transforms.kpis`` (fixed-point sums included) and the same
``vehicle_id_h`` formula as ``chillflow.transforms.keys``, in DuckDB's dialect.

Run as a script for a whole-process figure (time and peak RSS):
``python bench/duckdb_kpis.py CURATED_FILES.txt QUARANTINE_FILES.txt SALT``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import duckdb

VEHICLE_BUCKETS = 5000


def _files(paths: list[str]) -> str:
    return "[" + ", ".join(f"'{p}'" for p in paths) + "]"


def kpi_sql(curated: list[str], quarantine: list[str]) -> str:
    """One query computing every KPI; the salt is a prepared-statement parameter."""
    trips = f"read_parquet({_files(curated)})"
    quarantined = (
        f"SELECT pu_zone_id AS zone_id, date_trunc('hour', pickup_ts) AS hour_ts, "
        f"count(*) AS quarantined_rows FROM read_parquet({_files(quarantine)}) "
        f"WHERE pu_zone_id IS NOT NULL AND pickup_ts IS NOT NULL GROUP BY ALL"
        if quarantine
        else "SELECT NULL::INT AS zone_id, NULL::TIMESTAMP AS hour_ts, 0 AS quarantined_rows "
        "WHERE false"
    )
    return f"""
        WITH keyed AS (
            SELECT *, 'veh_' || substr(sha256(
                $salt || '|vehicle|' || coalesce(CAST(vendor_id AS VARCHAR), 'None') || '|'
                || CAST(source_row % {VEHICLE_BUCKETS} AS VARCHAR)), 1, 12) AS vehicle_id_h
            FROM {trips}
            WHERE pu_zone_id IS NOT NULL AND pickup_ts IS NOT NULL
        ), sums AS (
            SELECT pu_zone_id AS zone_id, date_trunc('hour', pickup_ts) AS hour_ts,
                   count(*) AS trips,
                   sum(CAST(floor(fare_amount * 100 + 0.5) AS BIGINT)) AS fare_c,
                   count(fare_amount) AS fare_n,
                   sum(CAST(floor(tip_amount * 100 + 0.5) AS BIGINT)) AS tip_c,
                   count(tip_amount) AS tip_n,
                   sum(CAST(floor(avg_speed_kmh * 1000 + 0.5) AS BIGINT)) AS speed_m,
                   count(avg_speed_kmh) AS speed_n,
                   sum(CAST(floor(distance_km * 1000 + 0.5) AS BIGINT)) AS dist_m,
                   count(distance_km) AS dist_n,
                   sum(CAST(floor(duration_min * 60000 + 0.5) AS BIGINT)) AS dur_ms,
                   count(duration_min) AS dur_n,
                   count(*) FILTER (WHERE payment_type = 1) AS card_trips,
                   count(DISTINCT vehicle_id_h) AS unique_vehicles,
                   sum(CAST(floor(total_amount * 100 + 0.5) AS BIGINT)) AS revenue_c
            FROM keyed GROUP BY ALL
        ), quarantined AS ({quarantined})
        SELECT s.zone_id, s.hour_ts, trips,
               fare_c / (fare_n * 100.0) AS avg_fare,
               tip_c / (tip_n * 100.0) AS avg_tip,
               speed_m / (speed_n * 1000.0) AS avg_speed_kmh,
               dist_m / (dist_n * 1000.0) AS avg_distance_km,
               dur_ms / (dur_n * 60000.0) AS avg_duration_min,
               card_trips * 100.0 / trips AS pct_card,
               unique_vehicles,
               revenue_c / 100.0 AS total_revenue,
               coalesce(q.quarantined_rows, 0) * 100.0
                   / (trips + coalesce(q.quarantined_rows, 0)) AS outlier_rate
        FROM sums s LEFT JOIN quarantined q USING (zone_id, hour_ts)
    """


def duckdb_kpis(
    con: duckdb.DuckDBPyConnection, curated: list[str], quarantine: list[str], salt: str
) -> duckdb.DuckDBPyConnection:
    """Compute the KPIs into the temporary table ``duck_kpis``; return the connection."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE duck_kpis AS {kpi_sql(curated, quarantine)}",
        {"salt": salt},
    )
    return con


if __name__ == "__main__":
    started = time.monotonic()
    curated_files = Path(sys.argv[1]).read_text().split()
    quarantine_files = Path(sys.argv[2]).read_text().split()
    con = duckdb_kpis(duckdb.connect(), curated_files, quarantine_files, sys.argv[3])
    rows = con.execute("SELECT count(*) FROM duck_kpis").fetchone()[0]
    print(rows, round(time.monotonic() - started, 3))
