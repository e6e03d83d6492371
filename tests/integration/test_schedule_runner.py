"""run_process with real child processes: output capture, timeouts and cancellation."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest

from chillflow.scheduler.executor import run_process

# A job that starts a grandchild (as spark-submit starts a JVM that starts the Python driver),
# reports both pids, and then waits far longer than any test.
FAMILY = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child of an exited parent can linger as a zombie until init reaps it.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def wait_for_pids(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return [int(pid) for pid in path.read_text().split()]


def test_captures_stdout_and_appends_all_output_to_the_log(tmp_path):
    log = tmp_path / "logs" / "run.log"
    script = "import json, sys; print('warming up', file=sys.stderr); print(json.dumps({'n': 1}))"

    outcome = run_process(
        [sys.executable, "-c", script],
        env=dict(os.environ),
        log_path=log,
        cancel=threading.Event(),
        timeout_sec=None,
    )

    assert outcome.exit_code == 0
    assert json.loads(outcome.stdout) == {"n": 1}
    assert outcome.stderr_tail == "warming up\n"
    command, stderr, marker, stdout = log.read_text().splitlines()
    assert command.startswith(f"$ {sys.executable} -c ")
    assert (stderr, marker, stdout) == ("warming up", "--- stdout ---", '{"n": 1}')
    assert not (outcome.cancelled or outcome.timed_out)


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_stopped_job_takes_its_whole_process_group_with_it(tmp_path, how):
    pids_file = tmp_path / "pids"
    cancel = threading.Event()
    if how == "cancel":
        threading.Thread(target=lambda: (wait_for_pids(pids_file), cancel.set())).start()

    started = time.monotonic()
    outcome = run_process(
        [sys.executable, "-c", FAMILY, str(pids_file)],
        env=dict(os.environ),
        log_path=tmp_path / "run.log",
        cancel=cancel,
        # Long enough for the job to start its grandchild on a loaded machine.
        timeout_sec=8.0 if how == "timeout" else None,
        poll_sec=0.05,
        kill_after_sec=5,
    )

    assert time.monotonic() - started < 30
    assert (outcome.timed_out, outcome.cancelled) == (how == "timeout", how == "cancel")
    assert outcome.exit_code == -15  # SIGTERM was enough
    parent, grandchild = wait_for_pids(pids_file)
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(parent) and not alive(grandchild)
