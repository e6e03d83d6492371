"""``chillflow demo``: generate a sample month and run the whole pipeline on embedded defaults."""

from __future__ import annotations

import time

import typer

from chillflow import runtime
from chillflow.cli.output import JSON_OPTION, emit, handle_errors

#: The statistics of each stage the demo shows.
_SHOWN = {
    "curate": "input_rows output_rows quarantined_rows retention_rate rejections duration_sec",
    "process_trips": (
        "rows_read inserted updated unchanged deleted skipped postgres_rows duration_sec"
    ),
    "aggregate": "kpi_rows hours_processed zones_affected mart_rows_copied duration_sec",
}


@handle_errors
def demo(
    rows: int = typer.Option(200_000, "--rows", min=1, help="Rows in the generated month."),
    month: str = typer.Option("2025-01", "--month", help="Month to generate (YYYY-MM)."),
    seed: int = typer.Option(42, "--seed", help="Generator seed."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Generate a yellow month, run the month's pipeline on it and write the report.

    Uses DATABASE_URL when set, else the embedded PostgreSQL under the data directory
    (started on 127.0.0.1 and reused by later runs). Every stage is idempotent: running the
    demo again converges to the same tables.
    """
    import structlog

    from chillflow.api.pipeline import STAGES
    from chillflow.batch import BatchAggregator, MonthlyPipeline
    from chillflow.cli.db import init_database
    from chillflow.generator import generate_month, tlc_file_name
    from chillflow.report import write_report
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
    database_url = runtime.database_url(settings)
    database = init_database(settings, database_url)
    spark = runtime.spark(settings)
    month_run = MonthlyPipeline(settings, spark, database_url).run_month(raw, month=month)
    status = BatchAggregator(settings, spark, database_url).status()
    results = {
        "raw_file": str(raw),
        "database": database["database"],
        "embedded_server": database["embedded_server"],
        "curated_table": str(settings.tables.curated),
        "kpi_table": str(settings.tables.kpis),
        **{stage: _pick(month_run[stage], _SHOWN[stage]) for stage in STAGES},
        "timings_sec": month_run["timings_sec"],
        "kpi_hours": f"{status['first_hour']} .. {status['last_hour']}",
    }
    results["report"] = str(write_report(spark, settings, database_url, [month])[0])
    emit(results, as_json)


def _pick(stats: dict, keys: str) -> dict:
    return {key: stats.get(key) for key in keys.split()}
