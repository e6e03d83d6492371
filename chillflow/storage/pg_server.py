"""Embedded PostgreSQL for local runs when DATABASE_URL is not set (README, "Quick start").

TCP on 127.0.0.1 only: Spark's JDBC driver cannot use Unix sockets. The server outlives the
process that started it; later calls, from any process, find it through ``postmaster.pid``.
A cluster relocated out of the data directory (as root) is named by ``<data_dir>/relocated``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from psycopg2 import errors, sql

from chillflow.database_url import DatabaseUrl
from chillflow.errors import ConfigError, DatabaseError
from chillflow.storage.pg_install import (
    START_TIMEOUT_S,
    copy_binaries,
    find_bindir,
    log_tail,
    private_dir,
    reachable,
    run_program,
    server_os_user,
)
from chillflow.storage.postgres import connect

DEFAULT_PORT = 54329
DATABASE = "chillflow"
SUPERUSER = "chillflow"
PASSWORD_FILE = "chillflow.password"  # noqa: S105 - a file name, not a secret
PORT_FILE = "chillflow.port"
RELOCATED_FILE = "relocated"

_HOST = "127.0.0.1"
_SERVER_LOG = "server.log"
_STOP_TIMEOUT_S = 30

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int | None
    status: str


def ensure_local_postgres(data_dir: Path, *, port: int | None = None) -> DatabaseUrl:
    """Start, or reuse, the local PostgreSQL server of ``data_dir``; return its database's URL.

    Args:
        data_dir: Its directory, e.g. ``.chillflow/postgres``; the parent is created if missing.
        port: TCP port on 127.0.0.1; by default the port it used last, else 54329, else any
            free port.

    Raises:
        ConfigError: ``port`` is not a TCP port number.
        DatabaseError: ``port`` is taken by another program, the server already runs on
            another port, or it failed to start (the message quotes its log).
        DependencyError: No PostgreSQL server binaries are installed.
    """
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"port {port} for the local PostgreSQL is not between 1 and 65535")
    data_dir = data_dir.expanduser().resolve()
    postmaster = _read_postmaster(cluster_dir(data_dir))
    if postmaster is None or postmaster.status != "ready":
        with _exclusive_lock(data_dir):
            postmaster = _wait_until_ready(cluster_dir(data_dir)) or _start(data_dir, port)
    if port is not None and postmaster.port != port:
        raise DatabaseError(
            f"the local PostgreSQL in {data_dir} is already running on port {postmaster.port}, "
            f"not {port}: use port {postmaster.port} or stop it first (`db stop`)"
        )
    try:
        password = (cluster_dir(data_dir) / PASSWORD_FILE).read_text().strip()
    except FileNotFoundError:
        raise DatabaseError(
            f"the PostgreSQL cluster in {cluster_dir(data_dir)} was not created by ChillFlow (it "
            f"has no {PASSWORD_FILE}): stop it and choose another directory"
        ) from None
    _ensure_database(postmaster.port, password)
    return DatabaseUrl(_HOST, postmaster.port, DATABASE, SUPERUSER, password)


def stop_local_postgres(data_dir: Path) -> int | None:
    """Stop the local server of ``data_dir`` with a fast shutdown; return its port, or None.

    Raises:
        DatabaseError: The server did not exit within 30 seconds.
    """
    pgdata = cluster_dir(data_dir.expanduser().resolve())
    with _exclusive_lock(data_dir.expanduser().resolve()):
        postmaster = _read_postmaster(pgdata)
        if postmaster is None:
            return None
        # SIGINT is PostgreSQL's "fast" shutdown, what `pg_ctl stop -m fast` sends; signalling
        # directly needs neither binaries nor switching to the server's OS user.
        os.kill(postmaster.pid, signal.SIGINT)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while _read_postmaster(pgdata) is not None:
            if time.monotonic() > deadline:
                raise DatabaseError(
                    f"the local PostgreSQL in {pgdata} (pid {postmaster.pid}) did not stop "
                    f"within {_STOP_TIMEOUT_S} s; see {pgdata / _SERVER_LOG}"
                )
            time.sleep(0.05)
    _log.info("pg_server.stopped", data_dir=str(pgdata), port=postmaster.port)
    return postmaster.port


def cluster_dir(data_dir: Path) -> Path:
    """Return where the cluster of ``data_dir`` lives: ``data_dir`` itself unless relocated."""
    pointer = data_dir / RELOCATED_FILE
    return Path(pointer.read_text().strip()) / "pgdata" if pointer.is_file() else data_dir


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    """The live postmaster of ``pgdata``, or None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not lines or not lines[0].strip().isdigit() or not _is_postmaster(int(lines[0])):
        return None
    # The file grows while the server starts: port on line 4, status on line 8 once it is up.
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    status = lines[7].strip() if len(lines) > 7 else "starting"
    return _Postmaster(pid=int(lines[0]), port=port, status=status)


def _is_postmaster(pid: int) -> bool:
    """Tell whether ``pid`` is a live PostgreSQL process, not a zombie or a recycled pid."""
    if Path("/proc/self").exists():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return False
        # A zombie has an empty command line; a recycled pid runs some other program.
        return Path(os.fsdecode(cmdline.split(b"\0", 1)[0])).name in {"postgres", "postmaster"}
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    return True


