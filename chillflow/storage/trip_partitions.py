"""The partitions of ``stg.complete_trip``: ``stg.complete_trip_<service>_<yyyy>_<mm>``.

Each service's partition is LIST-partitioned by ``pickup_month`` (docs/decisions.md, "A new
month of trips attached as a partition"). Names are composed with :mod:`psycopg2.sql` from a
checked service and month only.
"""

from __future__ import annotations

from psycopg2 import errors, sql
from psycopg2.extensions import cursor as Cursor

from chillflow.errors import ConfigError, SchemaError
from chillflow.schemas import SERVICES
from chillflow.settings import parse_month

SCHEMA = "stg"
PARENT = "complete_trip"
#: The CHECK constraint a staged slice carries until it is attached: it implies the partition
#: bound, so ATTACH PARTITION need not scan the rows to prove it.
SLICE_CHECK = "staged_slice"
# First key of the advisory lock under which a service's partition is created.
_SERVICE_LOCK_CLASS = 0x50415254  # "PART"


def partition_table(service: str, month: str | None = None) -> tuple[str, str]:
    """Return ``(schema, name)`` of a service's partition, or of one month of it.

    Raises:
        SchemaError: The service is unknown or the month not ``YYYY-MM``.
    """
    if service not in SERVICES:
        raise SchemaError(f"service {service!r}: expected one of {', '.join(SERVICES)}")
    if month is None:
        return SCHEMA, f"{PARENT}_{service}"
    try:
        parse_month(month)
    except ConfigError:
        raise SchemaError(f"pickup month {month!r}: expected YYYY-MM") from None
    return SCHEMA, f"{PARENT}_{service}_{month.replace('-', '_')}"


def slice_check(service: str, month: str) -> sql.Composed:
    """The ``CONSTRAINT ... CHECK`` clause that confines a table to one slice."""
    return sql.SQL("CONSTRAINT {} CHECK (service = {} AND pickup_month = {})").format(
        sql.Identifier(SLICE_CHECK), sql.Literal(service), sql.Literal(month)
    )


def partition_rows(cur: Cursor, service: str, month: str) -> bool | None:
    """None when the slice has no partition, else whether its partition holds a row."""
    table = partition_table(service, month)
    cur.execute("SELECT to_regclass(%s)", (sql.Identifier(*table).as_string(cur),))
    if cur.fetchone()[0] is None:
        return None
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(*table)))
    return cur.fetchone()[0]


def create_partition(cur: Cursor, service: str, month: str) -> None:
    """Create the (empty) partition of a slice, and its service's, where missing."""
    create_service_partition(cur, service)
    cur.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES IN ({})").format(
            sql.Identifier(*partition_table(service, month)),
            sql.Identifier(*partition_table(service)),
            sql.Literal(month),
        )
    )


def attach_staged(cur: Cursor, staged: tuple[str, str], service: str, month: str) -> int:
    """Make a standalone staged slice the slice's partition, in the caller's transaction; rows.

    The table must have the columns of stg.complete_trip and :data:`SLICE_CHECK`. Should a
    retried Spark task have staged a trip twice, ATTACH fails on the key and runs again once one
    row per key is kept. An empty partition of the slice is dropped first.
    """
    table = partition_table(service, month)
    if partition_rows(cur, service, month) is False:
        cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(*table)))
    create_service_partition(cur, service)
    cur.execute(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            sql.Identifier(*staged), sql.Identifier(table[1])
        )
    )
    attach = sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
        sql.Identifier(*partition_table(service)), sql.Identifier(*table), sql.Literal(month)
    )
    cur.execute("SAVEPOINT attach_staged")
    try:
        cur.execute(attach)
    except errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT attach_staged")
        cur.execute(
            sql.SQL(
                "DELETE FROM {0} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, row_number()"
                " OVER (PARTITION BY trip_key) AS n FROM {0}) AS keyed WHERE n > 1)"
            ).format(sql.Identifier(*table))
        )
        cur.execute(attach)
    cur.execute("RELEASE SAVEPOINT attach_staged")
    cur.execute(
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}, RESET (autovacuum_enabled)").format(
            sql.Identifier(*table), sql.Identifier(SLICE_CHECK)
        )
    )
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table)))
    return cur.fetchone()[0]


