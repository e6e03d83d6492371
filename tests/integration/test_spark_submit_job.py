"""A job under spark-submit.sh gets what the wrapper promises: its name, master and --conf win."""

from __future__ import annotations

import json
import os
import sys

from tests.conftest import REPO_ROOT, run_command

PROBE = """
import json
import chillflow
from chillflow import runtime

spark = runtime.spark()
conf = spark.sparkContext.getConf()
print(json.dumps({
    "app_name": conf.get("spark.app.name"),
    "master": conf.get("spark.master"),
    "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"),
    "time_zone": spark.conf.get("spark.sql.session.timeZone"),
    "jars": conf.get("spark.jars"),
    "package_file": chillflow.__file__,
}))
"""


def test_spark_submit_settings_win_over_conf_defaults(tmp_path):
    probe = tmp_path / "probe_conf.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "CHILLFLOW_"))}
    env.update(
        {
            "PYTHON": sys.executable,
            "SPARK_MASTER": "local[1]",
            "SHUFFLE_PARTITIONS": "7",
            "DRIVER_MEMORY": "1g",
            "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "WARNING",
            # A cluster default other than UTC would shift every curated hour.
            "SPARK_SUBMIT_EXTRA": "--conf spark.sql.session.timeZone=America/New_York",
        }
    )

    done = run_command(
        ["bash", str(REPO_ROOT / "spark-submit.sh"), str(probe)], env=env, timeout=300
    )

    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["app_name"] == "chillflow-probe-conf"
    assert seen["master"] == "local[1]"
    assert seen["shuffle_partitions"] == "7"  # conf/chillflow.toml says 4
    assert seen["time_zone"] == "UTC"  # forced, whatever spark-submit says
    assert "delta-spark" in seen["jars"] and "postgresql" in seen["jars"]
    assert "chillflow.zip" in seen["package_file"]  # the driver imports the shipped package
