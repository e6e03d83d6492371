import os
import subprocess
import sys

import pytest

from chillflow import class_sharing

pytestmark = pytest.mark.unit


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_archive_is_keyed_by_the_jars(tmp_path):
    one = class_sharing.archive_path(tmp_path, ["/jars/a.jar", "/jars/b.jar"])
    assert one == class_sharing.archive_path(tmp_path, ["/jars/b.jar", "/jars/a.jar"])
    assert one != class_sharing.archive_path(tmp_path, ["/jars/a.jar"])
    assert one.parent == tmp_path and one.suffix == ".jsa"


def test_a_jar_rewritten_at_the_same_path_gets_a_new_archive(tmp_path):
    jar = tmp_path / "delta.jar"
    jar.write_bytes(b"v1")
    before = class_sharing.archive_path(tmp_path, [str(jar)])
    assert before == class_sharing.archive_path(tmp_path, [str(jar)])

    os.utime(jar, ns=(1_000_000_000, 1_000_000_000))

    assert class_sharing.archive_path(tmp_path, [str(jar)]) != before


def test_first_process_dumps_others_wait_then_everyone_maps(tmp_path):
    archive = class_sharing.archive_path(tmp_path / "cds", ["/jars/a.jar"])

    options, dump = class_sharing.java_options(archive)

    assert f"-XX:ArchiveClassesAtExit={dump}" in options
    assert dump.parent == archive.parent and not dump.exists()
    assert "warning:stderr" in options  # JVM warnings never reach stdout (--json)
    # This process holds the dump lock: a second caller runs without sharing.
    assert class_sharing.java_options(archive) is None

    archive.write_bytes(b"archive")
    options, dump = class_sharing.java_options(archive)
    assert dump is None
    assert f"-XX:SharedArchiveFile={archive}" in options and "-Xshare:auto" in options


def test_lock_of_a_process_that_died_is_taken_over(tmp_path):
    archive = tmp_path / "driver-x.jsa"
    archive.with_suffix(".lock").write_text(str(dead_pid()))

    sharing = class_sharing.java_options(archive)

    assert sharing is not None and sharing[1] is not None
    assert archive.with_suffix(".lock").read_text() == str(os.getpid())


def test_finishing_without_a_jvm_releases_the_lock_and_the_dump(tmp_path, monkeypatch):
    from pyspark import SparkContext

    monkeypatch.setattr(SparkContext, "_gateway", None)  # never stop the suite's own JVM
    archive = tmp_path / "driver-x.jsa"
    _, dump = class_sharing.java_options(archive)
    dump.write_bytes(b"partial")

    class_sharing._finish_dump(dump, archive)

    assert not dump.exists() and not archive.exists()
    assert not archive.with_suffix(".lock").exists()
