"""The HTML report: figures of the tables (:mod:`.figures`) rendered as a page (:mod:`.render`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from chillflow.settings import Settings

REPORT_NAME = "chillflow-report.html"


def write_report(
    spark: SparkSession,
    settings: Settings,
    database_url: str,
    months: list[str] | None = None,
    out: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Collect the figures (see ``collect_figures``), render them and write the page atomically.

    Returns:
        The page (default ``<data_dir>/reports/chillflow-report.html``) and its figures.
    """
    from chillflow.report.figures import collect_figures
    from chillflow.report.render import render_report

    figures = collect_figures(spark, settings, database_url, months)
    out = (out or settings.data_dir / "reports" / REPORT_NAME).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(render_report(figures), encoding="utf-8")
    os.replace(partial, out)
    return out, figures
