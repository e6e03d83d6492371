"""StandaloneCluster's cleanup finds exactly the processes that run from its work directory."""

import subprocess
import sys

import pytest

from tests.cluster.standalone_cluster import StandaloneCluster, processes_under


def test_leftover_search_matches_the_work_dir_and_not_its_siblings(tmp_path):
    mine, sibling = tmp_path / "cluster0", tmp_path / "cluster01"
    mine.mkdir()
    sibling.mkdir()
    (mine / "app" / "0").mkdir(parents=True)
    by_cwd = subprocess.Popen(["sleep", "30"], cwd=mine / "app" / "0")
    by_argument = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", f"--work-dir={mine}/worker-1"]
    )
    other = subprocess.Popen(["sleep", "30"], cwd=sibling)
    try:
        found = processes_under(mine)

        assert by_cwd.pid in found and by_argument.pid in found
        assert other.pid not in found
    finally:
        for process in (by_cwd, by_argument, other):
            process.kill()
            process.wait()


def test_stop_before_start_is_harmless(tmp_path):
    cluster = StandaloneCluster(tmp_path / "never-started", workers=2)

    cluster.stop()
    cluster.stop()

    assert cluster.master_url.startswith("spark://127.0.0.1:")
    assert "no logs" in cluster.log_tails()


def test_a_cluster_needs_a_worker_with_a_core(tmp_path):
    with pytest.raises(ValueError, match="at least one worker"):
        StandaloneCluster(tmp_path, workers=0)
