"""BatchAggregator checks its run parameters before it touches Spark or the database."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

# In a process of its own, so that no other test's SparkSession is the active one.
BACKFILL = """\
from datetime import date

from pyspark.sql import SparkSession

from chillflow.batch import BatchAggregator
from chillflow.errors import ConfigError

try:
    BatchAggregator(database_url="postgresql://u:p@127.0.0.1:1/none").aggregate_backfill(
        date(2025, 1, 1), date(2025, 1, 31), source="bogus"
    )
except ConfigError as exc:
    print(exc)
print("spark started" if SparkSession.getActiveSession() else "no spark")
"""


def test_a_backfill_refuses_an_unknown_source_before_the_spark_session_starts():
    done = subprocess.run(
        [sys.executable, "-c", BACKFILL],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "--source='bogus': expected one of postgres, curated",
        "no spark",
    ]
