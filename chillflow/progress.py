"""Progress reports for long Spark actions, read from Spark's status tracker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog
from pyspark.sql import SparkSession


@contextmanager
def spark_progress(
    spark: SparkSession,
    stage: str,
    *,
    every_sec: float = 5.0,
    expected_rows: int | None = None,
    rows_done: Callable[[], int | None] | None = None,
) -> Iterator[None]:
    """Log ``<stage>.progress`` (tasks, elapsed, ``rows_done()`` and rate) every ``every_sec``."""
    log = structlog.get_logger("chillflow.progress")
    tracker = spark.sparkContext.statusTracker()
    done = threading.Event()
    started = time.monotonic()
    context = structlog.contextvars.get_contextvars()

    def report() -> None:
        with structlog.contextvars.bound_contextvars(**context):
            while not done.wait(every_sec):
                stages = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
                stages = [s for s in stages if s is not None]
                elapsed = time.monotonic() - started
                rows = {}
                if rows_done is not None and (done_now := rows_done()) is not None:
                    rows = {"rows_done": done_now, "rows_per_sec": round(done_now / elapsed)}
                log.info(
                    f"{stage}.progress",
                    elapsed_sec=round(elapsed, 1),
                    tasks_done=sum(s.numCompletedTasks for s in stages),
                    tasks_total=sum(s.numTasks for s in stages),
                    expected_rows=expected_rows,
                    **rows,
                )

    thread = threading.Thread(target=report, name=f"progress-{stage}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=1)
