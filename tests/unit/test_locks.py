"""File-backed run locks: one writer per slice, readers that never see a half-written slice.

Two stores in one process conflict exactly as two processes do (``flock`` locks belong to an
open file description), so each test drives both sides deterministically, with threads and
events where one side has to wait, and a real child process where it has to die.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chillflow.errors import BusyError, ConfigError
from chillflow.storage import locks
from chillflow.storage.locks import TABLE_LOCK, FileLocks, hold, lake_locks

SLICE = "yellow/2025-02"
HOLD_IN_CHILD = """
import sys
from pathlib import Path
from chillflow.storage.locks import FileLocks

store = FileLocks(Path(sys.argv[1]), "curate run child")
assert store.try_lock("yellow/2025-02")
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def waits(monkeypatch):
    """An event set when a lock request starts waiting (its first poll)."""
    waiting = threading.Event()
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        waiting.set()
        real_sleep(seconds)

    monkeypatch.setattr(locks.time, "sleep", sleep)
    return waiting


def writer(directory: Path, name: str = "curate run b") -> FileLocks:
    return FileLocks(directory, name)


def take(store: FileLocks, requests, *, writer: bool = True, what: str = "curate of x") -> None:
    """Take the locks as a run would, and release them."""
    with hold(store, requests, what=what, writer=writer):
        pass


def test_a_second_writer_of_a_slice_refuses_at_once_naming_the_holder(tmp_path, waits):
    first = writer(tmp_path, "curate run a (pid 1 on host)")
    requests = [(TABLE_LOCK, True), (SLICE, False)]
    with hold(first, requests, what="curate of x", writer=True), pytest.raises(BusyError) as busy:
        take(writer(tmp_path), requests)

    assert str(busy.value) == (
        "curate of x is locked by curate run a (pid 1 on host); retry when that run has finished"
    )
    assert busy.value.exit_code == 10
    assert not waits.is_set()
    assert (tmp_path / "yellow.2025-02.lock").read_text() == ""  # released: no holder named


def test_the_slice_is_free_again_after_the_holder_released_it(tmp_path):
    take(writer(tmp_path, "a"), [(SLICE, False)])
    with hold(writer(tmp_path, "b"), [(SLICE, False)], what="x", writer=True):
        assert (tmp_path / "yellow.2025-02.lock").read_text() == "b"


def test_a_reader_refuses_while_a_writer_holds_a_slice(tmp_path, waits):
    with (
        hold(writer(tmp_path, "curate run a"), [(SLICE, False)], what="curate", writer=True),
        pytest.raises(BusyError, match="reading x is locked by curate run a"),
    ):
        take(FileLocks(tmp_path, "aggregate"), [(SLICE, True)], writer=False, what="reading x")
    assert not waits.is_set()


def test_readers_share_a_slice(tmp_path):
    with hold(FileLocks(tmp_path, "r1"), [(SLICE, True)], what="x", writer=False):
        take(FileLocks(tmp_path, "r2"), [(SLICE, True)], writer=False)


@pytest.mark.parametrize(
    ("reader_lock", "writer_lock"),
    [
        ((SLICE, True), (SLICE, False)),  # a window reader pins the slice
        ((TABLE_LOCK, False), (TABLE_LOCK, True)),  # a whole-table reader pins every slice
    ],
)
def test_a_writer_waits_for_a_reader_pinning_versions(tmp_path, waits, reader_lock, writer_lock):
    reader = FileLocks(tmp_path, "aggregate run r")
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            with hold(writer(tmp_path), [writer_lock], what="curate", writer=True):
                done.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    with hold(reader, [reader_lock], what="reading", writer=False):
        thread = threading.Thread(target=write)
        thread.start()
        assert waits.wait(30), "the writer did not start waiting"
        assert not done.is_set()
    thread.join(30)

    assert failures == []
    assert done.is_set()


def test_a_writer_gives_up_on_readers_after_the_wait(tmp_path, waits, monkeypatch):
    monkeypatch.setattr(locks, "READER_WAIT_SEC", 0.2)
    with (
        hold(FileLocks(tmp_path, "aggregate run r"), [(SLICE, True)], what="r", writer=False),
        pytest.raises(BusyError, match="curate is locked by another run"),
    ):
        take(writer(tmp_path), [(SLICE, False)], what="curate")
    assert waits.is_set()


def test_a_killed_holder_leaves_no_lock(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_CHILD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(BusyError, match="curate run child"):
            take(writer(tmp_path), [(SLICE, False)])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)

    take(writer(tmp_path, "after"), [(SLICE, False)])


def test_unsafe_lock_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unsafe lock name"):
        FileLocks(tmp_path, "x").try_lock("../../etc/passwd")


def test_lock_backend_follows_the_table_location(tmp_path):
    local = lake_locks(tmp_path / "lake/curated/trips", None, "x")

    assert isinstance(local, FileLocks)
    local.try_lock(SLICE)
    local.close()
    assert (tmp_path / "lake/curated/_locks/trips/yellow.2025-02.lock").is_file()
    with pytest.raises(ConfigError, match="s3a://bucket/lake/curated/trips is not on a local"):
        lake_locks("s3a://bucket/lake/curated/trips", None, "x")
