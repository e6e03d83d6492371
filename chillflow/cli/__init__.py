"""The ``chillflow`` command line (typer)."""

from __future__ import annotations

import typer

from chillflow.cli.aggregate import app as aggregate_app
from chillflow.cli.curate import app as curate_app
from chillflow.cli.db import app as db_app
from chillflow.cli.demo import demo
from chillflow.cli.download import download
from chillflow.cli.jars import app as jars_app
from chillflow.cli.maintain import maintain
from chillflow.cli.pipeline import app as pipeline_app
from chillflow.cli.process import app as process_app
from chillflow.cli.report import report
from chillflow.cli.runs import runs
from chillflow.cli.schedule import app as schedule_app

app = typer.Typer(
    name="chillflow",
    help="ChillFlow Batch: curate, load and aggregate NYC TLC taxi trips with Spark + Delta.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
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
