"""``chillflow curate`` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from chillflow.cli.output import JSON_OPTION, emit, handle_errors

app = typer.Typer(help="Curate raw TLC Parquet into Delta tables.", no_args_is_help=True)


@app.command("month")
@handle_errors
def curate_month(
    raw_path: str = typer.Argument(..., help="Raw TLC Parquet file, directory or glob."),
    curated_path: Path | None = typer.Argument(
        None, help="Curated Delta table (default from conf); quarantine and DQ metrics beside it."
    ),
    month: str | None = typer.Option(None, "--month", help="YYYY-MM; default from file name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Curate one month: normalise, derive, apply DQ rules, replace the month's Delta slices."""
    from chillflow.batch import MonthlyLoader
    from chillflow.settings import parse_month

    if month is not None:
        parse_month(month)
    stats = MonthlyLoader().curate_month(raw_path, curated_path, month=month)
    emit(stats, as_json)
