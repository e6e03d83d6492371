"""PostgreSQL through psycopg2: connections, failures as DatabaseErrors, the schema, dim.zone.

Every PostgreSQL failure, psycopg2's or pgJDBC's inside a Spark error, leaves :func:`connect` and
:func:`reported` as a DatabaseError naming the action and the server, never the password.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg2
from psycopg2.extensions import connection as Connection

from chillflow.database_url import DatabaseUrl
from chillflow.errors import ChillflowError, ConfigError, DatabaseError, error_summary
from chillflow.storage.trip_partitions import move_into_partitions, set_aside_plain_table

SCHEMA_VERSION = 3
ZONE_LOOKUP_HEADER = ("LocationID", "Borough", "Zone", "service_zone")

# A PostgreSQL failure inside a Spark error: pgJDBC's, or psycopg2's in a Python worker.
_JVM_FAILURE = re.compile(r"(?:org\.postgresql\.util\.PSQLException|psycopg2\.[\w.]*): (.+)")
_SEVERITY = re.compile(r"^(?:ERROR|FATAL|PANIC):\s*")
# A lost connection: SQLSTATE classes 08 and 57, or libpq's and pgJDBC's words (no SQLSTATE).
_LOST = re.compile(r"terminating connection|closed the connection|I/O error|refused", re.I)
_SCHEMA_LOCK_KEY = 0x43484C46  # "CHLF": any 64-bit number every ChillFlow process shares

SCHEMA_SQL = """
-- Each table is created with its key (stg.complete_trip with the columns it has had since it
-- was partitioned) and gains every other column through ADD COLUMN IF NOT EXISTS, so the
-- statements that build a new database also upgrade one created by an earlier version.
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

-- Partitioned by service, then by pickup month (storage/trip_partitions.py): a new month is
-- loaded as a partition of its own. PostgreSQL wants the partition columns in the key.
CREATE TABLE IF NOT EXISTS stg.complete_trip (
    trip_key char(64),
    vehicle_id_h text NOT NULL,
    service text NOT NULL,
    vendor_id integer,
    pickup_ts timestamp NOT NULL,
    dropoff_ts timestamp,
    pickup_month text NOT NULL,
    PRIMARY KEY (trip_key, service, pickup_month)
) PARTITION BY LIST (service);
ALTER TABLE stg.complete_trip
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


@contextlib.contextmanager
def connect(target: DatabaseUrl, *, action: str = "query") -> Iterator[Connection]:
    """Open a connection; commit when the block succeeds, roll back when it raises.

    ``action`` says what the block does, for the message of a failure (``creating the schema``).

    Raises:
        ConfigError: The URL carries an unknown connection parameter.
        DatabaseError: The server cannot be reached, refused the login, or a statement of the
            block failed; the message names the server but never the password.
    """
    conn = open_connection(target)
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


def open_connection(target: DatabaseUrl, *, autocommit: bool = False) -> Connection:
    """Open a connection the caller closes; failures are reworded without the password."""
    # Raised after the except block: chaining would keep psycopg2's exception, whose text can
    # echo parts of the DSN, in __context__.
    try:
        conn = psycopg2.connect(**target.dsn_kwargs(), connect_timeout=5)
        conn.autocommit = autocommit
        return conn
    except psycopg2.OperationalError as exc:
        failure: Exception = DatabaseError(
            f"cannot connect to PostgreSQL at {target.server()} as user {target.user!r}: "
            f"{_redact(str(exc), target.password)}"
        )
    except psycopg2.ProgrammingError as exc:
        failure = ConfigError(
            f"invalid connection parameter in {target}: {_redact(str(exc), target.password)}"
        )
    raise failure


@contextlib.contextmanager
def reported(target: DatabaseUrl, action: str) -> Iterator[None]:
    """Raise a PostgreSQL failure of the block as a DatabaseError naming ``action`` and server."""
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
    """The server's reason for a psycopg2 error or a Spark error caused by PostgreSQL, or None.

    Spark errors are searched for pgJDBC's exception along their Java causes (Spark wraps it,
    e.g. in ``FAILED_JDBC.CONNECTION``), then in their text (psycopg2 in a Python worker).
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
    if code.startswith(("08", "57")) or _LOST.search(reason):
        return "; the server stopped or the connection broke: rerun once it is back"
    return ""


def _redact(text: str, password: str | None) -> str:
    text = " ".join(text.split())
    if password:
        for form in (password, quote(password, safe="")):
            text = text.replace(form, "***")
    return text


def init_schema(conn: Connection) -> None:
    """Create or upgrade the ChillFlow tables; a no-op once this schema version is recorded.

    Lock, DDL and version row run in one transaction (an explicit one on an autocommit
    connection), so concurrent jobs wait for each other's DDL. An unpartitioned
    stg.complete_trip of an earlier version is converted in it.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('ops.schema_version') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute("SELECT 1 FROM ops.schema_version WHERE version = %s", (SCHEMA_VERSION,))
            # Skipping the DDL once done spares every job run ALTER TABLE's exclusive locks.
            if cur.fetchone() is not None:
                return
        explicit = conn.autocommit
        if explicit:
            cur.execute("BEGIN")
        try:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            plain = set_aside_plain_table(cur)
            cur.execute(SCHEMA_SQL)
            if plain is not None:
                move_into_partitions(cur, plain)
            cur.execute(
                "INSERT INTO ops.schema_version (version) VALUES (%s)"
                " ON CONFLICT (version) DO NOTHING",
                (SCHEMA_VERSION,),
            )
        except BaseException:
            if explicit:
                with contextlib.suppress(psycopg2.Error):
                    cur.execute("ROLLBACK")
            raise
        if explicit:
            cur.execute("COMMIT")


def seed_zones(conn: Connection, csv_path: Path) -> int:
    """Upsert the TLC ``taxi_zone_lookup.csv`` into dim.zone; return the rows it holds then.

    Zones missing from the file are kept, unchanged rows not rewritten, empty fields are NULL.

    Raises:
        ConfigError: The file is unreadable, or its header, a row's fields or a LocationID are
            not as expected.
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
        # Decoded up front: a file that is not UTF-8 text (a Parquet file, an Excel export in
        # cp1252) is a bad argument, not a crash in the middle of the rows.
        text = csv_path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read zone lookup {csv_path} ({getattr(exc, 'strerror', None) or exc}): "
            f"expected the TLC taxi_zone_lookup.csv with header {expected}"
        ) from None
    zones: dict[int, tuple[int, str | None, str | None, str | None]] = {}
    reader = csv.reader(text.splitlines(keepends=True))
    header = [cell.strip() for cell in next(reader, [])]
    if tuple(header) != ZONE_LOOKUP_HEADER:
        raise ConfigError(
            f"zone lookup {csv_path} has header {','.join(header) or '(none)'}; expected {expected}"
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
