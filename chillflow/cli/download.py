"""``chillflow download``: fetch TLC monthly trip files into the landing directory."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import typer

from chillflow import runtime
from chillflow.cli.output import JSON_OPTION, emit, handle_errors


@handle_errors
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
    from chillflow.errors import ChillflowError, ConfigError, NotPublishedError
    from chillflow.logs import bound_run, new_run_id
    from chillflow.schemas import SERVICES
    from chillflow.storage import tlc_download as tlc

    services = services or list(SERVICES)
    for service in services:
        if service not in SERVICES:
            raise ConfigError(f"--service {service!r}: expected one of {', '.join(SERVICES)}")
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
    if as_json:
        emit({"files": files}, as_json=True)
    for f in [] if as_json else files:
        typer.echo(f"{f['status']:<10}  {f['service']:<6}  {f['month']}  {f['path'] or '-'}")
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