def _wait_until_ready(pgdata: Path) -> _Postmaster | None:
    """Wait for a server that is starting up (e.g. crash recovery); None if none is running."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while (postmaster := _read_postmaster(pgdata)) is not None:
        if postmaster.status == "ready":
            return postmaster
        if time.monotonic() > deadline:
            raise DatabaseError(
                f"the local PostgreSQL in {pgdata} is still {postmaster.status!r} after "
                f"{START_TIMEOUT_S} s; see {pgdata / _SERVER_LOG}"
            )
        time.sleep(0.1)
    return None


@contextlib.contextmanager
def _exclusive_lock(data_dir: Path) -> Iterator[None]:
    """Serialise initdb/start/stop of one data directory across processes."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # Beside the data directory, not in it: initdb insists on an empty directory.
    with open(data_dir.parent / f".{data_dir.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _start(data_dir: Path, port: int | None) -> _Postmaster:
    port = _choose_port(cluster_dir(data_dir), port)
    os_user = server_os_user(cluster_dir(data_dir))
    pgdata, bindir = _placement(data_dir, os_user)
    if not (pgdata / "PG_VERSION").exists():
        _init_cluster(bindir, pgdata, os_user)
    started = time.monotonic()
    log_file = pgdata / _SERVER_LOG
    command = [str(bindir / "pg_ctl"), "start", "--pgdata", str(pgdata), "--log", str(log_file)]
    command += ["--wait", "--timeout", str(START_TIMEOUT_S), "-o", f"-p {port}"]
    run_program(command, os_user, pgdata, server_log=log_file)
    postmaster = _read_postmaster(pgdata)
    if postmaster is None or postmaster.status != "ready":
        raise DatabaseError(
            f"pg_ctl reported a start but no server runs in {pgdata}:\n" + log_tail(log_file)
        )
    (pgdata / PORT_FILE).write_text(f"{port}\n")
    _log.info(
        "pg_server.started",
        data_dir=str(pgdata),
        port=port,
        bindir=str(bindir),
        os_user=os_user.pw_name if os_user else None,
        seconds=round(time.monotonic() - started, 2),
    )
    return postmaster


def _placement(data_dir: Path, os_user: pwd.struct_passwd | None) -> tuple[Path, Path]:
    """Return the cluster and binary directories, relocating both out of the account's reach."""
    pgdata = cluster_dir(data_dir)
    bindir = find_bindir(pgdata)
    if os_user is None:
        return pgdata, bindir
    new_cluster = pgdata == data_dir and not (pgdata / "PG_VERSION").exists()
    if new_cluster and not reachable(data_dir.parent, os_user):
        private = private_dir(data_dir)
        data_dir.mkdir(exist_ok=True)
        (data_dir / RELOCATED_FILE).write_text(f"{private}\n")
        pgdata = private / "pgdata"
        _log.info("pg_server.relocated", data_dir=str(data_dir), cluster=str(pgdata))
    if not reachable(bindir / "postgres", os_user):
        bindir = copy_binaries(bindir, private_dir(data_dir))
    return pgdata, bindir


def _choose_port(pgdata: Path, requested: int | None) -> int:
    """Return ``requested`` (it must be free), else the remembered or default port if free."""
    if requested is not None:
        taken = _port_taken(requested)
        if taken:
            raise DatabaseError(
                f"cannot start the local PostgreSQL for {pgdata} on {_HOST}:{requested} "
                f"({taken}): another program holds that port; stop it, pass another port, or "
                "set DATABASE_URL to use an existing server"
            )
        return requested
    with contextlib.suppress(FileNotFoundError, ValueError):
        remembered = int((pgdata / PORT_FILE).read_text())
        if not _port_taken(remembered):
            return remembered
    if not _port_taken(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        return probe.getsockname()[1]


def _port_taken(port: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # PostgreSQL binds with SO_REUSEADDR too, so lingering TIME_WAIT sockets are no conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((_HOST, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _init_cluster(bindir: Path, pgdata: Path, os_user: pwd.struct_passwd | None) -> None:
    """Run initdb in a staging directory renamed into place once complete (crash-safe)."""
    if pgdata.exists():
        if any(pgdata.iterdir()):
            raise DatabaseError(
                f"{pgdata} exists but is not a PostgreSQL data directory (no PG_VERSION): "
                "remove it or choose another directory"
            )
        pgdata.rmdir()
    staging = Path(tempfile.mkdtemp(prefix=f".{pgdata.name}.initdb-", dir=pgdata.parent))
    try:
        password_file = staging / PASSWORD_FILE
        descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
        if os_user is not None:
            for path in (password_file, staging):
                os.chown(path, os_user.pw_uid, os_user.pw_gid)
        initdb = [str(bindir / "initdb"), "--pgdata", str(staging / "pgdata")]
        initdb += ["--username", SUPERUSER, f"--pwfile={password_file}", "--auth=scram-sha-256"]
        run_program([*initdb, "--encoding=UTF8", "--no-locale", "--no-sync"], os_user, staging)
        with (staging / "pgdata" / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# Written by chillflow.storage.pg_server: TCP on loopback only, no Unix socket\n"
                f"listen_addresses = '{_HOST}'\n"
                "unix_socket_directories = ''\n"
            )
        password_file.rename(staging / "pgdata" / PASSWORD_FILE)
        (staging / "pgdata").rename(pgdata)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _log.info("pg_server.initialised", data_dir=str(pgdata), bindir=str(bindir))


def _ensure_database(port: int, password: str) -> None:
    admin = DatabaseUrl(_HOST, port, "postgres", SUPERUSER, password)
    with connect(admin, action="creating the database") as conn:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction block
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cur.fetchone() is not None:
                return
            # Another process may create it between the check and here; that is fine. A
            # concurrent CREATE DATABASE fails on pg_database's unique index, not as duplicate.
            with contextlib.suppress(errors.DuplicateDatabase, errors.UniqueViolation):
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
