"""Run locks: one writer per slice, and readers that pin table versions between writes.

fcntl locks on files for a local lake, PostgreSQL advisory locks otherwise (:func:`lake_locks`);
the kernel or the server releases either kind when its process dies. A curated table has one
lock per (service, month) slice and one for the whole table (README, "Runs, locks and the
ledger").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg2
from psycopg2.extensions import connection as Connection

from chillflow.database_url import DatabaseUrl
from chillflow.errors import BusyError, ConfigError, DatabaseError
from chillflow.schemas import SERVICES
from chillflow.settings import LakeLocation
from chillflow.storage.postgres import open_connection

#: How long a writer waits for readers, which hold a lock only while they pin table versions.
READER_WAIT_SEC = 30.0
TABLE_LOCK = "table"
#: The lock of the KPI table and mart: one writer from computing to publishing.
KPI_LOCK = "aggregate"
_POLL_SEC = 0.05
_NAME = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")


def holder(job: str, run: str) -> str:
    """How a lock's holder names itself to a run it blocks, e.g. ``curate run 1a2b…``."""
    return f"{job} {run} (pid {os.getpid()} on {os.uname().nodename})"


def slice_lock(service: str, month: str) -> str:
    """The name of a (service, month) slice's lock."""
    return f"{service}/{month}"


class FileLocks:
    """``flock`` locks on the files of one directory; an exclusive holder writes its name in."""

    def __init__(self, directory: Path, holder_name: str):
        self._dir = directory
        self._holder = holder_name.encode()
        self._fds: dict[str, int] = {}
        self._exclusive: set[str] = set()

    def try_lock(self, name: str, *, shared: bool = False) -> bool:
        """Take the lock if no other holder conflicts."""
        fd = self._fds.get(name)
        if fd is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            fd = self._fds[name] = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if not shared:
            self._exclusive.add(name)
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._holder, 0)
        return True

    def release(self, name: str) -> None:
        """Release a lock this store holds."""
        if name in self._exclusive:
            self._exclusive.discard(name)
            os.ftruncate(self._fds[name], 0)
        fcntl.flock(self._fds[name], fcntl.LOCK_UN)

    def holders(self, name: str) -> list[str]:
        """The exclusive holder's name, when one wrote it."""
        with contextlib.suppress(FileNotFoundError):
            text = self._path(name).read_text().strip()
            return [text] if text else []
        return []

    def close(self) -> None:
        """Release every lock."""
        for name, fd in self._fds.items():
            if name in self._exclusive:
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor releases the flock
        self._fds.clear()
        self._exclusive.clear()

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"unsafe lock name {name!r}")
        return self._dir / f"{name.replace('/', '.')}.lock"


class AdvisoryLocks:
    """PostgreSQL advisory locks held by one session; its ``application_name`` names the holder."""

    def __init__(self, url: DatabaseUrl, holder_name: str, prefix: str = ""):
        self._url = url
        self._holder = holder_name
        self._prefix = prefix
        self._conn: Connection | None = None
        self._held: dict[str, bool] = {}

    def try_lock(self, name: str, *, shared: bool = False) -> bool:
        """Take the lock if no other session conflicts."""
        taken = try_lock(self._connection(), self._prefix + name, shared=shared)
        if taken:
            self._held[name] = shared
        return taken

    def release(self, name: str) -> None:
        """Release a lock this store holds."""
        shared = self._held.pop(name)
        unlock(self._connection(), self._prefix + name, shared=shared)

    def holders(self, name: str) -> list[str]:
        """The ``application_name`` of each other session holding the lock."""
        with self._connection().cursor() as cur:
            cur.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                f" WHERE {HELD_RUN_LOCK} AND l.objid = hashtext(%s)::oid"
                " AND a.pid <> pg_backend_pid()",
                (self._prefix + name,),
            )
            return [holder for (holder,) in cur.fetchall()]

    def confirm_held(self) -> None:
        """Raise DatabaseError unless the session still holds this store's locks.

        A session ended from outside (``pg_terminate_backend``, an idle timeout, a lost
        connection) takes its locks with it while the run goes on.
        """
        try:
            with self._connection().cursor() as cur:
                mine = "l.pid = pg_backend_pid()"
                cur.execute(f"SELECT count(*) FROM pg_locks l WHERE {HELD_RUN_LOCK} AND {mine}")
                held = cur.fetchone()[0]
        except psycopg2.Error:
            held = 0
        if held < len(self._held):
            raise DatabaseError(
                f"the session holding the locks of {self._holder} ended, and the locks with it:"
                " another run may hold them now; rerun"
            )

    def close(self) -> None:
        """Release every lock, before closing the session: its end frees them only later."""
        if self._conn is not None:
            if self._held:
                with contextlib.suppress(psycopg2.Error), self._conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock_all()")
            self._conn.close()
        self._held.clear()
        self._conn = None

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = open_connection(self._url, autocommit=True)
            with self._conn.cursor() as cur:
                cur.execute("SELECT set_config('application_name', %s, false)", (self._holder,))
        return self._conn


