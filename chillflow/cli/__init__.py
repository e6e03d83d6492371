"""The ``chillflow`` command line (typer): the app and its stage, demo and download commands."""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import typer

from chillflow import runtime
from chillflow.cli.aggregate import app as aggregate_app
from chillflow.cli.db import app as db_app
from chillflow.cli.output import JSON_OPTION, Commands, emit
from chillflow.cli.schedule import app as schedule_app
from chillflow.cli.schedule import runs

app = typer.Typer(
    name="chillflow",
    help="ChillFlow Batch: curate, load and aggregate NYC TLC taxi trips with Spark + Delta.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=Commands,
)
curate_app = typer.Typer(help="Curate raw TLC Parquet into Delta tables.", no_args_is_help=True)
process_app = typer.Typer(help="Load curated data into PostgreSQL.", no_args_is_help=True)
pipeline_app = typer.Typer(
    help="Run the stages of a month in one Spark application.", no_args_is_help=True
)
jars_app = typer.Typer(help="JVM jars (Delta Lake, PostgreSQL JDBC).", no_args_is_help=True)

RAW_PATH_ARGUMENT = typer.Argument(..., help="Raw TLC Parquet file, directory or glob.")
MONTH_OPTION = typer.Option(None, "--month", help="YYYY-MM; default from file name.")
SEP_OPTION = typer.Option("\n", "--sep", help="Separator between items (',' for spark-submit).")


