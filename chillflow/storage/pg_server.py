"""Embedded PostgreSQL for local runs when DATABASE_URL is not set.

The server keeps its cluster in one data directory and listens on TCP 127.0.0.1 only (Spark's JDBC
driver cannot use Unix sockets, so those are switched off). Its superuser ``chillflow`` logs in with
a generated password kept in ``<data_dir>/chillflow.password`` (mode 0600). The server outlives the
Python process that started it; later calls, from any process, find it through ``postmaster.pid``
and reuse it.

initdb and postgres refuse to run as root, so as root the cluster belongs to the unprivileged OS
user ``pgserver`` (the account the pgserver package creates for the same reason; it is created here
when missing) and every server command runs as that user.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from psycopg2 import errors, sql

from chillflow.errors import ConfigError, DatabaseError, DependencyError
from chillflow.storage.postgres import connect

DEFAULT_PORT = 54329
DATABASE = "chillflow"
SUPERUSER = "chillflow"
PASSWORD_FILE = "chillflow.password"  # noqa: S105 - a file name, not a secret

_HOST = "127.0.0.1"
_ROOT_RUNS_AS = "pgserver"
_SERVER_LOG = "server.log"
_BINARIES = ("initdb", "pg_ctl", "postgres")
_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 30
_INSTALL_HINT = (
    "install PostgreSQL server binaries with `pip install pgserver` (bundles PostgreSQL 16) or "
    "`apt-get install postgresql`, or set DATABASE_URL to an existing server"
)

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Postmaster:
    """The parts of ``postmaster.pid`` this module needs."""

    pid: int
    port: int | None
    status: str


def ensure_local_postgres(data_dir: Path, *, port: int = DEFAULT_PORT) -> str:
    """Start, or reuse, the local PostgreSQL server whose cluster lives in ``data_dir``.

    A new directory gets a fresh cluster (initdb). Reusing a running server costs one connection.

    Args:
        data_dir: Cluster directory, e.g. ``.chillflow/postgres``; its parent is created if missing.
        port: TCP port on 127.0.0.1 to listen on.

    Returns:
        ``postgresql://chillflow:PASSWORD@127.0.0.1:PORT/chillflow``; the database exists.

    Raises:
        ConfigError: ``port`` is not a TCP port number.
        DatabaseError: The port is taken by another program, the server is already running on
            another port, or it failed to start (the message quotes its log).
        DependencyError: No PostgreSQL server binaries are installed.
    """
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} for the local PostgreSQL is not between 1 and 65535")
    data_dir = data_dir.expanduser().resolve()
    postmaster = _read_postmaster(data_dir)
    if postmaster is None or postmaster.status != "ready":
        with _exclusive_lock(data_dir):
            postmaster = _wait_until_ready(data_dir) or _start(data_dir, port)
    if postmaster.port != port:
        raise DatabaseError(
            f"the local PostgreSQL in {data_dir} is already running on port {postmaster.port}, "
            f"not {port}: use port {postmaster.port} or stop it first (stop_local_postgres)"
        )
    try:
        password = (data_dir / PASSWORD_FILE).read_text().strip()
    except FileNotFoundError:
        raise DatabaseError(
            f"the PostgreSQL cluster in {data_dir} was not created by ChillFlow (it has no "
            f"{PASSWORD_FILE}): stop it and choose another directory"
        ) from None
    _ensure_database(port, password)
    return _url(port, password, DATABASE)


def stop_local_postgres(data_dir: Path) -> None:
    """Stop the local server of ``data_dir`` with a fast shutdown; do nothing if it is not running.

    Args:
        data_dir: Cluster directory given to :func:`ensure_local_postgres`.

    Raises:
        DatabaseError: The server did not exit within 30 seconds.
    """
    data_dir = data_dir.expanduser().resolve()
    with _exclusive_lock(data_dir):
        postmaster = _read_postmaster(data_dir)
        if postmaster is None:
            return
        # SIGINT is PostgreSQL's "fast" shutdown, what `pg_ctl stop -m fast` sends; signalling
        # directly needs neither binaries nor switching to the server's OS user.
        os.kill(postmaster.pid, signal.SIGINT)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while _read_postmaster(data_dir) is not None:
            if time.monotonic() > deadline:
                raise DatabaseError(
                    f"the local PostgreSQL in {data_dir} (pid {postmaster.pid}) did not stop "
                    f"within {_STOP_TIMEOUT_S} s; see {data_dir / _SERVER_LOG}"
                )
            time.sleep(0.05)
    _log.info("pg_server.stopped", data_dir=str(data_dir))


def _url(port: int, password: str, dbname: str) -> str:
    return f"postgresql://{SUPERUSER}:{password}@{_HOST}:{port}/{dbname}"


def _read_postmaster(data_dir: Path) -> _Postmaster | None:
    """Return the live postmaster of ``data_dir``, or None when no server process owns it."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    if not lines or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0])
    if not _is_postmaster(pid):
        return None
    # The file grows while the server starts: port on line 4, status on line 8 once it is up.
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    status = lines[7].strip() if len(lines) > 7 else "starting"
    return _Postmaster(pid=pid, port=port, status=status)


