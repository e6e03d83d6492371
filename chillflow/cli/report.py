"""``chillflow report``: one self-contained HTML page of data quality, KPIs and runs."""

from __future__ import annotations

from pathlib import Path

import typer

from chillflow import runtime
from chillflow.cli.output import JSON_OPTION, emit, handle_errors


@handle_errors
def report(
    months: list[str] | None = typer.Option(
        None,
        "--month",
        metavar="YYYY-MM",
        help="Month to report (repeatable; default: the latest).",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        metavar="PATH",
        help="HTML file (default <data>/reports/chillflow-report.html).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the HTML report (data quality per month, KPIs, runs, Delta tables); print its path.

    With --json, print the figures behind every table and chart instead, with the path.
    """
    from chillflow.report import write_report
    from chillflow.settings import parse_month

    for month in months or []:
        parse_month(month)
    settings = runtime.settings()
    path, figures = write_report(
        runtime.spark(settings), settings, runtime.database_url(settings), months, out
    )
    if as_json:
        emit({"path": str(path), **figures}, as_json=True)
    else:
        typer.echo(str(path))
