"""``MonthlyPipeline``: curate -> process trips -> the month's KPIs in one Spark application."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from chillflow.api import expected_failure
from chillflow.api.resources import StageResources
from chillflow.errors import ConfigError
from chillflow.hour_window import month_refresh_window
from chillflow.settings import parse_month
from chillflow.stages.aggregate import aggregate_window
from chillflow.stages.curate import curate
from chillflow.stages.trips import prepare_database, process_trips
from chillflow.storage.raw import find_raw_files

STAGES = ("curate", "process_trips", "aggregate")


class MonthlyPipeline(StageResources):
    """Curate a raw month, load its trips into PostgreSQL and refresh its KPIs, in one session."""

    def run_month(self, raw_path: str | Path, *, month: str | None = None) -> dict[str, Any]:
        """Run the three stages on one month's raw files; a failing stage stops the rest.

        Each stage is the single-stage command's own function, with its own ``ops.job_run`` row;
        the KPIs come from the curated Delta table, which holds the trips the load put in
        PostgreSQL. ``raw_path`` (file, directory or glob) holds one month, ``month`` or the
        one in the file names.

        Returns:
            month, services, each stage's statistics under its name, and ``timings_sec``:
            jvm_start (from this call or the JVM's start, whichever came first, to a ready
            session), curate, process_trips, aggregate and total.

        Raises:
            ChillflowError: The failing stage's error (same class and exit code), its message
                prefixed with the stage's name.
        """
        called = time.time()
        if month is not None:
            parse_month(month)
        files = find_raw_files(raw_path, month)
        months = sorted({f.month for f in files})
        if len(months) != 1:
            raise ConfigError(f"{raw_path} holds the months {', '.join(months)}: give one month")
        month = months[0]
        database_url = self.database_url
        # Before the JVM: a bad DATABASE_URL fails in a second.
        prepared = prepare_database(database_url)
        spark, settings = self.spark, self.settings
        timings = {"jvm_start": round(time.time() - min(called, _jvm_started(spark)), 3)}
        results: dict[str, Any] = {"month": month, "timings_sec": timings}
        log = structlog.get_logger("chillflow.pipeline")

        def run(stage: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            started = time.monotonic()
            try:
                results[stage] = call()
            except Exception as exc:
                log.error("pipeline.stage_failed", stage=stage, error=type(exc).__name__)
                failure = expected_failure(exc)
                if failure is None:
                    raise
                raise type(failure)(f"stage {stage} failed: {failure}") from exc
            timings[stage] = round(time.monotonic() - started, 3)
            return results[stage]

        curated = run("curate", lambda: curate(spark, settings, files, database_url=database_url))
        services = sorted({s["service"] for s in curated["slices"]})
        results["services"] = services
        service = services[0] if len(services) == 1 else None
        run(
            "process_trips",
            lambda: process_trips(
                spark, settings, database_url, month=month, service=service, prepared=prepared
            ),
        )
        window = month_refresh_window(month)
        run(
            "aggregate",
            lambda: aggregate_window(
                spark, settings, database_url, window, source="curated", mode="month"
            ),
        )
        timings["total"] = round(time.time() - min(called, _jvm_started(spark)), 3)
        log.info("pipeline.finished", month=month, **{f"{k}_sec": v for k, v in timings.items()})
        return results


def _jvm_started(spark: Any) -> float:
    """When the driver's JVM started (epoch seconds): spark-submit starts it before Python."""
    bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    return bean.getStartTime() / 1000.0
