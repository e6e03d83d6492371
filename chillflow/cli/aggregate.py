"""``chillflow aggregate`` commands: hourly pickup-zone KPIs in Delta and the PostgreSQL mart."""

from __future__ import annotations

import typer

from chillflow.cli.output import JSON_OPTION, emit

app = typer.Typer(
    help="Hourly pickup-zone KPIs: Delta MERGE refreshes published to mart.zone_hourly_kpis.",
    no_args_is_help=True,
)

SOURCE_OPTION = typer.Option(
    None,
    "--source",
    help="Trips to aggregate: postgres (stg.complete_trip, default) or curated (Delta table).",
)


@app.command("run")
def run(
    full_refresh: bool = typer.Option(
        False, "--full-refresh", help="Recompute everything and replace both stores."
    ),
    day: str | None = typer.Option(
        None,
        "--date",
        help="Day to refresh, YYYY-MM-DD, as hour_ts holds it (default: yesterday on the data's "
        "wall clock, [curate] data_time_zone).",
    ),
    until: str | None = typer.Option(
        None,
        "--until",
        help="First hour after the window, YYYY-MM-DDTHH, as hour_ts holds it (the data's wall "
        "clock); instead of --date.",
    ),
    lookback_hours: int | None = typer.Option(
        None,
        "--lookback-hours",
        min=1,
        help="Hours back from the end of --date, or from --until, to recompute (default 24).",
    ),
    source: str | None = SOURCE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Refresh one day or the hours before --until incrementally, or everything (--full-refresh)."""
    from chillflow.batch import BatchAggregator
    from chillflow.errors import ConfigError
    from chillflow.hour_window import parse_date, parse_hour

    if full_refresh:
        if day is not None or until is not None or lookback_hours is not None:
            raise ConfigError(
                "--full-refresh recomputes every hour: drop --date/--until/--lookback-hours"
            )
        stats = BatchAggregator().aggregate_full_refresh(source=source)
    elif until is not None:
        if day is not None:
            raise ConfigError("--until and --date both set the window's end: give one")
        end = parse_hour(until, "--until")
        stats = BatchAggregator().aggregate_until(end, lookback_hours, source=source)
    else:
        target = parse_date(day, "--date") if day is not None else None
        stats = BatchAggregator().aggregate_incremental(target, lookback_hours, source=source)
    emit(stats, as_json)


@app.command("backfill")
def backfill(
    start: str = typer.Option(..., "--start", help="First UTC day, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last UTC day (inclusive), YYYY-MM-DD."),
    source: str | None = SOURCE_OPTION,
    restart: bool = typer.Option(
        False, "--restart", help="Ignore chunks an unfinished earlier backfill completed."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Refresh a date range one calendar month at a time; a rerun resumes an unfinished one."""
    from chillflow.batch import BatchAggregator
    from chillflow.hour_window import parse_date

    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    stats = BatchAggregator().aggregate_backfill(first, last, source=source, restart=restart)
    emit(stats, as_json)


@app.command("status")
def status(as_json: bool = JSON_OPTION) -> None:
    """Rows, hour range and zones of the KPI table, mart rows, last run time and outcome."""
    from chillflow.batch import BatchAggregator

    emit(BatchAggregator().status(), as_json)
