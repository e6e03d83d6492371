"""Bulk append from Spark into an existing PostgreSQL table with COPY, one stream per partition.

A Python data source (Spark 4's ``DataSourceArrowWriter``) receives each partition as Arrow
record batches; pyarrow renders every batch as CSV and psycopg2 streams the batches into one
``COPY … FROM STDIN`` per partition, committed once at its end, so a failed task leaves nothing
behind for its retry to append again. ``bench/bench_trips.py`` compares it with Spark's JDBC
INSERT batches. CSV keeps values exact: doubles are written in their shortest round-trip form,
timestamps with microseconds, NULL as an unquoted empty field and an empty string as ``""``.

Executors import this module, psycopg2 and pyarrow, so on a cluster the ``chillflow`` package
(``spark-submit.sh`` ships it) and both libraries must be importable by the executors' Python.
The password travels as the data source option ``password``, which Spark redacts from plans and
its UI (``spark.redaction.regex``); nothing here logs it.
"""

from __future__ import annotations

import io
import json
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pa_csv
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage
from pyspark.sql.types import StructType

from chillflow.database_url import DatabaseUrl
from chillflow.storage.postgres import reported

FORMAT = "chillflow_pg_copy"
_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False)
# Sessions that know the format; registering again makes Spark log a warning.
_REGISTERED: weakref.WeakSet[SparkSession] = weakref.WeakSet()


def copy_rows(
    rows: DataFrame, target: DatabaseUrl, table: tuple[str, str], *, partitions: int
) -> None:
    """Append ``rows`` to an existing table with COPY, from at most ``partitions`` connections.

    Args:
        rows: Rows whose column names all exist in ``table``.
        target: The database.
        table: ``(schema, name)`` of the existing table.
        partitions: Maximum number of concurrent connections (fewer partitions are kept).

    Raises:
        DatabaseError: PostgreSQL refused or lost a connection (the server is named).
    """
    connection = {k: v for k, v in target.dsn_kwargs().items() if k != "password"}
    if rows.sparkSession not in _REGISTERED:
        rows.sparkSession.dataSource.register(PostgresCopyDataSource)
        _REGISTERED.add(rows.sparkSession)
    writer = (
        # coalesce only ever lowers the partition count, and without a shuffle.
        rows.coalesce(partitions)
        .write.format(FORMAT)
        .mode("append")
        .option("connection", json.dumps(connection))
        .option("schema", table[0])
        .option("table", table[1])
    )
    if target.password is not None:
        writer = writer.option("password", target.password)
    with reported(target, f"copying rows into {'.'.join(table)}"):
        writer.save()


class PostgresCopyDataSource(DataSource):
    """Write-only data source: ``COPY`` into an existing table (see :func:`copy_rows`)."""

    @classmethod
    def name(cls) -> str:
        """Return the format name."""
        return FORMAT

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceArrowWriter:
        """Return the writer; the table must exist and is never truncated."""
        return _CopyWriter(self.options, schema.names)


@dataclass
class CopyCommitMessage(WriterCommitMessage):
    """Rows one partition copied."""

    rows: int


class _CopyWriter(DataSourceArrowWriter):
    def __init__(self, options: dict[str, str], columns: list[str]):
        self._connection = json.loads(options["connection"])
        self._password = options.get("password")
        self._table = (options["schema"], options["table"])
        self._columns = columns

    def write(self, iterator: Iterator[pa.RecordBatch]) -> CopyCommitMessage:
        # Imported here: this runs in the executors' Python workers.
        import psycopg2
        from psycopg2 import sql

        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, ENCODING 'UTF8')").format(
            sql.Identifier(*self._table), sql.SQL(", ").join(map(sql.Identifier, self._columns))
        )
        credentials = {} if self._password is None else {"password": self._password}
        stream = _CsvStream(iterator)
        conn = psycopg2.connect(**self._connection, **credentials)
        try:
            with conn.cursor() as cur:
                cur.copy_expert(statement, stream, size=1 << 20)
            conn.commit()
        finally:
            conn.close()
        return CopyCommitMessage(rows=stream.rows)


class _CsvStream(io.RawIOBase):
    """A readable file of CSV text, converted from Arrow batches only when psycopg2 asks."""

    def __init__(self, batches: Iterator[pa.RecordBatch]):
        super().__init__()
        self._batches = batches
        self.rows = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Return the next batch as CSV (b"" at the end).

        psycopg2's ``copy_expert`` sends whatever a read returns, so a batch is never split to
        honour ``size``.
        """
        for batch in self._batches:
            if batch.num_rows:
                sink = io.BytesIO()
                pa_csv.write_csv(batch, sink, _CSV_OPTIONS)
                self.rows += batch.num_rows
                return sink.getvalue()
        return b""
