"""PostgreSQL through psycopg2: database URLs, connections, the schema and the zone dimension.

Passwords never reach a message, log line or repr: URLs are shown through :func:`mask_url`, and
connection failures are reworded with the password stripped from the server's reason. Every
PostgreSQL failure, psycopg2's or pgJDBC's inside a Spark error, leaves :func:`connect` and
:func:`reported` as a :class:`DatabaseError` naming the action and the server.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import psycopg2
from psycopg2.extensions import connection as Connection

from chillflow.errors import ChillflowError, ConfigError, DatabaseError, error_summary

JDBC_DRIVER = "org.postgresql.Driver"
SCHEMA_VERSION = 2
ZONE_LOOKUP_HEADER = ("LocationID", "Borough", "Zone", "service_zone")

_SCHEMES = ("postgresql", "postgres")
_DEFAULT_PORT = 5432
# Query keys that would contradict the URL's own host, port, database or credentials.
_RESERVED_PARAMS = frozenset({"host", "hostaddr", "port", "dbname", "user", "password"})
# libpq parameters with a pgJDBC counterpart; others are not forwarded to JDBC.
_JDBC_PROPERTY_NAMES = {
    "sslmode": "sslmode",
    "application_name": "ApplicationName",
    "connect_timeout": "connectTimeout",
    "options": "options",
}
# The reason of a PostgreSQL failure inside a Spark error: pgJDBC's (jdbc writer and reader) or
# psycopg2's in a Python worker (copy writer).
_JVM_FAILURE = re.compile(r"(?:org\.postgresql\.util\.PSQLException|psycopg2\.[\w.]*): (.+)")
_SEVERITY = re.compile(r"^(?:ERROR|FATAL|PANIC):\s*")
# A lost connection: SQLSTATE classes 08 (connection exception) and 57 (operator intervention),
# or the words of libpq and pgJDBC, which give no SQLSTATE then.
_LOST_CONNECTION = ("08", "57")
_LOST = re.compile(r"terminating connection|closed the connection|I/O error|refused", re.I)
_PASSWORD_SETTING = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)
# Any fixed 64-bit number shared by every ChillFlow process; "CHLF" in ASCII.
_SCHEMA_LOCK_KEY = 0x43484C46

SCHEMA_SQL = """
-- Each table is created with its key alone and gains every other column through
-- ADD COLUMN IF NOT EXISTS, so the statements that build a new database also upgrade one
-- created by an earlier version.
CREATE SCHEMA IF NOT EXISTS dim;
CREATE SCHEMA IF NOT EXISTS stg;
CREATE SCHEMA IF NOT EXISTS mart;
CREATE SCHEMA IF NOT EXISTS ops;

CREATE TABLE IF NOT EXISTS ops.schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS dim.zone (zone_id integer PRIMARY KEY);
ALTER TABLE dim.zone
    ADD COLUMN IF NOT EXISTS borough text,
    ADD COLUMN IF NOT EXISTS zone text,
    ADD COLUMN IF NOT EXISTS service_zone text;

CREATE TABLE IF NOT EXISTS stg.complete_trip (trip_key char(64) PRIMARY KEY);
ALTER TABLE stg.complete_trip
    ADD COLUMN IF NOT EXISTS vehicle_id_h text NOT NULL,
    ADD COLUMN IF NOT EXISTS service text NOT NULL,
    ADD COLUMN IF NOT EXISTS vendor_id integer,
    ADD COLUMN IF NOT EXISTS pickup_ts timestamp NOT NULL,
    ADD COLUMN IF NOT EXISTS dropoff_ts timestamp,
    ADD COLUMN IF NOT EXISTS pickup_month text NOT NULL,
    ADD COLUMN IF NOT EXISTS passenger_count integer,
    ADD COLUMN IF NOT EXISTS pu_zone_id integer,
    ADD COLUMN IF NOT EXISTS do_zone_id integer,
    ADD COLUMN IF NOT EXISTS payment_type integer,
    ADD COLUMN IF NOT EXISTS rate_code integer,
    ADD COLUMN IF NOT EXISTS trip_distance double precision,
    ADD COLUMN IF NOT EXISTS distance_km double precision,
    ADD COLUMN IF NOT EXISTS duration_min double precision,
    ADD COLUMN IF NOT EXISTS avg_speed_kmh double precision,
    ADD COLUMN IF NOT EXISTS fare_amount double precision,
    ADD COLUMN IF NOT EXISTS tip_amount double precision,
    ADD COLUMN IF NOT EXISTS tolls_amount double precision,
    ADD COLUMN IF NOT EXISTS total_amount double precision,
    ADD COLUMN IF NOT EXISTS congestion_surcharge double precision,
    ADD COLUMN IF NOT EXISTS airport_fee double precision,
    ADD COLUMN IF NOT EXISTS source_file text,
    ADD COLUMN IF NOT EXISTS source_row bigint,
    ADD COLUMN IF NOT EXISTS curated_run_id text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN stg.complete_trip.pickup_month IS 'YYYY-MM of pickup_ts';
