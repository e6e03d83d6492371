"""The class-sharing archive with real JVMs: dumped by the first process, mapped by the next."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "from chillflow import runtime; print(runtime.spark().range(5).count())"


def run(env):
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )


def test_second_process_maps_the_archive_the_first_one_dumped(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    toml = conf / "chillflow.toml"
    loads = tmp_path / "loads"
    loads.mkdir()
    option = f"-Xlog:class+load=info:file={loads}/load-%p.log"
    text = toml.read_text()
    assert '"spark.driver.extraJavaOptions" = "' in text
    toml.write_text(
        text.replace(
            '"spark.driver.extraJavaOptions" = "', f'"spark.driver.extraJavaOptions" = "{option} '
        )
    )
    cds = tmp_path / "cds"
    env = {
        **os.environ,
        "CHILLFLOW_CONF_DIR": str(conf),
        "CHILLFLOW_CDS_DIR": str(cds),
        "CHILLFLOW_DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "WARNING",
    }

    # The archive is keyed by the resolved jar files: pin them first (a no-op once done).
    pinned = subprocess.run(
        [sys.executable, "-m", "chillflow", "jars", "path"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr[-3000:]

    first = run(env)

    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.strip() == "5"
    assert "[cds]" not in first.stderr  # the dump's per-class warnings are silenced
    assert [p.suffix for p in cds.iterdir()] == [".jsa"]  # no lock, no half-written dump
    for log in loads.iterdir():
        log.unlink()

    second = run(env)

    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.strip() == "5"  # JVM warnings, if any, never reach stdout
    loaded = "".join(log.read_text(errors="replace") for log in loads.iterdir())
    assert "source: shared objects file (top)" in loaded  # classes came from the archive
