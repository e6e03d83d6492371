"""``chillflow jars``: the JVM jars (Delta Lake, PostgreSQL JDBC) for sessions and spark-submit."""

from __future__ import annotations

import typer

from chillflow import runtime
from chillflow.cli.output import handle_errors

app = typer.Typer(help="JVM jars (Delta Lake, PostgreSQL JDBC).", no_args_is_help=True)

SEP_OPTION = typer.Option("\n", "--sep", help="Separator between items (',' for spark-submit).")


@app.command("path")
@handle_errors
def jars_path(sep: str = SEP_OPTION) -> None:
    """Download the jars if needed and print their local paths (for ``--jars``)."""
    from chillflow.session import jar_paths

    typer.echo(sep.join(str(p) for p in jar_paths(runtime.settings().spark)))


@app.command("packages")
@handle_errors
def jars_packages(sep: str = SEP_OPTION) -> None:
    """Print the configured Maven coordinates (for ``--packages``); resolves nothing."""
    typer.echo(sep.join(runtime.settings().spark.packages))