CREATE INDEX IF NOT EXISTS complete_trip_pickup_ts_idx ON stg.complete_trip (pickup_ts);
CREATE INDEX IF NOT EXISTS complete_trip_service_month_idx
    ON stg.complete_trip (service, pickup_month);

CREATE TABLE IF NOT EXISTS mart.zone_hourly_kpis (
    zone_id integer,
    hour_ts timestamp,
    PRIMARY KEY (zone_id, hour_ts)
);
ALTER TABLE mart.zone_hourly_kpis
    ADD COLUMN IF NOT EXISTS trips bigint,
    ADD COLUMN IF NOT EXISTS avg_fare double precision,
    ADD COLUMN IF NOT EXISTS avg_tip double precision,
    ADD COLUMN IF NOT EXISTS avg_speed_kmh double precision,
    ADD COLUMN IF NOT EXISTS avg_distance_km double precision,
    ADD COLUMN IF NOT EXISTS avg_duration_min double precision,
    ADD COLUMN IF NOT EXISTS pct_card double precision,
    ADD COLUMN IF NOT EXISTS unique_vehicles bigint,
    ADD COLUMN IF NOT EXISTS total_revenue double precision,
    ADD COLUMN IF NOT EXISTS outlier_rate double precision,
    ADD COLUMN IF NOT EXISTS computed_at timestamptz;

CREATE TABLE IF NOT EXISTS ops.job_run (id bigserial PRIMARY KEY);
ALTER TABLE ops.job_run
    ADD COLUMN IF NOT EXISTS job text NOT NULL,
    ADD COLUMN IF NOT EXISTS period text NOT NULL,
    ADD COLUMN IF NOT EXISTS run_id text NOT NULL UNIQUE,
    ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS status text NOT NULL
        CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'cancelled')),
    ADD COLUMN IF NOT EXISTS started_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS finished_at timestamptz,
    ADD COLUMN IF NOT EXISTS pid integer,
    ADD COLUMN IF NOT EXISTS host text,
    ADD COLUMN IF NOT EXISTS stats jsonb,
    ADD COLUMN IF NOT EXISTS error text,
    ADD COLUMN IF NOT EXISTS rows_read bigint,
    ADD COLUMN IF NOT EXISTS rows_written bigint;
CREATE INDEX IF NOT EXISTS job_run_job_period_started_idx
    ON ops.job_run (job, period, started_at DESC);
"""

_UPSERT_ZONES_SQL = """
INSERT INTO dim.zone AS z (zone_id, borough, zone, service_zone)
SELECT * FROM unnest(%s::integer[], %s::text[], %s::text[], %s::text[])
ON CONFLICT (zone_id) DO UPDATE
SET borough = EXCLUDED.borough, zone = EXCLUDED.zone, service_zone = EXCLUDED.service_zone
WHERE (z.borough, z.zone, z.service_zone)
    IS DISTINCT FROM (EXCLUDED.borough, EXCLUDED.zone, EXCLUDED.service_zone)
