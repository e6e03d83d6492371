"""DuckDB baseline of the curate transform: same normalisation, derived fields and DQ rules.

Run as a script for the whole-process figure: ``python bench/duckdb_curate.py RAW OUT_DIR MONTH``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import duckdb

# The rules of conf/quality_rules.toml, written in DuckDB's dialect.
RULES = {
    "pickup_before_dropoff": ("pickup_ts < dropoff_ts", True),
    "speed_plausible": ("avg_speed_kmh <= 200", True),
    "total_amount_non_negative": ("total_amount >= 0", True),
    "required_fields_present": (
        "pickup_ts IS NOT NULL AND dropoff_ts IS NOT NULL "
        "AND pu_zone_id IS NOT NULL AND do_zone_id IS NOT NULL",
        True,
    ),
    "zone_ids_known": ("pu_zone_id BETWEEN 1 AND 265 AND do_zone_id BETWEEN 1 AND 265", True),
    "pickup_in_file_month": ("strftime(pickup_ts, '%Y-%m') = month", True),
    "duration_within_limit": ("duration_min <= 720", True),
    "passenger_count_plausible": (
        "passenger_count IS NULL OR passenger_count BETWEEN 0 AND 9",
        False,
    ),
}


def _flagged_view(con: duckdb.DuckDBPyConnection, raw: Path, month: str) -> None:
    """Create the view ``flagged``: staged, derived and rule-checked rows of one yellow file."""
    failed = ", ".join(
        f"CASE WHEN coalesce({pred}, false) THEN NULL ELSE '{name}' END"
        for name, (pred, _) in RULES.items()
    )
    rejecting = " OR ".join(
        f"NOT coalesce({pred}, false)" for pred, rejects in RULES.values() if rejects
    )
    con.execute(f"""
        CREATE TEMP VIEW flagged AS
        WITH staged AS (
            SELECT 'yellow' AS service, CAST(VendorID AS INT) AS vendor_id,
                   CAST(tpep_pickup_datetime AS TIMESTAMP) AS pickup_ts,
                   CAST(tpep_dropoff_datetime AS TIMESTAMP) AS dropoff_ts,
                   TRY_CAST(passenger_count AS INT) AS passenger_count,
                   CAST(trip_distance AS DOUBLE) AS trip_distance,
                   TRY_CAST(RatecodeID AS INT) AS rate_code, store_and_fwd_flag,
                   CAST(PULocationID AS INT) AS pu_zone_id, CAST(DOLocationID AS INT) AS do_zone_id,
                   TRY_CAST(payment_type AS INT) AS payment_type, fare_amount, extra, mta_tax,
                   tip_amount, tolls_amount, improvement_surcharge, total_amount,
                   congestion_surcharge, Airport_fee AS airport_fee, cbd_congestion_fee,
                   '{month}' AS month, filename AS source_file, file_row_number AS source_row
            FROM read_parquet('{raw}', filename = true, file_row_number = true)
        ), derived AS (
            SELECT *, trip_distance * 1.60934 AS distance_km,
                   (epoch_us(dropoff_ts) - epoch_us(pickup_ts)) / 60000000.0 AS duration_min
            FROM staged
        ), speed AS (
            SELECT *, CASE WHEN duration_min > 0 THEN distance_km / (duration_min / 60) END
                      AS avg_speed_kmh
            FROM derived
        )
        SELECT *, list_filter([{failed}], lambda x: x IS NOT NULL) AS failed_rules,
               ({rejecting}) AS rejected
        FROM speed
    """)


def transform_with_duckdb(raw: Path, month: str) -> int:
    """The transform alone: every flagged row materialised in memory, nothing written."""
    con = duckdb.connect()
    _flagged_view(con, raw, month)
    con.execute("CREATE TEMP TABLE materialised AS SELECT * FROM flagged")
    return con.execute("SELECT count(*) FROM materialised").fetchone()[0]


def curate_with_duckdb(raw: Path, out_dir: Path, month: str) -> dict[str, int]:
    """Curate one yellow file with DuckDB, writing curated and quarantine Parquet."""
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    _flagged_view(con, raw, month)
    con.execute(
        f"COPY (SELECT * EXCLUDE (rejected) FROM flagged WHERE NOT rejected) "
        f"TO '{out_dir / 'curated.parquet'}' (FORMAT parquet, COMPRESSION snappy)"
    )
    con.execute(
        f"COPY (SELECT * EXCLUDE (rejected) FROM flagged WHERE rejected) "
        f"TO '{out_dir / 'quarantine.parquet'}' (FORMAT parquet, COMPRESSION snappy)"
    )
    curated = con.execute(f"SELECT count(*) FROM '{out_dir / 'curated.parquet'}'").fetchone()[0]
    quarantined = con.execute(
        f"SELECT count(*) FROM '{out_dir / 'quarantine.parquet'}'"
    ).fetchone()[0]
    return {"output_rows": curated, "quarantined_rows": quarantined}


if __name__ == "__main__":
    started = time.monotonic()
    counts = curate_with_duckdb(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
    print(counts, round(time.monotonic() - started, 3))