def _is_postmaster(pid: int) -> bool:
    """Tell whether ``pid`` is a live PostgreSQL process, not a zombie or a recycled pid."""
    if Path("/proc/self").exists():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return False
        # A zombie has an empty command line; a recycled pid runs some other program.
        program = os.fsdecode(cmdline.split(b"\0", 1)[0])
        return Path(program).name in {"postgres", "postmaster"}
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    return True


def _wait_until_ready(data_dir: Path) -> _Postmaster | None:
    """Wait for a server that is starting up (e.g. crash recovery); None if none is running."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while (postmaster := _read_postmaster(data_dir)) is not None:
        if postmaster.status == "ready":
            return postmaster
        if time.monotonic() > deadline:
            raise DatabaseError(
                f"the local PostgreSQL in {data_dir} is still {postmaster.status!r} after "
                f"{_START_TIMEOUT_S} s; see {data_dir / _SERVER_LOG}"
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


def _start(data_dir: Path, port: int) -> _Postmaster:
    bindir = _find_bindir(data_dir)
    _check_port_free(port, data_dir)
    os_user = _server_os_user(data_dir)
    if os_user is not None:
        _grant_traverse(data_dir, os_user.pw_uid)
        _grant_traverse(bindir / "postgres", os_user.pw_uid)
    if not (data_dir / "PG_VERSION").exists():
        _init_cluster(bindir, data_dir, os_user)
    started = time.monotonic()
    _run(
        [
            str(bindir / "pg_ctl"),
            "start",
            "--pgdata",
            str(data_dir),
            "--log",
            str(data_dir / _SERVER_LOG),
            "--wait",
            "--timeout",
            str(_START_TIMEOUT_S),
            "-o",
            f"-p {port}",
        ],
        os_user,
        data_dir,
        server_log=data_dir / _SERVER_LOG,
    )
    postmaster = _read_postmaster(data_dir)
    if postmaster is None or postmaster.status != "ready":
        raise DatabaseError(
            f"pg_ctl reported a start but no server runs in {data_dir}:\n"
            + _log_tail(data_dir / _SERVER_LOG)
        )
    _log.info(
        "pg_server.started",
        data_dir=str(data_dir),
        port=port,
        bindir=str(bindir),
        seconds=round(time.monotonic() - started, 2),
    )
    return postmaster


def _init_cluster(bindir: Path, data_dir: Path, os_user: pwd.struct_passwd | None) -> None:
    """Create the cluster in a staging directory and rename it into place once complete.

    A crash halfway through initdb then leaves only a stray staging directory, never a
    half-initialised ``data_dir``.
    """
    if data_dir.exists():
        if any(data_dir.iterdir()):
            raise DatabaseError(
                f"{data_dir} exists but is not a PostgreSQL data directory (no PG_VERSION): "
                "remove it or choose another directory"
            )
        data_dir.rmdir()
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.initdb-", dir=data_dir.parent))
    try:
        password = secrets.token_urlsafe(24)
        password_file = staging / PASSWORD_FILE
        _write_private(password_file, password, os_user)
        if os_user is not None:
            os.chown(staging, os_user.pw_uid, os_user.pw_gid)
        pgdata = staging / "pgdata"
        _run(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(pgdata),
                "--username",
                SUPERUSER,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            os_user,
            staging,
        )
        with (pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# Written by chillflow.storage.pg_server: TCP on loopback only, no Unix socket\n"
                f"listen_addresses = '{_HOST}'\n"
                "unix_socket_directories = ''\n"
            )
        password_file.rename(pgdata / PASSWORD_FILE)
        pgdata.rename(data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _log.info("pg_server.initialised", data_dir=str(data_dir), bindir=str(bindir))


def _write_private(path: Path, text: str, os_user: pwd.struct_passwd | None) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text + "\n")
    if os_user is not None:
        os.chown(path, os_user.pw_uid, os_user.pw_gid)


def _ensure_database(port: int, password: str) -> None:
    with connect(_url(port, password, "postgres")) as conn:
        # CREATE DATABASE cannot run inside a transaction block.
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cur.fetchone() is not None:
                return
            # Another process may create it between the check and here; that is fine. A
            # concurrent CREATE DATABASE fails on pg_database's unique index, not as duplicate.
            with contextlib.suppress(errors.DuplicateDatabase, errors.UniqueViolation):
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def _check_port_free(port: int, data_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # PostgreSQL binds with SO_REUSEADDR too, so lingering TIME_WAIT sockets are no conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((_HOST, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
        else:
            return
    raise DatabaseError(
        f"cannot start the local PostgreSQL for {data_dir} on {_HOST}:{port} ({reason}): another "
        "program holds that port; stop it, pass another port, or set DATABASE_URL to use an "
        "existing server"
    )


def _find_bindir(data_dir: Path) -> Path:
    """Pick server binaries, matching the major version of an existing cluster."""
    bindirs = _candidate_bindirs()
    if not bindirs:
        raise DependencyError(
            f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found: {_INSTALL_HINT}"
        )
    version_file = data_dir / "PG_VERSION"
    if not version_file.exists():
        return bindirs[0]
    wanted = version_file.read_text().strip()
    versions = {bindir: _major_version(bindir) for bindir in bindirs}
    for bindir, version in versions.items():
        if version == wanted:
            return bindir
    raise DependencyError(
        f"{data_dir} holds a PostgreSQL {wanted} cluster but only PostgreSQL "
        f"{', '.join(sorted(set(versions.values())))} binaries are installed: install PostgreSQL "
        f"{wanted} (`apt-get install postgresql-{wanted}`), or stop and delete {data_dir} to "
        "start afresh"
    )


def _candidate_bindirs() -> list[Path]:
    """List directories holding initdb, pg_ctl and postgres: pgserver's first, then the system's."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("pgserver")  # locates the package without importing it
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    candidates.extend(sorted(debian, key=lambda path: _numeric(path.parent.name), reverse=True))
    found: list[Path] = []
    for candidate in candidates:
        complete = all(os.access(candidate / name, os.X_OK) for name in _BINARIES)
        if complete and candidate.resolve() not in found:
            found.append(candidate.resolve())
    return found


