"""``chillflow db init`` against a real PostgreSQL (no Spark involved)."""

from __future__ import annotations

import json
import os

import pytest

from chillflow.storage.postgres import connect
from tests.conftest import create_database, drop_database, run_chillflow

pytestmark = pytest.mark.postgres

ZONES = (
    "LocationID,Borough,Zone,service_zone\n"
    "1,EWR,Newark Airport,EWR\n"
    "2,Queens,Jamaica Bay,Boro Zone\n"
)


@pytest.fixture
def empty_db(database_url):
    """A database without any ChillFlow schema."""
    url = create_database(database_url, "chillflow_dbcli")
    yield url
    drop_database(database_url, url.dbname)


def _db_init(url, tmp_path, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "CHILLFLOW_ZONE_LOOKUP"}
    env.update(DATABASE_URL=url.url(), CHILLFLOW_DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="INFO")
    env.update(env_extra or {})
    return run_chillflow("db", "init", *args, env=env)


def _zone_versions(url):
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT zone_id, zone, xmin::text FROM dim.zone ORDER BY zone_id")
        return cur.fetchall()


def test_db_init_creates_schema_and_seeds_zones_idempotently(empty_db, tmp_path):
    zones = tmp_path / "zones.csv"
    zones.write_text(ZONES)
    password = empty_db.password

    first = _db_init(empty_db, tmp_path, "--zones", str(zones), "--json")
    seeded = _zone_versions(empty_db)
    second = _db_init(empty_db, tmp_path, "--zones", str(zones), "--json")

    assert first.returncode == 0, first.stderr[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    result = json.loads(second.stdout)
    assert (result["zones"], result["zones_source"], result["embedded_server"]) == (
        2,
        str(zones),
        None,
    )
    assert result["database"] == str(empty_db)
    assert ":***@" in result["database"]
    assert [(z, name) for z, name, _ in seeded] == [(1, "Newark Airport"), (2, "Jamaica Bay")]
    assert _zone_versions(empty_db) == seeded  # the second run rewrote no row
    for done in (first, second):
        assert password not in done.stdout + done.stderr


def test_db_init_uses_the_configured_lookup(empty_db, tmp_path):
    zones = tmp_path / "configured.csv"
    zones.write_text(ZONES)

    done = _db_init(empty_db, tmp_path, "--json", env_extra={"CHILLFLOW_ZONE_LOOKUP": str(zones)})

    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["zones_source"] == str(zones)


def test_db_init_with_a_missing_zone_file_fails_clearly(empty_db, tmp_path):
    done = _db_init(empty_db, tmp_path, "--zones", str(tmp_path / "absent.csv"))

    assert done.returncode == 2
    assert "error: cannot read zone lookup" in done.stderr
    assert "Traceback" not in done.stderr
