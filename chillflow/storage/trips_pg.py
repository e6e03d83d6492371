"""``stg.complete_trip`` through psycopg2: per-run staging tables, the upsert and reconciliation.

A load stages the month's trips in ``stg.load_<utc time>_<run id>``, one partition per slice,
then :func:`load_staged` makes each slice hold exactly them in one transaction (docs/decisions.md,
"A staging table per run" and "A new month of trips attached as a partition"). Identifiers are
composed with :mod:`psycopg2.sql` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import astuple, dataclass
from datetime import datetime

import psycopg2
import structlog
from psycopg2 import errors, sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from chillflow.database_url import DatabaseUrl
from chillflow.errors import ChillflowError, ConfigError
from chillflow.schemas import COMPLETE_TRIP_DDL, columns
from chillflow.storage.postgres import connect, init_schema, open_connection, reported
from chillflow.storage.trip_partitions import (
    attach_staged,
    create_partition,
    create_service_partition,
    partition_rows,
    partition_table,
    slice_check,
)

STAGING_SCHEMA = "stg"
#: Columns a load writes, in table order; created_at and updated_at are the database's.
LOAD_COLUMNS = tuple(columns(COMPLETE_TRIP_DDL))
#: Columns whose change makes an update. curated_run_id is lineage that changes whenever a
#: month is curated again, even when its trips did not: comparing it would rewrite every row.
COMPARED_COLUMNS = tuple(c for c in LOAD_COLUMNS if c not in ("trip_key", "curated_run_id"))
#: The primary key of stg.complete_trip: PostgreSQL wants the partition columns in it.
KEY_COLUMNS = ("trip_key", "service", "pickup_month")

_RUN_ID = re.compile(r"^[a-z0-9_]{1,40}$")
_STAMP = "%Y%m%dt%H%M%S"
# First key of the two-key advisory locks that serialise loads of one (service, month), and of
# those a live load holds on its staging table's name.
_LOCK_CLASS = 0x54524950  # "TRIP"
_STAGING_LOCK_CLASS = 0x53544147  # "STAG"
_STAGED_ROWS = (
    "SELECT coalesce(sum(s.n_tup_ins), 0) FROM pg_inherits i"
    " JOIN pg_stat_user_tables s ON s.relid = i.inhrelid WHERE i.inhparent = %s::regclass"
)

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, order=True)
class TripSlice:
    """The trips of one service and pickup month, the unit a load replaces."""

    service: str
    month: str


@dataclass(frozen=True)
class LoadCounts:
    """What one upsert transaction did to stg.complete_trip."""

    inserted: int
    updated: int
    deleted: int


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it can be part of a table name (``[a-z0-9_]``, at most 40).

    Raises:
        ConfigError: It cannot.
    """
    if not _RUN_ID.match(run_id):
        raise ConfigError(f"run id {run_id!r}: expected 1-40 characters of a-z, 0-9 and _")
    return run_id


def staging_table(run_id: str, created: datetime) -> tuple[str, str]:
    """Return ``(schema, name)`` of the staging table of a run started at ``created`` (UTC)."""
    return STAGING_SCHEMA, f"load_{created.strftime(_STAMP)}_{check_run_id(run_id)}"


def staged_slice_table(staging: tuple[str, str], service: str) -> tuple[str, str]:
    """Return ``(schema, name)`` of the partition of ``staging`` holding one service's trips.

    Not ``load_...``: only the staging table itself is claimed and cleaned up by that name.
    """
    digest = hashlib.sha256(staging[1].encode()).hexdigest()[:16]
    return STAGING_SCHEMA, f"staged_{digest}_{service}"


def create_staging_table(
    conn: Connection, table: tuple[str, str], slices: Iterable[TripSlice]
) -> None:
    """Create an empty staging table shaped as stg.complete_trip, one partition per slice.

    A slice whose partition holds trips gets an UNLOGGED partition; the others a logged one
    that may become the slice's partition, their service's partition created here. Each has the
    CHECK confining it to its slice, no key and no index; autovacuum is off while rows are staged.

    Raises:
        ValueError: Two slices of one service (a load covers one month).
    """
    slices = sorted(set(slices))
    if len({s.service for s in slices}) != len(slices):
        raise ValueError(f"one month per load: {slices}")
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE stg.complete_trip INCLUDING DEFAULTS)"
                " PARTITION BY LIST (service)"
            ).format(sql.Identifier(*table))
        )
        for trip_slice in slices:
            create_service_partition(cur, trip_slice.service)
            filled = partition_rows(cur, trip_slice.service, trip_slice.month)
            cur.execute(
                sql.SQL(
                    "CREATE {}TABLE {} PARTITION OF {} ({}) FOR VALUES IN ({})"
                    " WITH (autovacuum_enabled = false)"
                ).format(
                    sql.SQL("UNLOGGED " if filled else ""),
                    sql.Identifier(*staged_slice_table(table, trip_slice.service)),
                    sql.Identifier(*table),
                    slice_check(trip_slice.service, trip_slice.month),
                    sql.Literal(trip_slice.service),
                )
            )