@curate_app.command("month")
def curate_month(
    raw_path: str = RAW_PATH_ARGUMENT,
    curated_path: Path | None = typer.Argument(
        None, help="Curated Delta table (default from conf); quarantine and DQ metrics beside it."
    ),
    month: str | None = MONTH_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Curate one month: normalise, derive, apply DQ rules, replace the month's Delta slices."""
    from chillflow.batch import MonthlyLoader

    emit(MonthlyLoader().curate_month(raw_path, curated_path, month=month), as_json)


@process_app.command("trips")
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

    emit(BatchTripProducer().process_month(curated_path, month=month, service=service), as_json)


@pipeline_app.command("month")
def pipeline_month(
    raw_path: str = RAW_PATH_ARGUMENT, month: str | None = MONTH_OPTION, as_json: bool = JSON_OPTION
) -> None:
    """Curate a month, load its trips into PostgreSQL and refresh its KPIs; a failure stops it."""
    from chillflow.api.pipeline import MonthlyPipeline

    emit(MonthlyPipeline().run_month(raw_path, month=month), as_json)


def maintain(
    retain_hours: float = typer.Option(
        168.0,
        "--retain-hours",
        help="VACUUM keeps the files of the versions of the last N hours (at least the tables' "
        "delta.deletedFileRetentionDuration, 168 by default).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Compact small files, re-cluster curated months by pickup time, VACUUM old files."""
    from chillflow.stages.maintain import maintain as run_maintain

    settings = runtime.settings()
    spark, database_url = runtime.spark(settings), runtime.database_url(settings)
    emit(run_maintain(spark, settings, database_url, retain_hours), as_json)


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
    emit({"path": str(path), **figures}, as_json, lines=[str(path)])


@jars_app.command("path")
def jars_path(sep: str = SEP_OPTION) -> None:
    """Download the jars if needed and print their local paths (for ``--jars``)."""
    from chillflow.session import jar_paths

    typer.echo(sep.join(str(p) for p in jar_paths(runtime.settings().spark)))


@jars_app.command("packages")
def jars_packages(sep: str = SEP_OPTION) -> None:
    """Print the configured Maven coordinates (for ``--packages``); resolves nothing."""
    typer.echo(sep.join(runtime.settings().spark.packages))


#: The statistics of each stage the demo shows.
_SHOWN = {
    "curate": "input_rows output_rows quarantined_rows retention_rate rejections",
    "process_trips": "rows_read inserted updated unchanged deleted skipped postgres_rows",
    "aggregate": "kpi_rows hours_processed zones_affected mart_rows_copied",
}


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
    from chillflow.generator import generate_month
    from chillflow.report import write_report
    from chillflow.settings import parse_month, tlc_file_name

    parse_month(month)
    settings = runtime.settings()
    log = structlog.get_logger("chillflow.demo")
    raw = settings.data_dir / "landing" / tlc_file_name("yellow", month)
    if not raw.exists():
        started = time.monotonic()
        generate_month(raw, service="yellow", month=month, rows=rows, seed=seed)
        seconds = round(time.monotonic() - started, 1)
        log.info("demo.generated", path=str(raw), rows=rows, sec=seconds)
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
    return {key: stats.get(key) for key in [*keys.split(), "duration_sec"]}


def download(
    services: list[str] | None = typer.Option(
        None, "--service", help="yellow or green; repeat for both (default: both)."
    ),
    month: str | None = typer.Option(None, "--month", help="One month, YYYY-MM."),
    start: str | None = typer.Option(None, "--start", help="First month of a range, YYYY-MM."),
    end: str | None = typer.Option(None, "--end", help="Last month of a range, YYYY-MM."),
    to: Path | None = typer.Option(None, "--to", help="Target directory (default: landing)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Download TLC monthly files; skip identical ones, resume interrupted ones.

    Exit code 11 when a month is not published (yet), else the first failure's exit code.
    """
    from chillflow.errors import ChillflowError, NotPublishedError
    from chillflow.logs import bound_run, new_run_id
    from chillflow.schemas import SERVICES
    from chillflow.settings import parse_service
    from chillflow.storage import tlc_download as tlc

    services = [parse_service(service, "--service") for service in services or SERVICES]
    months = _months(month, start, end)
    settings = runtime.settings()
    conf = settings.download
    target = (to or tlc.landing_dir(settings.data_dir)).resolve()
    bar = sys.stderr.isatty()
    files, errors = [], []
    with bound_run("download", new_run_id()):
        for one_month, service in itertools.product(months, services):
            try:
                files.append(tlc.download_month(service, one_month, target, conf, bar=bar))
            except ChillflowError as exc:
                status = "missing" if isinstance(exc, NotPublishedError) else "failed"
                files.append(
                    {"service": service, "month": one_month, "path": None, "status": status}
                    | {"bytes": 0, "seconds": None, "etag": None, "error": str(exc)}
                )
                typer.echo(f"error: {exc}", err=True)
                errors.append(exc)
    lines = [
        f"{f['status']:<10}  {f['service']:<6}  {f['month']}  {f['path'] or '-'}" for f in files
    ]
    emit({"files": files}, as_json, lines=lines)
    failed = [e for e in errors if not isinstance(e, NotPublishedError)]
    if errors:
        raise typer.Exit((failed or errors)[0].exit_code)


def _months(month: str | None, start: str | None, end: str | None) -> list[str]:
    from chillflow.errors import ConfigError
    from chillflow.hour_window import month_range
    from chillflow.settings import parse_month

    if (month is None) == (start is None and end is None) or (start is None) != (end is None):
        raise ConfigError("give either --month YYYY-MM or both --start YYYY-MM and --end YYYY-MM")
    if month is not None:
        return [parse_month(month)]
    first, last = parse_month(start), parse_month(end)
    if first > last:
        raise ConfigError(f"--start {first} is after --end {last}")
    return month_range(first, last)


app.add_typer(curate_app, name="curate")
app.add_typer(aggregate_app, name="aggregate")
app.add_typer(jars_app, name="jars")
app.add_typer(process_app, name="process")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(db_app, name="db")
app.add_typer(schedule_app, name="schedule")
app.command("demo")(demo)
app.command("download")(download)
app.command("maintain")(maintain)
app.command("report")(report)
app.command("runs")(runs)


def main() -> None:
    """Console-script entry point."""
    app()
