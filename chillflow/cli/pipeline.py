"""``chillflow pipeline`` commands."""

from __future__ import annotations

import typer

from chillflow.cli.output import JSON_OPTION, emit, handle_errors

app = typer.Typer(help="Run the stages of a month in one Spark application.", no_args_is_help=True)


@app.command("month")
@handle_errors
def pipeline_month(
    raw_path: str = typer.Argument(..., help="Raw TLC Parquet file, directory or glob."),
    month: str | None = typer.Option(None, "--month", help="YYYY-MM; default from file name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Curate a month, load its trips into PostgreSQL and refresh its KPIs; a failure stops it."""
    from chillflow.api.pipeline import MonthlyPipeline

    emit(MonthlyPipeline().run_month(raw_path, month=month), as_json)