def drop_staging_table(conn: Connection, table: tuple[str, str]) -> None:
    """Drop a staging table (no error when it is gone)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(*table)))


def claim_staging_table(
    database_url: DatabaseUrl, table: tuple[str, str], slices: Iterable[TripSlice]
) -> Connection:
    """Create a staging table under its advisory lock, held by the connection returned.

    The lock is taken before the table exists, so no cleanup ever sees the table unclaimed;
    closing the connection (or the death of the process) releases it.
    """
    with reported(database_url, f"creating {'.'.join(table)}"):
        conn = open_connection(database_url, autocommit=True)
        try:
            with conn.cursor() as cur:
                _staging_lock(cur, "pg_advisory_lock", table[1])
            create_staging_table(conn, table, slices)
        except BaseException:
            conn.close()
            raise
    return conn


def discard_staging_table(database_url: DatabaseUrl, table: tuple[str, str]) -> None:
    """Drop a staging table after a failed run, logging instead of raising when that fails.

    A table left behind is harmless (the next run uses another name), and once its run's lock
    is released the next load or ``db init`` drops it.
    """
    try:
        with connect(database_url) as conn:
            drop_staging_table(conn, table)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the run's own error
        _log.warning("trips_pg.staging_left", table=".".join(table), error=type(exc).__name__)


def drop_orphaned_staging_tables(conn: Connection) -> list[str]:
    """Drop the staging tables whose advisory lock nobody holds (their runs died); return names.

    A live load holds its table's lock from before the table exists until it ends, so its
    table is never dropped here, whatever its age. ``conn`` is in autocommit mode.
    """
    dropped = []
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            " AND c.relname LIKE 'load\\_%%'",
            (STAGING_SCHEMA,),
        )
        names = [row[0] for row in cur.fetchall()]
        # A dead client's backend may still finish a statement on the table: skip it then.
        cur.execute("SET lock_timeout = '5s'")
        for name in names:
            if not _staging_lock(cur, "pg_try_advisory_lock", name):
                continue
            try:
                drop_staging_table(conn, (STAGING_SCHEMA, name))
                dropped.append(name)
            except errors.LockNotAvailable:
                pass
            finally:
                _staging_lock(cur, "pg_advisory_unlock", name)
    return dropped


def _staging_lock(cur: Cursor, function: str, name: str) -> object:
    """Call an advisory-lock function on the key of the staging table ``name``."""
    cur.execute(f"SELECT {function}(%s, hashtext(%s))", (_STAGING_LOCK_CLASS, name))
    return cur.fetchone()[0]


def prepare_database(database_url: DatabaseUrl) -> list[str]:
    """Create or upgrade the schema and drop staging tables left by dead runs; return their names.

    Raises:
        ConfigError: The URL is malformed (shown masked).
        DatabaseError: PostgreSQL is unreachable, refused the login or a statement.
    """
    with connect(database_url, action="creating or upgrading the schema") as conn:
        init_schema(conn)
    with connect(database_url, action="dropping staging tables of dead runs") as conn:
        conn.autocommit = True
        return drop_orphaned_staging_tables(conn)


def load_staged(
    conn: Connection, staging: tuple[str, str], slices: Iterable[TripSlice], *, work_mem: str
) -> LoadCounts:
    """Make the given slices of stg.complete_trip hold exactly the staged trips.

    In the caller's transaction, after waiting for concurrent loads of the same slices: a slice
    with no trips yet whose staged rows are logged becomes its partition as staged
    (:func:`~chillflow.storage.trip_partitions.attach_staged`); any other is upserted, its
    trips no longer staged deleted, and a row whose compared columns are all equal not written,
    so its ``updated_at`` keeps the time of its last real change. Duplicate staged keys (a
    retried Spark task) are collapsed either way. The caller commits (or rolls back).

    Args:
        conn: Open connection.
        staging: The staging table of :func:`create_staging_table` for ``slices``.
        slices: The (service, month) slices the staging table covers.
        work_mem: PostgreSQL ``work_mem`` and ``maintenance_work_mem`` for this transaction's
            sorts, hashes and index builds (e.g. ``256MB``).
    """
    slices = sorted(set(slices))
    done = [(0, 0, 0)]  # (inserted, updated, deleted) of each slice
    with conn.cursor() as cur:
        cur.execute(
            "SELECT set_config('work_mem', %(m)s, true),"
            " set_config('maintenance_work_mem', %(m)s, true)",
            {"m": work_mem},
        )
        for service, month in map(astuple, slices):
            lock = f"{service}|{month}"
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, lock))
        for service, month in map(astuple, slices):
            staged = staged_slice_table(staging, service)
            cur.execute(
                "SELECT relpersistence = 'p' FROM pg_class WHERE oid = %s::regclass",
                (sql.Identifier(*staged).as_string(cur),),
            )
            logged = cur.fetchone()[0]
            if logged and not partition_rows(cur, service, month):
                cur.execute(
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                        sql.Identifier(*staging), sql.Identifier(*staged)
                    )
                )
                done.append((attach_staged(cur, staged, service, month), 0, 0))
            else:
                create_partition(cur, service, month)
                done.append(_upsert(cur, staged, partition_table(service, month)))
    return LoadCounts(*(sum(column) for column in zip(*done, strict=True)))


def _upsert(
    cur: Cursor, staged: tuple[str, str], partition: tuple[str, str]
) -> tuple[int, int, int]:
    """Delete the partition's trips not staged, insert and update the staged ones; the counts."""
    target, source = sql.Identifier(*partition), sql.Identifier(*staged)
    cur.execute(
        sql.SQL(
            "DELETE FROM {} AS t WHERE NOT EXISTS"
            " (SELECT 1 FROM {} AS s WHERE s.trip_key = t.trip_key)"
        ).format(target, source)
    )
    deleted = cur.rowcount
    cur.execute(
        _UPSERT.format(
            target=target,
            columns=_column_list(LOAD_COLUMNS),
            staged=source,
            key=_column_list(KEY_COLUMNS),
            assignments=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
                for c in LOAD_COLUMNS
                if c not in KEY_COLUMNS
            ),
            current=sql.SQL(", ").join(sql.Identifier("t", c) for c in COMPARED_COLUMNS),
            incoming=sql.SQL(", ").join(sql.Identifier("excluded", c) for c in COMPARED_COLUMNS),
        )
    )
    inserted, updated = cur.fetchone()
    return inserted, updated, deleted


