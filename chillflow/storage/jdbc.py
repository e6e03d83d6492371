"""Spark's JDBC writer into PostgreSQL tables that already exist.

The password travels only as a JDBC property, which Spark redacts from plans and its UI
(``spark.redaction.regex`` matches ``password``), and nothing here logs it.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from chillflow.database_url import DatabaseUrl
from chillflow.storage.postgres import reported


def jdbc_write_options(
    target: DatabaseUrl,
    table: str,
    *,
    partitions: int,
    batch_size: int,
    rewrite_batched_inserts: bool,
) -> dict[str, str]:
    """Return the options of a JDBC append into ``table``; they contain the password.

    Args:
        target: The database.
        table: Schema-qualified name of an existing table, e.g. ``stg.load_x``.
        partitions: Upper bound of parallel connections: Spark coalesces to it.
        batch_size: Rows per JDBC batch round trip.
        rewrite_batched_inserts: Let pgJDBC turn a batch into multi-row INSERTs.
    """
    return {
        "url": target.jdbc_url(),
        **target.jdbc_properties(),
        "dbtable": table,
        "numPartitions": str(partitions),
        "batchsize": str(batch_size),
        "reWriteBatchedInserts": str(rewrite_batched_inserts).lower(),
        # NONE: every batch commits on its own (autocommit), so the rows staged so far show in
        # PostgreSQL's statistics while the load runs (the progress lines), not only when a
        # whole partition commits. A failed task may leave some batches behind for its retry to
        # append again: the staging table is the run's own and the upsert collapses duplicate
        # keys with DISTINCT ON, so nothing reaches stg.complete_trip twice.
        "isolationLevel": "NONE",
    }


def append_jdbc(
    rows: DataFrame,
    target: DatabaseUrl,
    table: str,
    *,
    partitions: int,
    batch_size: int,
    rewrite_batched_inserts: bool,
) -> None:
    """Append ``rows`` to an existing table with Spark's JDBC writer (never creates or truncates).

    The options are :func:`jdbc_write_options`'.

    Raises:
        DatabaseError: PostgreSQL refused or lost a connection (the server is named).
    """
    options = jdbc_write_options(
        target,
        table,
        partitions=partitions,
        batch_size=batch_size,
        rewrite_batched_inserts=rewrite_batched_inserts,
    )
    with reported(target, f"appending rows to {table}"):
        rows.write.format("jdbc").mode("append").options(**options).save()
