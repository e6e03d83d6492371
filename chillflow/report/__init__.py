"""The HTML report: figures of the tables (:mod:`.figures`) rendered as a page (:mod:`.render`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from chillflow.database_url import DatabaseUrl
from chillflow.errors import ConfigError
from chillflow.settings import Settings

REPORT_NAME = "chillflow-report.html"


def write_report(
    spark: SparkSession,
    settings: Settings,
    database_url: DatabaseUrl,
    months: list[str] | None = None,
    out: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Write the page of the figures atomically; return its path and the figures.

    Raises:
        ConfigError: The page cannot be written there (checked before any query).
    """
    from chillflow.report.figures import collect_figures
    from chillflow.report.render import render_report

    out = (out or settings.data_dir / "reports" / REPORT_NAME).resolve()
    partial = out.with_name(f".{out.name}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        page = partial.open("w", encoding="utf-8")
    except OSError as exc:
        reason = f"{exc.strerror}: {exc.filename}" if exc.filename else exc
        raise ConfigError(f"cannot write the report to {out}: {reason}") from None
    try:
        with page:
            figures = collect_figures(spark, settings, database_url, months)
            page.write(render_report(figures))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out, figures