_UPSERT = sql.SQL(
    """
    WITH upserted AS (
        INSERT INTO {target} AS t ({columns})
        SELECT DISTINCT ON (trip_key) {columns} FROM {staged} ORDER BY trip_key
        ON CONFLICT ({key}) DO UPDATE SET {assignments}, updated_at = now()
        WHERE ({current}) IS DISTINCT FROM ({incoming})
        -- A row this statement inserted has no xmax; an updated one has its locker's.
        RETURNING t.xmax = 0 AS inserted
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
    """
)


def count_slice(conn: Connection, trip_slice: TripSlice) -> int:
    """Return the number of trips of one slice in stg.complete_trip."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM stg.complete_trip"
            " WHERE service = %(service)s AND pickup_month = %(month)s",
            {"service": trip_slice.service, "month": trip_slice.month},
        )
        return cur.fetchone()[0]


@contextlib.contextmanager
def staging_progress(
    database_url: DatabaseUrl, staging: tuple[str, str]
) -> Iterator[Callable[[], int | None]]:
    """Yield a callable returning the rows committed to ``staging`` so far, or None.

    Read from PostgreSQL's statistics of the table: the JDBC writer commits every batch, and
    PostgreSQL flushes a session's statistics about once a second. None when the database
    cannot be asked: progress lines must never fail a load.
    """
    opened: list[Connection] = []

    def rows_staged() -> int | None:
        try:
            if not opened:
                opened.append(open_connection(database_url, autocommit=True))
            with opened[0].cursor() as cur:
                cur.execute(_STAGED_ROWS, (sql.Identifier(*staging).as_string(cur),))
                return int(cur.fetchone()[0])
        except (psycopg2.Error, ChillflowError):
            return None

    try:
        yield rows_staged
    finally:
        for conn in opened:
            conn.close()


def _column_list(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))
