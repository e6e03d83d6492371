"""``chillflow process`` commands."""

from __future__ import annotations

import typer

from chillflow.cli.output import JSON_OPTION, emit, handle_errors

app = typer.Typer(help="Load curated data into PostgreSQL.", no_args_is_help=True)


@app.command("trips")
@handle_errors
def process_trips(
    curated_path: str | None = typer.Argument(
        None, help="Curated Delta table, or Parquet in the curated schema (default from conf)."
    ),
    month: str | None = typer.Option(
        None, "--month", help="YYYY-MM; optional when the source holds one month."
    ),
    service: str | None = typer.Option(
        None, "--service", help="yellow or green; every service of the month by default."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Load one month of curated trips into stg.complete_trip (insert new, update changed)."""
    from chillflow.batch import BatchTripProducer
    from chillflow.errors import ConfigError
    from chillflow.schemas import SERVICES
    from chillflow.settings import parse_month

    if month is not None:
        parse_month(month)
    if service is not None and service not in SERVICES:
        raise ConfigError(f"--service {service!r}: expected one of {', '.join(SERVICES)}")
    stats = BatchTripProducer().process_month(curated_path, month=month, service=service)
    emit(stats, as_json)