def _numeric(text: str) -> int:
    return int(text) if text.isdigit() else -1


def _major_version(bindir: Path) -> str:
    output = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True
    ).stdout
    match = re.search(r"\)\s*(\d+)", output)
    return match.group(1) if match else "unknown"


def _server_os_user(data_dir: Path) -> pwd.struct_passwd | None:
    """Return the OS user to run the server as, or None to run it as the current user."""
    if os.geteuid() != 0:
        return None
    version_file = data_dir / "PG_VERSION"
    if version_file.exists() and version_file.stat().st_uid != 0:
        return pwd.getpwuid(version_file.stat().st_uid)
    try:
        return pwd.getpwnam(_ROOT_RUNS_AS)
    except KeyError:
        pass
    try:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _ROOT_RUNS_AS,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        raise DatabaseError(
            f"PostgreSQL refuses to run as root and the OS user {_ROOT_RUNS_AS!r} could not be "
            f"created ({detail.strip()}): create it, or run ChillFlow as a non-root user"
        ) from None
    _log.info("pg_server.os_user_created", user=_ROOT_RUNS_AS)
    return pwd.getpwnam(_ROOT_RUNS_AS)


def _grant_traverse(path: Path, uid: int) -> None:
    """Let ``uid`` reach ``path``: add only o+x (search, not read) to ancestors lacking it."""
    for directory in path.parents:
        mode = directory.stat()
        if mode.st_uid != uid and not mode.st_mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode.st_mode) | stat.S_IXOTH)
            _log.warning("pg_server.granted_traverse", directory=str(directory))


def _run(
    command: list[str],
    os_user: pwd.struct_passwd | None,
    cwd: Path,
    *,
    server_log: Path | None = None,
) -> None:
    """Run a PostgreSQL program, as ``os_user`` when given.

    Raises:
        DatabaseError: The program failed or timed out; the message quotes its output and the
            end of ``server_log``.
    """
    switch_user = {}
    if os_user is not None:
        switch_user = {"user": os_user.pw_uid, "group": os_user.pw_gid, "extra_groups": []}
    # PGPORT, PGDATA and friends would silently override what the command line means.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    program = Path(command[0]).name
    # Output goes to a file, not a pipe: pg_ctl's server child must not inherit a pipe we read.
    with tempfile.TemporaryFile("w+") as output:
        try:
            subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                check=True,
                timeout=_START_TIMEOUT_S + 30,
                **switch_user,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output.seek(0)
            failure = "timed out" if isinstance(exc, subprocess.TimeoutExpired) else "failed"
            message = f"{program} {failure}: {output.read().strip()}"
        else:
            return
    if server_log is not None:
        message += "\n" + _log_tail(server_log)
    raise DatabaseError(message)


def _log_tail(server_log: Path, lines: int = 20) -> str:
    try:
        text = server_log.read_text(errors="replace")
    except OSError:
        return f"(no server log at {server_log})"
    return "server log (last lines):\n" + "\n".join(text.splitlines()[-lines:])
