"""``chillflow demo``: generate a sample month and run the pipeline on the embedded defaults."""

from __future__ import annotations

import time

import typer

from chillflow.cli.output import JSON_OPTION, emit, handle_errors


@handle_errors
def demo(
    rows: int = typer.Option(200_000, "--rows", min=1, help="Rows in the generated month."),
    month: str = typer.Option("2025-01", "--month", help="Month to generate (YYYY-MM)."),
    seed: int = typer.Option(42, "--seed", help="Generator seed."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Generate a realistic yellow month, curate it and load it, printing each stage's stats."""
    import structlog

    from chillflow import runtime
    from chillflow.batch import MonthlyLoader
    from chillflow.generator import generate_month, tlc_file_name
    from chillflow.settings import parse_month

    parse_month(month)
    settings = runtime.settings()
    log = structlog.get_logger("chillflow.demo")
    raw = settings.data_dir / "landing" / tlc_file_name("yellow", month)
    if not raw.exists():
        started = time.monotonic()
        raw.parent.mkdir(parents=True, exist_ok=True)
        generate_month(raw, service="yellow", month=month, rows=rows, seed=seed)
        log.info(
            "demo.generated", path=str(raw), rows=rows, sec=round(time.monotonic() - started, 1)
        )
    spark = runtime.spark(settings)
    results = {"raw_file": str(raw)}
    results["curate"] = MonthlyLoader(settings, spark).curate_month(raw)
    emit(results, as_json)
