"""The embedded PostgreSQL: ports, reuse, ``db stop``, ``make clean`` and running as root.

Every test starts real servers in directories of its own and stops them at the end. A squatter
socket holds the default port, as another checkout's server would, so no test takes it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chillflow.database_url import DatabaseUrl
from chillflow.storage import pg_install
from chillflow.storage.pg_server import (
    DEFAULT_PORT,
    PASSWORD_FILE,
    cluster_dir,
    ensure_local_postgres,
    stop_local_postgres,
)
from chillflow.storage.postgres import connect
from tests.conftest import REPO_ROOT, run_chillflow

pytestmark = pytest.mark.postgres

PGSERVER = importlib.util.find_spec("pgserver")


@pytest.fixture
def servers() -> Iterator[list[Path]]:
    """Data directories whose servers (and relocated clusters) are removed after the test."""
    started: list[Path] = []
    yield started
    for data_dir in started:
        private = cluster_dir(data_dir).parent
        stop_local_postgres(data_dir)
        if private != data_dir.parent:
            shutil.rmtree(private, ignore_errors=True)


@pytest.fixture
def default_port_taken() -> Iterator[None]:
    """Hold 54329 for the test, as another checkout's running server would (if it is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        try:
            squatter.bind(("127.0.0.1", DEFAULT_PORT))
            squatter.listen()
        except OSError:
            pass  # someone holds it already
        yield


def _port(url: DatabaseUrl) -> int:
    return url.port


def _answers(url: DatabaseUrl) -> bool:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone() == (1,)


def _modes(paths: list[Path]) -> dict[Path, int]:
    return {path: path.stat().st_mode for path in paths}


def test_two_data_dirs_get_two_servers_that_keep_their_ports(tmp_path, servers, default_port_taken):
    first, second = tmp_path / "one" / "postgres", tmp_path / "two" / "postgres"
    servers += [first, second]

    url_one = ensure_local_postgres(first)
    url_two = ensure_local_postgres(second)
    again = ensure_local_postgres(first)
    stopped = stop_local_postgres(first)
    restarted = ensure_local_postgres(first)

    ports = {_port(url_one), _port(url_two)}
    assert len(ports) == 2 and DEFAULT_PORT not in ports
    assert _answers(url_one) and _answers(url_two)
    assert again == url_one
    assert stopped == _port(url_one)
    assert restarted == url_one  # the remembered port, not the (taken) default
    assert (cluster_dir(first) / PASSWORD_FILE).stat().st_mode & 0o777 == 0o600


def _db_stop(data_root: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(CHILLFLOW_DATA_DIR=str(data_root), LOG_LEVEL="INFO")
    return run_chillflow("db", "stop", "--json", env=env, timeout=60)


def test_db_stop_stops_the_embedded_server_and_is_idempotent(tmp_path, servers):
    data_dir = tmp_path / "data" / "postgres"
    servers.append(data_dir)
    url = ensure_local_postgres(data_dir)

    first = _db_stop(tmp_path / "data")
    second = _db_stop(tmp_path / "data")

    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "embedded_server": str(data_dir),
        "status": "stopped",
        "port": _port(url),
    }
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["status"] == "not running"
    assert not (cluster_dir(data_dir) / "postmaster.pid").exists()


def test_make_clean_stops_the_server_without_a_venv(tmp_path, servers):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(REPO_ROOT / "Makefile", checkout)
    data_dir = checkout / ".chillflow" / "postgres"
    servers.append(data_dir)
    ensure_local_postgres(data_dir)
    private = cluster_dir(data_dir).parent
    postmaster = int((cluster_dir(data_dir) / "postmaster.pid").read_text().split()[0])

    done = subprocess.run(
        ["make", "clean", "VENV=absent"],
        cwd=checkout,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "stopped the local PostgreSQL" in done.stdout
    assert not Path(f"/proc/{postmaster}").exists()
    assert not (checkout / ".chillflow").exists()
    assert private == checkout / ".chillflow" or not private.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path needs root")
@pytest.mark.skipif(PGSERVER is None, reason="needs the pgserver wheel's binaries")
def test_as_root_nothing_outside_its_directories_changes(tmp_path, servers, monkeypatch):
    # A checkout under a private home (like /root), whose venv holds the server binaries: the
    # server's account can reach neither the data directory nor the binaries.
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    site_packages = home / "checkout" / ".venv" / "site-packages"
    wheel = Path(PGSERVER.origin).parent
    for part in (wheel.name, f"{wheel.name}.libs"):
        shutil.copytree(wheel.parent / part, site_packages / part, symlinks=True)
    venv_install = site_packages / wheel.name / "pginstall"
    monkeypatch.setattr(pg_install, "_candidate_bindirs", lambda: [venv_install / "bin"])
    data_dir = home / "checkout" / ".chillflow" / "postgres"
    servers.append(data_dir)
    watched = [*reversed((venv_install / "bin" / "postgres").parents)]
    accounts = {name: Path(name).read_bytes() for name in ("/etc/passwd", "/etc/group")}
    before = _modes(watched)

    url = ensure_local_postgres(data_dir)
    reused = ensure_local_postgres(data_dir)

    assert _modes(watched) == before
    assert {name: Path(name).read_bytes() for name in accounts} == accounts
    assert reused == url and _answers(url)
    pgdata = cluster_dir(data_dir)
    private = pgdata.parent
    assert not pgdata.is_relative_to(home)
    assert stat.S_IMODE(private.stat().st_mode) == 0o711 and private.stat().st_uid == 0
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    owner = Path(f"/proc/{postmaster}").stat().st_uid
    assert pwd.getpwuid(owner).pw_name in ("postgres", "nobody")