LockStore = FileLocks | AdvisoryLocks


def lake_locks(
    table: LakeLocation, database_url: DatabaseUrl | None, holder_name: str
) -> LockStore:
    """The locks of a curated table: files beside a local table, advisory locks for a remote one.

    Raises:
        ConfigError: The table is remote and no database is configured.
    """
    if isinstance(table, Path):
        return FileLocks(table.parent / "_locks" / table.name, holder_name)
    if database_url is None:
        raise ConfigError(
            f"the lake table {table} is not on a local disk: runs writing or reading it lock "
            "each other through PostgreSQL; set DATABASE_URL"
        )
    return AdvisoryLocks(database_url, holder_name, prefix=f"{table}|")


@contextlib.contextmanager
def hold(
    store: LockStore,
    requests: Sequence[tuple[str, bool]],
    *,
    what: str,
    writer: bool,
    wait_sec: float = 0.0,
) -> Iterator[None]:
    """Hold the ``(name, shared)`` locks for the block, taken in order, released at its end.

    A writer refuses at once when another writer holds a lock, and waits up to
    :data:`READER_WAIT_SEC` for readers (its shared locks only ever conflict with readers). A
    reader waits ``wait_sec`` for writers.

    Raises:
        BusyError: A lock is held by another run, named in the message.
    """
    with contextlib.closing(store):
        for name, shared in requests:
            started = time.monotonic()
            while not store.try_lock(name, shared=shared):
                patience = wait_sec
                if writer:
                    patience = READER_WAIT_SEC if _readers_only(store, name, shared) else 0.0
                if time.monotonic() - started >= patience:
                    holders = ", ".join(store.holders(name)) or "another run"
                    raise BusyError(
                        f"{what} is locked by {holders}; retry when that run has finished"
                    )
                time.sleep(_POLL_SEC)
        yield


def _readers_only(store: LockStore, name: str, shared: bool) -> bool:
    if shared:
        return True
    if store.try_lock(name, shared=True):
        store.release(name)
        return True
    return False


@contextlib.contextmanager
def reading_slices(
    curated: LakeLocation,
    database_url: DatabaseUrl | None,
    holder_name: str,
    months: Sequence[str] | None,
    *,
    what: str,
    wait_sec: float = 0.0,
) -> Iterator[None]:
    """Hold the curated slices of ``months`` shared (all, through the table lock, for None).

    A reader pins the versions of the tables it combines inside the block: no curate is then
    between its curated and its quarantine commit.

    Raises:
        BusyError: A curate writes one of the slices (for longer than ``wait_sec``).
    """
    if months is None:
        requests = [(TABLE_LOCK, False)]
    else:
        names = sorted({slice_lock(service, month) for service in SERVICES for month in months})
        requests = [(name, True) for name in names]
    store = lake_locks(curated, database_url, holder_name)
    with hold(store, requests, what=what, writer=False, wait_sec=wait_sec):
        yield


# Two-key advisory locks live apart from single-bigint ones such as the schema lock; the first
# key ("CFJB") marks a ChillFlow run lock, the second is hashtext of the lock's name.
LOCK_NAMESPACE = 0x43464A42
#: A run lock of this database someone holds, as a predicate on ``pg_locks l`` (add its objid).
HELD_RUN_LOCK = (
    f"l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = {LOCK_NAMESPACE}"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def try_lock(conn: Connection, name: str, *, shared: bool = False) -> bool:
    """Take the advisory lock ``name`` for this session if no other session conflicts."""
    return _advisory(conn, "pg_try_advisory_lock", name, shared)


def unlock(conn: Connection, name: str, *, shared: bool = False) -> None:
    """Release the advisory lock ``name`` held by this session."""
    _advisory(conn, "pg_advisory_unlock", name, shared)


def _advisory(conn: Connection, function: str, name: str, shared: bool) -> bool:
    with conn.cursor() as cur:
        suffix = "_shared" if shared else ""
        cur.execute(f"SELECT {function}{suffix}(%s, hashtext(%s))", (LOCK_NAMESPACE, name))
        return cur.fetchone()[0]
