"""Secrets handed to Spark as settings never reach its event log (what the history server shows)."""

from __future__ import annotations

import os
import sys

from tests.conftest import run_command

# A session from conf/chillflow.toml, with the database URL and the salt passed to executors
# the way a cluster deployment would, and an event log.
SESSION = """
import dataclasses, sys
from types import MappingProxyType
from chillflow.session import build_spark
from chillflow.settings import load_settings

spark = load_settings().spark
extra = {
    "spark.executorEnv.DATABASE_URL": sys.argv[1],
    "spark.kubernetes.driverEnv.HASH_SALT": sys.argv[2],
    "spark.chillflow.reference": sys.argv[1],
    "spark.eventLog.enabled": "true",
    "spark.eventLog.dir": sys.argv[3],
    "spark.eventLog.compress": "false",
    "spark.ui.enabled": "false",
}
build_spark(dataclasses.replace(spark, conf=MappingProxyType({**spark.conf, **extra}))).stop()
"""


def test_database_url_and_salt_are_redacted_in_the_event_log(tmp_path):
    url = "postgresql://loader:Pw-9f2c@db.internal:5432/chillflow"
    salt = "NaCl-5e1d"
    events = tmp_path / "events"
    events.mkdir()
    env = {**os.environ, "SPARK_MASTER": "local[1]", "CHILLFLOW_DATA_DIR": str(tmp_path)}

    done = run_command(
        [sys.executable, "-c", SESSION, url, salt, str(events)], env=env, timeout=300
    )

    assert done.returncode == 0, done.stderr[-3000:]
    text = "".join(path.read_text() for path in events.rglob("*") if path.is_file())
    assert "spark.executorEnv.DATABASE_URL" in text
    assert '"spark.chillflow.reference":"*********(redacted)"' in text
    assert "Pw-9f2c" not in text and "db.internal" not in text
    assert salt not in text
