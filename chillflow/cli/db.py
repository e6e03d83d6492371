"""``chillflow db`` commands: the PostgreSQL schema, the zone dimension, the embedded server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from chillflow import runtime
from chillflow.cli.output import JSON_OPTION, emit
from chillflow.database_url import DatabaseUrl
from chillflow.settings import Settings

app = typer.Typer(help="Manage ChillFlow's PostgreSQL database.", no_args_is_help=True)

#: The real TLC zone lookup beside a checkout (``../shared/data/tlc``), used when none is set.
SHARED_ZONE_LOOKUP = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "tlc" / "taxi_zone_lookup.csv"
)


def zone_lookup_path(explicit: Path | None, configured: Path | None) -> Path | None:
    """Choose the zone lookup CSV: ``--zones``, the setting, the shared TLC copy if present."""
    return explicit or configured or (SHARED_ZONE_LOOKUP if SHARED_ZONE_LOOKUP.is_file() else None)


def init_database(
    settings: Settings, database_url: DatabaseUrl, zones: Path | None = None
) -> dict[str, Any]:
    """Create or upgrade the schema, drop staging tables of dead loads, seed dim.zone."""
    import structlog

    from chillflow.storage.postgres import SCHEMA_VERSION, connect, seed_zones
    from chillflow.storage.trips_pg import prepare_database

    log = structlog.get_logger("chillflow.db")
    csv_path = zone_lookup_path(zones, settings.zone_lookup)
    dropped = prepare_database(database_url)
    zone_rows = None
    if csv_path is not None:
        with connect(database_url, action="seeding dim.zone") as conn:
            zone_rows = seed_zones(conn, csv_path)
    else:
        reason = "no zone lookup CSV: pass --zones or set CHILLFLOW_ZONE_LOOKUP"
        log.warning("db.zones_skipped", reason=reason)
    result = {
        "database": str(database_url),
        "embedded_server": None if settings.database_url else str(settings.data_dir / "postgres"),
        "schema_version": SCHEMA_VERSION,
        "staging_tables_dropped": dropped,
        "zones": zone_rows,
        "zones_source": str(csv_path) if csv_path else None,
    }
    log.info("db.initialised", **result)
    return result


@app.command("init")
def init(
    zones: Path | None = typer.Option(
        None,
        "--zones",
        help="TLC taxi_zone_lookup.csv; default CHILLFLOW_ZONE_LOOKUP / [paths] zone_lookup.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create or upgrade the schema and seed dim.zone; safe to run any number of times."""
    settings = runtime.settings()
    result = init_database(settings, runtime.database_url(settings), zones)
    emit(result, as_json)


@app.command("stop")
def stop(as_json: bool = JSON_OPTION) -> None:
    """Stop the embedded PostgreSQL of the data directory if it runs (not DATABASE_URL's)."""
    from chillflow.storage.pg_server import stop_local_postgres

    data_dir = runtime.settings().data_dir / "postgres"
    port = stop_local_postgres(data_dir)
    status = "not running" if port is None else "stopped"
    emit({"embedded_server": str(data_dir), "status": status, "port": port}, as_json)
