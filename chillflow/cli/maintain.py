"""``chillflow maintain``: Delta upkeep of every lake table."""

from __future__ import annotations

import typer

from chillflow.cli.output import JSON_OPTION, emit, handle_errors


@handle_errors
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
    from chillflow.api.resources import StageResources
    from chillflow.stages.maintain import maintain as run_maintain

    resources = StageResources()
    stats = run_maintain(resources.spark, resources.settings, resources.database_url, retain_hours)
    emit(stats, as_json)
