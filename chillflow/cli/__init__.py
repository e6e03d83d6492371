"""The ``chillflow`` command line (typer)."""

from __future__ import annotations

import typer

from chillflow.cli.curate import app as curate_app
from chillflow.cli.demo import demo
from chillflow.cli.jars import app as jars_app

app = typer.Typer(
    name="chillflow",
    help="ChillFlow Batch: curate, load and aggregate NYC TLC taxi trips with Spark + Delta.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(curate_app, name="curate")
app.add_typer(jars_app, name="jars")
app.command("demo")(demo)


def main() -> None:
    """Console-script entry point."""
    app()