def set_aside_plain_table(cur: Cursor) -> tuple[str, str] | None:
    """Rename an unpartitioned stg.complete_trip (an earlier schema) out of the way; its name.

    Its key and indexes are dropped, which frees their names for the partitioned table. None
    when stg.complete_trip is absent or partitioned already.
    """
    cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (f"{SCHEMA}.{PARENT}",))
    found = cur.fetchone()
    if found is None or found[0] != "r":
        return None
    aside = (SCHEMA, f"{PARENT}_unpartitioned")
    cur.execute(
        sql.SQL(
            "ALTER TABLE {0} DROP CONSTRAINT IF EXISTS {1};"
            " DROP INDEX IF EXISTS {2}, {3};"
            " ALTER TABLE {0} RENAME TO {4}"
        ).format(
            sql.Identifier(SCHEMA, PARENT),
            sql.Identifier(f"{PARENT}_pkey"),
            sql.Identifier(SCHEMA, f"{PARENT}_pickup_ts_idx"),
            sql.Identifier(SCHEMA, f"{PARENT}_service_month_idx"),
            sql.Identifier(aside[1]),
        )
    )
    return aside


def move_into_partitions(cur: Cursor, old: tuple[str, str]) -> int:
    """Move the trips of a set-aside table into partitions of stg.complete_trip, then drop it.

    The columns both tables have are copied, created_at and updated_at included; returns the
    rows moved.

    Raises:
        SchemaError: A row's service or pickup month cannot name a partition.
    """
    table = sql.Identifier(*old)
    moved = 0
    # A table of a version older still may lack the partition columns, but then holds no row.
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(table))
    if cur.fetchone()[0]:
        cur.execute(
            sql.SQL("SELECT DISTINCT service, pickup_month FROM {} ORDER BY 1, 2").format(table)
        )
        for service, month in cur.fetchall():
            create_partition(cur, service, month)
        cur.execute(
            "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s)"
            " AND a.attnum > 0 AND NOT a.attisdropped AND a.attname IN (SELECT attname"
            " FROM pg_attribute WHERE attrelid = to_regclass(%s)) ORDER BY a.attnum",
            (table.as_string(cur), f"{SCHEMA}.{PARENT}"),
        )
        shared = sql.SQL(", ").join(sql.Identifier(row[0]) for row in cur.fetchall())
        cur.execute(
            sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY service, pickup_month, trip_key"
            ).format(sql.Identifier(SCHEMA, PARENT), shared, shared, table)
        )
        moved = cur.rowcount
    cur.execute(sql.SQL("DROP TABLE {}").format(table))
    return moved


def create_service_partition(cur: Cursor, service: str) -> None:
    """Create a service's partition of stg.complete_trip where missing (readers wait for it)."""
    table = partition_table(service)
    cur.execute("SELECT to_regclass(%s)", (sql.Identifier(*table).as_string(cur),))
    if cur.fetchone()[0] is not None:
        return
    # One statement, so one transaction even in autocommit: two first loads of a service
    # would both create it; the second waits for the lock, then finds it.
    cur.execute(
        sql.SQL(
            "SELECT pg_advisory_xact_lock({}, hashtext({}));"
            " CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES IN ({})"
            " PARTITION BY LIST (pickup_month)"
        ).format(
            sql.Literal(_SERVICE_LOCK_CLASS),
            sql.Literal(service),
            sql.Identifier(*table),
            sql.Identifier(SCHEMA, PARENT),
            sql.Literal(service),
        )
    )
