"""Progress lines of long Spark actions."""

from __future__ import annotations

import contextlib
import json
import time

import structlog

from chillflow.logs import configure_logging
from chillflow.progress import spark_progress


@contextlib.contextmanager
def info_logging():
    """JSON log lines at INFO to the current sys.stderr (capfd's inside a test), then as before.

    Configured inside the test body: pytest swaps sys.stderr between fixture setup and the call.
    """
    saved = structlog.get_config()
    configure_logging("INFO", json=True)
    try:
        yield
    finally:
        structlog.configure(**saved)


def test_progress_lines_carry_rows_done_and_rate(spark, capfd):
    with (
        info_logging(),
        spark_progress(spark, "unit", every_sec=0.05, expected_rows=10, rows_done=lambda: 4),
    ):
        time.sleep(0.3)

    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    progress = [x for x in lines if x["event"] == "unit.progress"]
    assert progress
    assert progress[0]["rows_done"] == 4 and progress[0]["expected_rows"] == 10
    assert progress[0]["rows_per_sec"] > 0
