"""Progress lines of long Spark actions."""

from __future__ import annotations

import logging
import time

import pytest
import structlog
from structlog.testing import capture_logs

from chillflow.progress import spark_progress


@pytest.fixture
def info_events():
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    with capture_logs() as events:
        yield events
    structlog.configure(**saved)


def test_progress_lines_carry_rows_done_and_rate(spark, info_events):
    with spark_progress(spark, "unit", every_sec=0.05, expected_rows=10, rows_done=lambda: 4):
        time.sleep(0.3)

    progress = [x for x in info_events if x["event"] == "unit.progress"]
    assert progress
    assert progress[0]["rows_done"] == 4 and progress[0]["expected_rows"] == 10
    assert progress[0]["rows_per_sec"] > 0
