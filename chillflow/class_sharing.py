"""A class-data-sharing (AppCDS) archive of the driver JVM: Spark starts ~4 s faster.

A fresh JVM spends seconds loading and verifying Spark's, Delta's and Scala's classes before the
first row is read. Java 17 can dump the classes one run loaded into an archive
(``-XX:ArchiveClassesAtExit``) that later JVMs map instead (``-XX:SharedArchiveFile``). The
first process that starts Spark without an archive dumps one when it exits (its JVM takes a few
seconds longer to exit, once); every later process maps it. Measured here: SparkSession start
7.9 s -> 4.9 s, its first job 3.3 s -> 2.0 s (docs/benchmarks.md).

The archive is keyed by everything that shapes the driver's class path: the Java binary and
the size and modification time of every jar (pyspark's and the session's), so an upgrade or a
reinstall simply builds a new one. That precision matters: Java 17 does not always fall back
when an archive no longer fits. Mapping one dumped before the virtualenv was recreated at the
same path made the JVM fail with ``ClassNotFoundException: org.apache.spark.deploy.SparkSubmit``.
JVM warnings go to stderr, never to stdout, which may carry ``--json`` output.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import structlog

from chillflow.pids import pid_alive

log = structlog.get_logger(__name__)

#: JVM warnings (a rejected archive, for one) go to stderr instead of the default stdout.
_WARNINGS_TO_STDERR = "-Xlog:disable -Xlog:all=warning:stderr"
#: The same without the cds tags: a dump warns about every class it cannot archive (signed
#: jars, unlinked classes), hundreds of lines of noise. ``-Xlog:cds=off`` alone would only
#: touch stdout, the default output.
_DUMP_LOGGING = f"{_WARNINGS_TO_STDERR} -Xlog:cds*=off:stderr"
#: Dumps older than this belong to a process that died: removed. A dump is written within a
#: minute of its process's end, and few processes run for hours.
_STALE_SEC = 6 * 3600
#: How long a process waits at exit for its JVM to finish writing the archive.
_DUMP_WAIT_SEC = 120


def archive_path(cache_dir: Path, jars: Iterable[str]) -> Path:
    """The archive for this Java, this pyspark installation and these jars.

    The key covers the size and modification time of every jar on the driver's class path,
    which is what the JVM checks before it maps an archive: a reinstalled virtualenv at the
    same path gets a new archive instead of one the JVM would refuse.

    Args:
        cache_dir: Directory holding the archives.
        jars: The jar files the session loads (``spark.jars`` entries).

    Returns:
        ``cache_dir/driver-<key>.jsa``; it may not exist yet.
    """
    import pyspark

    java = Path(shutil.which("java", path=_java_search_path()) or "java").resolve()
    spark_jars = sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))
    identity = [pyspark.__version__, *(_fingerprint(p) for p in (java, *spark_jars))]
    identity += [_fingerprint(Path(jar)) for jar in sorted(jars)]
    key = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    return cache_dir / f"driver-{key}.jsa"


def _fingerprint(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return f"{path} missing"
    return f"{path} {stat.st_size} {stat.st_mtime_ns}"


def java_options(archive: Path) -> tuple[str, Path | None] | None:
    """JVM options that map ``archive``, or dump it at exit when it does not exist yet.

    One process at a time dumps (a lock file beside the archive); while another one does,
    this one runs without sharing.

    Args:
        archive: The archive path from :func:`archive_path`.

    Returns:
        The options and the temporary file the JVM will dump to (to be renamed to ``archive``
        once the JVM has exited, see :func:`publish_at_exit`; None when the archive is
        mapped), or None when another process is dumping the archive right now.
    """
    if archive.is_file():
        return _mapping(archive), None
    archive.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(archive.parent)
    if not _take_lock(_lock(archive)):
        return None
    dump = archive.with_name(f"{archive.stem}.{os.getpid()}.tmp")
    return f"-XX:ArchiveClassesAtExit={dump} {_DUMP_LOGGING}", dump


def mapping_options(cache_dir: Path, jars: Iterable[str]) -> str:
    """Options that map the archive of these jars if one exists, else an empty string.

    For JVMs that ``spark-submit`` starts (``spark-submit.sh`` in local mode), which never
    dump one themselves.
    """
    archive = archive_path(cache_dir, jars)
    return _mapping(archive) if archive.is_file() else ""


def _mapping(archive: Path) -> str:
    return f"-XX:SharedArchiveFile={archive} -Xshare:auto {_WARNINGS_TO_STDERR}"


def publish_at_exit(dump: Path, archive: Path) -> None:
    """When this process exits, let its JVM finish the dump, then move it into place.

    The JVM writes the archive while it exits, which PySpark's gateway only does once Python
    has closed its stdin. At interpreter exit this closes it, waits for the JVM, and renames
    the dump atomically, so a concurrent process never maps a half-written archive.
    """
    atexit.register(_finish_dump, dump, archive)


def _finish_dump(dump: Path, archive: Path) -> None:
    try:
        _wait_for_dump(dump, archive)
    finally:
        with contextlib.suppress(OSError):
            dump.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            _lock(archive).unlink(missing_ok=True)


def _wait_for_dump(dump: Path, archive: Path) -> None:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    process = getattr(SparkContext._gateway, "proc", None)
    if process is None:
        return
    with contextlib.suppress(Exception):
        session = SparkSession.getActiveSession()
        if session is not None:
            session.stop()
    started = time.monotonic()
    with contextlib.suppress(OSError, ValueError):
        process.stdin.close()
    try:
        process.wait(timeout=_DUMP_WAIT_SEC)
    except subprocess.TimeoutExpired:
        log.warning("class_sharing.dump_timeout", dump=str(dump))
        return
    if process.returncode == 0 and dump.is_file() and dump.stat().st_size > 0:
        os.replace(dump, archive)
        log.info(
            "class_sharing.archived",
            archive=str(archive),
            mib=round(archive.stat().st_size / 2**20),
            dump_sec=round(time.monotonic() - started, 1),
        )


def _lock(archive: Path) -> Path:
    return archive.with_suffix(".lock")


def _take_lock(lock: Path) -> bool:
    """Create ``lock`` holding this process's id; a lock of a process that is gone is taken over."""
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _holder_alive(lock):
                return False
            with contextlib.suppress(OSError):
                lock.unlink()
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(str(os.getpid()))
        return True
    return False


def _holder_alive(lock: Path) -> bool:
    try:
        text = lock.read_text().strip()
        pid = int(text) if text else 0
    except (OSError, ValueError):
        return True  # unreadable: leave it alone
    if pid <= 0:
        # Created but not written yet, or its writer died in between.
        return time.time() - _mtime(lock) < 60
    return pid_alive(pid)


def _remove_stale(cache_dir: Path) -> None:
    """Remove the dumps of processes that died before they finished."""
    now = time.time()
    for leftover in cache_dir.glob("*.tmp"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > _STALE_SEC:
                leftover.unlink()


def _java_search_path() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        return f"{Path(java_home) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
