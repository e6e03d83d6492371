"""PostgreSQL server binaries for the embedded server: finding them, and running them as root.

initdb and postgres refuse to run as root: the server then runs as an existing account (the
cluster's owner, else ``postgres``, else ``nobody``). No OS user is created and no mode changed
outside ChillFlow's own directories, which would change the machine beyond the project.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import structlog

from chillflow.errors import DatabaseError, DependencyError

START_TIMEOUT_S = 60
_ROOT_RUNS_AS = ("postgres", "nobody")
_BINARIES = ("initdb", "pg_ctl", "postgres")
_INSTALL_HINT = (
    "install PostgreSQL server binaries with `pip install pgserver` (bundles PostgreSQL 16) or "
    "`apt-get install postgresql`, or set DATABASE_URL to an existing server"
)

_log = structlog.get_logger("chillflow.storage.pg_server")


def private_dir(data_dir: Path) -> Path:
    """Create (or check) the 0711 root-owned directory of a relocated cluster or binaries.

    The server's account may pass through it; nobody may list it.
    """
    # /var/tmp survives reboots; the name is checked below, as in any world-writable directory.
    base = Path("/var/tmp")  # noqa: S108
    base = base if base.is_dir() else Path(tempfile.gettempdir())
    private = base / f"chillflow-pg-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]}"
    with contextlib.suppress(FileExistsError):
        private.mkdir(mode=0o711)
        private.chmod(0o711)  # whatever the umask
    info = private.lstat()  # someone else may have taken the name first
    mine = stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    if not mine or info.st_mode & 0o777 != 0o711:
        raise DatabaseError(
            f"{private} (for the PostgreSQL cluster of {data_dir}) is not a directory of uid "
            f"{os.geteuid()} with mode 0711: remove it, or run ChillFlow as a non-root user"
        )
    return private


def copy_binaries(bindir: Path, private: Path) -> Path:
    """Copy an installation the server's account cannot reach into ``private``; return its bin.

    The copy keeps the layout around the installation (``pgserver/pginstall``) and the wheel's
    bundled libraries beside the package (``pgserver.libs``): the binaries find them through
    an RPATH relative to themselves.
    """
    install, package = bindir.parent, bindir.parent.parent
    copy = private / f"pg{_major_version(bindir)}"
    relative = Path(package.name, install.name)
    if not (copy / relative / "bin" / "postgres").exists():
        partial = Path(tempfile.mkdtemp(prefix=".pg-copy-", dir=private))
        for directory in (partial, partial / package.name, partial / relative):
            directory.mkdir(exist_ok=True)
            directory.chmod(0o755)
        for part in ("bin", "lib", "share"):
            if (install / part).is_dir():
                shutil.copytree(install / part, partial / relative / part, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, partial / libs.name, symlinks=True)
        partial.rename(copy)
        _log.info("pg_server.binaries_copied", source=str(install), copy=str(copy))
    return copy / relative / "bin"


def _as_user(os_user: pwd.struct_passwd | None) -> dict:
    if os_user is None:
        return {}
    return {"user": os_user.pw_uid, "group": os_user.pw_gid, "extra_groups": []}


def reachable(path: Path, os_user: pwd.struct_passwd) -> bool:
    """Tell whether ``os_user`` can search (directory) or execute (file) ``path``."""
    probe = ["test", "-x", str(path)]
    return subprocess.run(probe, **_as_user(os_user), check=False).returncode == 0


def find_bindir(pgdata: Path) -> Path:
    """Pick server binaries, matching the major version of an existing cluster."""
    bindirs = _candidate_bindirs()
    if not bindirs:
        raise DependencyError(
            f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found: {_INSTALL_HINT}"
        )
    version_file = pgdata / "PG_VERSION"
    if not version_file.exists():
        return bindirs[0]
    wanted = version_file.read_text().strip()
    versions = {bindir: _major_version(bindir) for bindir in bindirs}
    for bindir, version in versions.items():
        if version == wanted:
            return bindir
    raise DependencyError(
        f"{pgdata} holds a PostgreSQL {wanted} cluster but only PostgreSQL "
        f"{', '.join(sorted(set(versions.values())))} binaries are installed: install PostgreSQL "
        f"{wanted} (`apt-get install postgresql-{wanted}`), or stop and delete {pgdata} to "
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
    version = lambda path: int(path.parent.name) if path.parent.name.isdigit() else -1  # noqa: E731
    candidates.extend(sorted(debian, key=version, reverse=True))
    complete = (c for c in candidates if all(os.access(c / n, os.X_OK) for n in _BINARIES))
    return list(dict.fromkeys(candidate.resolve() for candidate in complete))


def _major_version(bindir: Path) -> str:
    command = [str(bindir / "postgres"), "--version"]
    match = re.search(r"\)\s*(\d+)", subprocess.run(command, capture_output=True, text=True).stdout)
    return match.group(1) if match else "unknown"


def server_os_user(pgdata: Path) -> pwd.struct_passwd | None:
    """Return the OS account to run the server as, or None to run it as the current user."""
    if os.geteuid() != 0:
        return None
    version_file = pgdata / "PG_VERSION"
    if version_file.exists() and version_file.stat().st_uid != 0:
        return pwd.getpwuid(version_file.stat().st_uid)
    for name in _ROOT_RUNS_AS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise DatabaseError(
        f"PostgreSQL refuses to run as root and none of the accounts {', '.join(_ROOT_RUNS_AS)} "
        "exists: run ChillFlow as a non-root user, or set DATABASE_URL"
    )


def run_program(
    command: list[str], os_user: pwd.struct_passwd | None, cwd: Path, server_log: Path | None = None
) -> None:
    """Run a PostgreSQL program as ``os_user``; DatabaseError quoting its output on failure."""
    # PGPORT, PGDATA and friends would silently override what the command line means.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
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
                timeout=START_TIMEOUT_S + 30,
                **_as_user(os_user),
            )
            return
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output.seek(0)
            failure = "timed out" if isinstance(exc, subprocess.TimeoutExpired) else "failed"
            message = f"{Path(command[0]).name} {failure}: {output.read().strip()}"
    if server_log is not None:
        message += "\n" + log_tail(server_log)
    raise DatabaseError(message)


def log_tail(server_log: Path) -> str:
    """The last 20 lines of the server log, for an error message."""
    try:
        text = server_log.read_text(errors="replace")
    except OSError:
        return f"(no server log at {server_log})"
    return "server log (last lines):\n" + "\n".join(text.splitlines()[-20:])