"""


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed ``postgresql://`` URL; ``str()`` and ``repr()`` never show the password.

    Attributes:
        host: Host name or IP address (without IPv6 brackets).
        port: TCP port.
        dbname: Database name.
        user: Role to log in as.
        password: Password, or None when the URL has none (trust or ~/.pgpass).
        params: Remaining query parameters (libpq keywords such as ``sslmode``), in URL order.
    """

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return mask_url(self.url())

    def url(self) -> str:
        """Return the URL again, credentials percent-encoded. It contains the password."""
        credentials = quote(self.user, safe="")
        if self.password is not None:
            credentials += ":" + quote(self.password, safe="")
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"postgresql://{credentials}@{self._netloc()}/{quote(self.dbname, safe='')}{query}"

    def jdbc_url(self) -> str:
        """Return ``jdbc:postgresql://host:port/dbname``; credentials are in jdbc_properties()."""
        return f"jdbc:postgresql://{self._netloc()}/{quote(self.dbname, safe='')}"

    def jdbc_properties(self) -> dict[str, str]:
        """Return Spark JDBC connection properties: user, password, driver and known parameters.

        Of the query parameters only sslmode, application_name, connect_timeout and options have a
        pgJDBC counterpart and are passed on.
        """
        properties = {"user": self.user, "driver": JDBC_DRIVER}
        if self.password is not None:
            properties["password"] = self.password
        for key, value in self.params:
            if key in _JDBC_PROPERTY_NAMES:
                properties[_JDBC_PROPERTY_NAMES[key]] = value
        return properties

    def dsn_kwargs(self) -> dict[str, str | int]:
        """Return keyword arguments for ``psycopg2.connect``."""
        kwargs: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
        }
        if self.password is not None:
            kwargs["password"] = self.password
        kwargs.update(self.params)
        return kwargs

    def server(self) -> str:
        """Return ``host:port/dbname``, for messages."""
        return f"{self._netloc()}/{self.dbname}"

    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def mask_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, safe to log or show.

    Handles ``user:password@`` (even with unencoded ``@``, ``/`` or ``?`` in the password), a
    ``password=`` query parameter and key=value DSNs. When in doubt it masks too much: an ``@``
    inside the query string of a URL with a password can hide the host as well.

    Args:
        url: Database URL or libpq key=value connection string.

    Returns:
        The same text with any password masked; unchanged when there is none.
    """
    scheme, separator, rest = url.partition("://")
    at = rest.rfind("@")
    if separator and at >= 0:
        user, colon, password = rest[:at].partition(":")
        if colon and password:
            url = f"{scheme}://{user}:***@{rest[at + 1 :]}"
    return _PASSWORD_SETTING.sub(r"\1***", url)


def parse_database_url(url: str) -> DatabaseUrl:
    """Parse a ``postgresql://`` or ``postgres://`` URL with user, host and database.

    Args:
        url: For example ``postgresql://user:pass@host:5432/dbname?sslmode=require``; special
            characters in the user or password must be percent-encoded.

    Returns:
        The parsed URL.

    Raises:
        ConfigError: The URL is malformed or lacks a user, host or database; the message shows
            the URL with its password masked.
    """
    problem = _url_problem(url)
    if problem is not None:
        raise ConfigError(f"invalid database URL {mask_url(url)}: {problem}")
    parts = urlsplit(url)
    return DatabaseUrl(
        host=parts.hostname or "",
        port=parts.port or _DEFAULT_PORT,
        dbname=unquote(parts.path[1:]),
        user=unquote(parts.username or ""),
        password=None if parts.password is None else unquote(parts.password),
        params=tuple(parse_qsl(parts.query, keep_blank_values=True)),
    )


def _url_problem(url: str) -> str | None:
    """Describe what makes ``url`` unusable, without quoting any of it; None when it is fine."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # The standard library's message quotes the offending text, which may be the password.
        return (
            "the port is not a number between 0 and 65535, or the host is malformed "
            "(percent-encode @ : / ? # in the password)"
        )
    if parts.scheme not in _SCHEMES:
        return "it must start with postgresql:// or postgres://"
    if not parts.hostname:
        return "it names no host (Unix-socket URLs do not work: Spark's JDBC needs TCP)"
    if "," in parts.netloc.rpartition("@")[2]:
        return "multiple hosts are not supported"
    if port == 0:
        return "port 0 is not a usable port"
    if not parts.username:
        return "it names no user"
    if not parts.path[1:]:
        return "it names no database (add /dbname after the host)"
    reserved = sorted(
        _RESERVED_PARAMS & {key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    )
    if reserved:
        return f"give {', '.join(reserved)} in the URL itself, not as query parameters"
    return None


@contextlib.contextmanager
def connect(url: str, *, connect_timeout: int = 5, action: str = "query") -> Iterator[Connection]:
    """Open a psycopg2 connection; commit when the block succeeds, roll back when it raises.

    Args:
        url: Database URL (see :func:`parse_database_url`).
        connect_timeout: Seconds to wait for the server to answer.
        action: What the block does, for the message of a failure (``creating the schema``).

    Yields:
        An open connection, closed when the block ends.

    Raises:
        ConfigError: The URL is invalid or carries an unknown connection parameter.
        DatabaseError: The server cannot be reached, refused the login, or a statement of the
            block failed; the message names the server but never the password.
    """
    target = parse_database_url(url)
    conn = _open(target, connect_timeout)
    try:
        with reported(target, action):
            yield conn
            conn.commit()
    except BaseException:
        # A broken connection cannot roll back; the original error is the one worth seeing.
        with contextlib.suppress(psycopg2.Error):
            conn.rollback()
        raise
    finally:
        conn.close()


@contextlib.contextmanager
def reported(target: DatabaseUrl, action: str) -> Iterator[None]:
    """Raise a PostgreSQL failure of the block as a DatabaseError naming ``action`` and the server.

    Other errors pass unchanged.
    """
    try:
        yield
    except ChillflowError:
        raise
    except Exception as exc:
        reason = failure_reason(exc)
        if reason is None:
            raise
        raise DatabaseError(
            f"{action} failed on PostgreSQL at {target.server()}: "
            f"{_redact(reason, target.password)}{_advice(exc, target, reason)}"
        ) from None


def failure_reason(exc: BaseException) -> str | None:
    """Return the server's reason for a psycopg2 error or a Spark error caused by PostgreSQL.

    Spark errors are searched for pgJDBC's exception along their Java causes (Spark wraps it,
    e.g. in ``FAILED_JDBC.CONNECTION``), then in their text (psycopg2 in a Python worker).

    Returns:
        One line (with the SQLSTATE when known), or None when ``exc`` is no PostgreSQL failure.
    """
    if isinstance(exc, psycopg2.Error):
        reason = _SEVERITY.sub("", error_summary(exc.pgerror or exc))
        return f"{reason} (SQLSTATE {exc.pgcode})" if exc.pgcode else reason
    cause = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    with contextlib.suppress(Exception):  # a Py4J call on the error path must not raise
        while cause is not None:
            if cause.getClass().getName().startswith("org.postgresql."):
                return _SEVERITY.sub("", str(cause.getMessage()).strip())[:500]
            cause = cause.getCause()
    match = _JVM_FAILURE.search(str(exc))
    return _SEVERITY.sub("", match.group(1).strip())[:500] if match else None


def _advice(exc: BaseException, target: DatabaseUrl, reason: str) -> str:
    code = getattr(exc, "pgcode", None) or ""
    if code == "42501":
        return (
            f"; grant the role {target.user!r} what it lacks (GRANT CREATE ON DATABASE "
            f"{target.dbname} TO {target.user} lets it create the schema), or run `db init` as "
            "the database owner"
        )
    if code.startswith(_LOST_CONNECTION) or _LOST.search(reason):
        return "; the server stopped or the connection broke: rerun once it is back"
    return ""


def _open(target: DatabaseUrl, connect_timeout: int) -> Connection:
    # The error is raised after the except block on purpose: chaining would keep psycopg2's
    # exception, whose text can echo parts of the DSN, in __context__ and tracebacks.
    try:
        return psycopg2.connect(**target.dsn_kwargs(), connect_timeout=connect_timeout)
    except psycopg2.OperationalError as exc:
        failure: Exception = DatabaseError(
            f"cannot connect to PostgreSQL at {target.host}:{target.port}/{target.dbname} as "
            f"user {target.user!r}: {_redact(str(exc), target.password)}"
        )
    except psycopg2.ProgrammingError as exc:
        failure = ConfigError(
            f"invalid connection parameter in {target}: {_redact(str(exc), target.password)}"
        )
    raise failure


def _redact(text: str, password: str | None) -> str:
    text = " ".join(text.split())
    if password:
        for form in (password, quote(password, safe="")):
            text = text.replace(form, "***")
    return text


def init_schema(conn: Connection) -> None:
    """Create or upgrade the ChillFlow tables; a no-op once this schema version is recorded.

    The DDL runs under a transaction-level advisory lock, so concurrent jobs initialising the same
    database wait for each other instead of colliding in the catalog. Lock, DDL and version row go
    to the server as one multi-statement query, which PostgreSQL runs as one transaction even on
    an autocommit connection; otherwise the caller's commit (``connect`` does it) releases the lock.

    Args:
        conn: Open connection with the right to create schemas.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('ops.schema_version') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute("SELECT 1 FROM ops.schema_version WHERE version = %s", (SCHEMA_VERSION,))
            # Skipping the DDL once done spares every job run ALTER TABLE's exclusive locks.
            if cur.fetchone() is not None:
                return
        cur.execute(
            "SELECT pg_advisory_xact_lock(%(lock)s);"
            + SCHEMA_SQL
            + "INSERT INTO ops.schema_version (version) VALUES (%(version)s)"
            " ON CONFLICT (version) DO NOTHING;",
            {"lock": _SCHEMA_LOCK_KEY, "version": SCHEMA_VERSION},
        )


def seed_zones(conn: Connection, csv_path: Path) -> int:
    """Upsert the TLC taxi zone lookup into ``dim.zone``; unchanged rows are not rewritten.

    Zones missing from the file are kept. Empty fields become NULL.

    Args:
        conn: Open connection; the caller commits.
        csv_path: ``taxi_zone_lookup.csv`` with header ``LocationID,Borough,Zone,service_zone``.

    Returns:
        The number of rows in ``dim.zone`` afterwards.

    Raises:
        ConfigError: The file is missing or unreadable, has another header, a row with another
            number of fields, a non-integer or a repeated LocationID.
    """
    zones = _read_zone_lookup(csv_path)
    columns = [[zone[position] for zone in zones] for position in range(len(ZONE_LOOKUP_HEADER))]
    with conn.cursor() as cur:
        cur.execute(_UPSERT_ZONES_SQL, columns)
        cur.execute("SELECT count(*) FROM dim.zone")
        return cur.fetchone()[0]


def _read_zone_lookup(csv_path: Path) -> list[tuple[int, str | None, str | None, str | None]]:
    expected = ",".join(ZONE_LOOKUP_HEADER)
    try:
        handle = csv_path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(
            f"cannot read zone lookup {csv_path} ({exc.strerror}): expected the TLC "
            f"taxi_zone_lookup.csv with header {expected}"
        ) from None
    zones: dict[int, tuple[int, str | None, str | None, str | None]] = {}
    with handle:
        reader = csv.reader(handle)
        header = [cell.strip() for cell in next(reader, [])]
        if tuple(header) != ZONE_LOOKUP_HEADER:
            raise ConfigError(
                f"zone lookup {csv_path} has header {','.join(header) or '(none)'}; "
                f"expected {expected}"
            )
        for row in reader:
            if not row:
                continue
            where = f"zone lookup {csv_path} line {reader.line_num}"
            if len(row) != len(ZONE_LOOKUP_HEADER):
                raise ConfigError(f"{where} has {len(row)} fields; expected 4 ({expected})")
            try:
                zone_id = int(row[0])
            except ValueError:
                raise ConfigError(f"{where}: LocationID {row[0]!r} is not an integer") from None
            if zone_id in zones:
                raise ConfigError(f"{where}: LocationID {zone_id} appears twice")
            borough, zone, service_zone = (value or None for value in row[1:])
            zones[zone_id] = (zone_id, borough, zone, service_zone)
    return list(zones.values())


def resolve_database_url(env_url: str | None, data_dir: Path) -> str:
    """Return ``env_url`` when set, else the URL of the embedded server in ``data_dir/postgres``.

    Args:
        env_url: Value of DATABASE_URL, or None.
        data_dir: ChillFlow's local state directory, e.g. ``.chillflow``.

    Returns:
        A database URL.
    """
    if env_url:
        return env_url
    # Imported here: pg_server uses connect() from this module.
    from chillflow.storage.pg_server import ensure_local_postgres

    return ensure_local_postgres(data_dir / "postgres")
