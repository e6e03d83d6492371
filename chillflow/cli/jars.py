"""``chillflow jars``: resolve the JVM jars once and print their paths."""

from __future__ import annotations

import typer

from chillflow.cli.output import handle_errors

app = typer.Typer(help="JVM jars (Delta Lake, PostgreSQL JDBC).", no_args_is_help=True)


@app.command("path")
@handle_errors
def jars_path(
    sep: str = typer.Option("\n", "--sep", help="Separator between paths (',' for --jars)."),
) -> None:
    """Download the jars if needed and print their local paths."""
    from chillflow import runtime
    from chillflow.session import jar_paths

    typer.echo(sep.join(str(p) for p in jar_paths(runtime.settings().spark)))
