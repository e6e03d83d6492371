"""``chillflow schedule`` and ``chillflow runs``: the scheduler, its jobs, the run ledger."""

from __future__ import annotations

import shlex

import typer

from chillflow import runtime
from chillflow.cli.output import JSON_OPTION, aligned, emit
from chillflow.sections import YEARS

app = typer.Typer(
    help="Run the batch jobs on their schedules (conf/schedules.toml) and show their history.",
    no_args_is_help=True,
)


def runs(
    job: str | None = typer.Option(
        None, "--job", help="Only this job's runs (curate, aggregate, …)."
    ),
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many runs, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the runs recorded in ops.job_run, newest first."""
    from chillflow.storage.ledger import list_runs
    from chillflow.storage.postgres import connect, init_schema

    with connect(runtime.database_url(runtime.settings())) as conn:
        init_schema(conn)
        history = [run.as_dict() for run in list_runs(conn, job=job, limit=limit)]
    rows = [
        {key: run[key] for key in ("id", "job", "period", "attempt", "status")}
        | {
            "started": f"{run['started_at'][:19]}Z" if run["started_at"] else "-",
            "finished": f"{run['finished_at'][:19]}Z" if run["finished_at"] else "-",
            "read": "-" if run["rows_read"] is None else str(run["rows_read"]),
            "written": "-" if run["rows_written"] is None else str(run["rows_written"]),
            "error": (run["error"] or "")[:80],
        }
        for run in history
    ]
    emit({"runs": history}, as_json, aligned(rows))


@app.command("start")
def start() -> None:
    """Run the schedule in the foreground until SIGINT or SIGTERM.

    On a signal no new job starts and the running one may finish within shutdown_grace_sec;
    after that, or on a second signal, it is terminated and recorded as cancelled.
    """
    from chillflow.scheduler.scheduler import BatchScheduler

    BatchScheduler(runtime.settings()).start()


@app.command("jobs")
def jobs(as_json: bool = JSON_OPTION) -> None:
    """List the jobs with their cron, next run and last outcome."""
    from chillflow.scheduler.scheduler import BatchScheduler

    listed = BatchScheduler(runtime.settings()).jobs()
    rows = [
        {
            "job": job["name"],
            "cron": job["cron"],
            "timezone": job["timezone"],
            "next_run": job["next_run"],
            "last_period": (job["last_run"] or {}).get("period", "-"),
            "last_status": (job["last_run"] or {}).get("status", "-"),
            "awaiting": ",".join(job["awaiting"]) or "-",
        }
        for job in listed
    ]
    emit({"jobs": listed}, as_json, aligned(rows))


@app.command("plan")
def plan(
    at: str = typer.Option(
        ..., "--at", help="An instant with its UTC offset, e.g. 2025-03-10T10:05:00-04:00."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the jobs due at --at, their periods and exact commands; runs nothing, no database.

    The monthly pipeline's raw files are looked up in the landing directory as it is now.
    """
    from datetime import datetime

    from chillflow.errors import ConfigError
    from chillflow.scheduler.scheduler import BatchScheduler

    try:
        instant = datetime.fromisoformat(at[:-1] + "+00:00" if at.endswith("Z") else at)
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None or instant.year not in YEARS:
        raise ConfigError(
            f"--at {at!r}: expected an ISO 8601 time with its UTC offset in the years "
            f"{YEARS[0]}-{YEARS[-1]}, e.g. 2025-03-10T10:05:00-04:00"
        )
    planned = BatchScheduler(runtime.settings()).plan(instant)
    lines = [f"at {planned['at']}: {len(planned['jobs'])} job(s) due"]
    for job in planned["jobs"]:
        lines.append(f"{job['job']} (fires {job['fire_time']})")
        for run in job["runs"]:
            waiting = "" if run.get("arrived", True) else f": awaiting {run['raw_file']}"
            lines.append(f"  period {run['period']}{waiting}")
            lines += [f"    $ {shlex.join(command)}" for command in run["commands"]]
    if planned["note"]:
        lines.append(f"note: {planned['note']}")
    emit(planned, as_json, lines)


@app.command("run")
def run(
    job: str = typer.Argument(..., help="Job name, as listed by `schedule jobs`."),
    period: str | None = typer.Option(
        None,
        "--period",
        help="YYYY-MM or YYYY-MM/SERVICE (monthly), YYYY-MM-DD (daily) or an hour such as "
        "2025-03-10T09:00-04:00 (hourly; the data's wall clock unless an offset is given); "
        "default: the latest scheduled period (monthly: the watched files new or changed).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run one job now, with its retries; exit 1 if it failed or was cancelled."""
    from chillflow.scheduler.scheduler import BatchScheduler

    scheduler = BatchScheduler(runtime.settings())
    with scheduler.stop_on_signals():
        outcome = scheduler.run_job(job, period)
    summary = {key: value for key, value in outcome.items() if value is not None}
    summary["runs"] = ", ".join(f"{run['run_id']} {run['status']}" for run in outcome["runs"])
    emit(outcome if as_json else summary, as_json)
    if outcome["status"] in ("failed", "cancelled"):
        raise typer.Exit(1)


app.command("runs", help="Show the run history from ops.job_run (same as `chillflow runs`).")(runs)
