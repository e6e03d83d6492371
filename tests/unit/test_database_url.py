"""PostgreSQL URLs: parsing, masking, and the value every storage function receives."""

from __future__ import annotations

import pytest

from chillflow import runtime
from chillflow.database_url import DatabaseUrl, mask_url, parse_database_url
from chillflow.errors import ConfigError
from chillflow.settings import load_settings
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("postgresql://u:@h/db", "postgresql://u:@h/db"),
        (
            "postgresql://u:secret@h/db?sslmode=require&application_name=x",
            "postgresql://u:***@h/db?sslmode=require&application_name=x",
        ),
        (
            "postgresql://u@h/db?sslmode=require&password=secret",
            "postgresql://u@h/db?sslmode=require&password=***",
        ),
        ("postgresql://u:p@ss/w?rd@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:secret@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("host=h password=secret dbname=db", "host=h password=*** dbname=db"),
        ("host=h password='se cret' dbname=db", "host=h password=*** dbname=db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_parse_database_url_components() -> None:
    parsed = parse_database_url(
        "postgresql://loader:p%40ss%2Fw@DB.example:6543/trips?sslmode=require"
    )

    assert parsed == DatabaseUrl(
        host="db.example",
        port=6543,
        dbname="trips",
        user="loader",
        password="p@ss/w",
        params=(("sslmode", "require"),),
    )
    assert parsed.jdbc_url() == "jdbc:postgresql://db.example:6543/trips"
    assert parsed.jdbc_properties() == {
        "user": "loader",
        "password": "p@ss/w",
        "driver": "org.postgresql.Driver",
        "sslmode": "require",
    }
    assert parsed.dsn_kwargs() == {
        "host": "db.example",
        "port": 6543,
        "dbname": "trips",
        "user": "loader",
        "password": "p@ss/w",
        "sslmode": "require",
    }
    assert parse_database_url(parsed.url()) == parsed
    assert "p@ss" not in repr(parsed)
    assert "p@ss" not in str(parsed)


def test_parse_database_url_defaults_port_and_allows_no_password() -> None:
    parsed = parse_database_url("postgres://app@localhost/chillflow")

    assert (parsed.port, parsed.password) == (5432, None)
    assert parsed.jdbc_properties() == {"user": "app", "driver": "org.postgresql.Driver"}
    assert "password" not in parsed.dsn_kwargs()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://u:secret@h/db", "must start with postgresql:// or postgres://"),
        ("h:5432/db", "must start with postgresql:// or postgres://"),
        ("postgresql://u:secret@/db", "names no host"),
        ("postgresql://u:secret@h:notaport/db", "port is not a number"),
        ("postgresql://u:secret@h:99999/db", "port is not a number"),
        ("postgresql://u:sec/ret@h/db", "percent-encode"),
        ("postgresql://u:secret@h1,h2/db", "multiple hosts"),
        ("postgresql://:secret@h/db", "names no user"),
        ("postgresql://u:secret@h", "names no database"),
        ("postgresql://u:secret@h/", "names no database"),
        ("postgresql://u:secret@h/db?host=/tmp", "give host in the URL itself"),
    ],
)
def test_parse_database_url_rejects_with_masked_url(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        parse_database_url(url)

    assert "secret" not in str(caught.value)
    assert "sec/ret" not in str(caught.value)
    assert caught.value.__context__ is None or "secret" not in str(caught.value.__context__)


def test_the_configured_database_is_used_without_starting_a_server(tmp_path) -> None:
    env = {"DATABASE_URL": "postgresql://u:secret@h:5432/db", "CHILLFLOW_DATA_DIR": str(tmp_path)}
    settings = load_settings(REPO_ROOT / "conf", env)

    assert runtime.database_url(settings) == parse_database_url(env["DATABASE_URL"])
    assert not (tmp_path / "postgres").exists()
