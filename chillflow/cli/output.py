"""Shared CLI plumbing: clean error messages, exit codes and result output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
import typer

from chillflow.errors import ChillflowError, DatabaseError, error_summary, is_spark_error
from chillflow.logs import configure_logging

F = TypeVar("F", bound=Callable[..., Any])

JSON_OPTION = typer.Option(False, "--json", help="Print the result as one JSON object on stdout.")


def handle_errors(command: F) -> F:
    """Turn expected failures into one clear line on stderr and a non-zero exit code.

    ChillflowError subclasses carry their own exit code; any PostgreSQL failure that no storage
    function reported is a DatabaseError too. Other errors raised inside Spark's JVM are
    summarised to their first line (the JVM stack trace is logged at DEBUG level). Logs go to
    stderr from the start, before the settings configure them: stdout carries only the result.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not structlog.is_configured():
            configure_logging("INFO")  # until the settings give the level
        log = structlog.get_logger("chillflow.cli")
        try:
            return command(*args, **kwargs)
        except Exception as exc:
            failure = _as_chillflow_error(exc)
            if failure is not None:
                log.error("command.failed", error=type(failure).__name__, message=str(failure))
                typer.echo(f"error: {failure}", err=True)
                raise typer.Exit(failure.exit_code) from None
            if not is_spark_error(exc):
                raise
            summary = error_summary(exc)
            log.debug("command.spark_trace", trace=str(exc))
            log.error("command.failed", error=type(exc).__name__, message=summary)
            typer.echo(
                f"error: Spark failed: {summary}\n(set LOG_LEVEL=DEBUG for the JVM stack trace)",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _as_chillflow_error(exc: Exception) -> ChillflowError | None:
    if isinstance(exc, ChillflowError):
        return exc
    from chillflow.storage.postgres import failure_reason

    reason = failure_reason(exc)
    return None if reason is None else DatabaseError(f"PostgreSQL failed: {reason}")


def emit(result: dict[str, Any], as_json: bool, table: list[dict[str, Any]] | None = None) -> None:
    """Print a command's result: JSON on request, else ``table`` or aligned ``key: value`` lines.

    ``table`` rows are printed as aligned columns under their keys, ``(none)`` when empty.
    """
    if as_json:
        sys.stdout.write(json.dumps(result, default=str, sort_keys=True) + "\n")
        return
    if table == []:
        typer.echo("(none)")
    elif table is not None:
        cells = [list(table[0]), *([str(value) for value in row.values()] for row in table)]
        widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
        for line in cells:
            typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    else:
        width = max((len(k) for k in result), default=0)
        for key, value in result.items():
            shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
            typer.echo(f"{key:<{width}}  {shown}")
