"""``chillflow runs``: the run ledger (``ops.job_run``) of every stage and scheduled job."""

from __future__ import annotations

from typing import Any

import typer

from chillflow import runtime
from chillflow.cli.output import JSON_OPTION, emit, handle_errors

JOB_OPTION = typer.Option(None, "--job", help="Only this job's runs (curate, aggregate, …).")
LIMIT_OPTION = typer.Option(20, "--limit", min=1, help="At most this many runs, newest first.")


@handle_errors
def runs(
    job: str | None = JOB_OPTION, limit: int = LIMIT_OPTION, as_json: bool = JSON_OPTION
) -> None:
    """Show the runs recorded in ops.job_run, newest first."""
    from chillflow.storage.ledger import list_runs
    from chillflow.storage.postgres import connect, init_schema

    with connect(runtime.database_url(runtime.settings())) as conn:
        init_schema(conn)
        history = [run.as_dict() for run in list_runs(conn, job=job, limit=limit)]
    if as_json:
        emit({"runs": history}, as_json=True)
        return
    print_table(
        [
            {
                "id": run["id"],
                "job": run["job"],
                "period": run["period"],
                "attempt": run["attempt"],
                "status": run["status"],
                "started": _utc_seconds(run["started_at"]),
                "finished": _utc_seconds(run["finished_at"]),
                "read": _count(run["rows_read"]),
                "written": _count(run["rows_written"]),
                "error": (run["error"] or "")[:80],
            }
            for run in history
        ]
    )


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print rows as aligned columns under their keys; ``(none)`` when there are none."""
    if not rows:
        typer.echo("(none)")
        return
    headers = list(rows[0])
    cells = [[str(row[key]) for key in headers] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(headers)]
    for line in [headers, *cells]:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _utc_seconds(timestamp: str | None) -> str:
    return f"{timestamp[:19]}Z" if timestamp else "-"


def _count(rows: int | None) -> str:
    return "-" if rows is None else str(rows)
