"""Shared CLI plumbing: clean error messages, exit codes and result output."""

from __future__ import annotations

import json
import sys
from typing import Any

import structlog
import typer
from typer.core import TyperGroup

from chillflow.api import expected_failure
from chillflow.errors import ChillflowError, is_spark_error
from chillflow.logs import configure_logging

JSON_OPTION = typer.Option(False, "--json", help="Print the result as one JSON object on stdout.")


class Commands(TyperGroup):
    """The command group: a command's expected failure is one clear line and an exit code.

    Expected failures are those :func:`chillflow.api.expected_failure` recognises; a Spark
    error's JVM stack trace is logged at DEBUG level. Logs go to stderr from the start, before
    the settings configure them: stdout carries only the result.
    """

    def invoke(self, ctx: typer.Context) -> Any:  # noqa: D102
        if not structlog.is_configured():
            configure_logging("INFO")  # until the settings give the level
        log = structlog.get_logger("chillflow.cli")
        try:
            return super().invoke(ctx)
        except Exception as exc:
            failure = expected_failure(exc)
            if failure is None:
                raise
            hint = ""
            if is_spark_error(exc) and type(failure) is ChillflowError:
                log.debug("command.spark_trace", trace=str(exc))
                hint = "\n(set LOG_LEVEL=DEBUG for the JVM stack trace)"
            error = type(exc if hint else failure).__name__
            log.error("command.failed", error=error, message=str(failure))
            typer.echo(f"error: {failure}{hint}", err=True)
            raise typer.Exit(failure.exit_code) from None


def emit(result: dict[str, Any], as_json: bool, lines: list[str] | None = None) -> None:
    """Print a command's result: JSON on request, else ``lines`` or aligned ``key: value`` lines."""
    if as_json:
        sys.stdout.write(json.dumps(result, default=str, sort_keys=True) + "\n")
        return
    if lines is not None:
        typer.echo("\n".join(lines))
        return
    width = max((len(key) for key in result), default=0)
    for key, value in result.items():
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        typer.echo(f"{key:<{width}}  {shown}")


def aligned(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as columns aligned under their keys; ``(none)`` when there is no row."""
    if not rows:
        return ["(none)"]
    cells = [list(rows[0]), *([str(value) for value in row.values()] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
