"""Spark JDBC writer options."""

from __future__ import annotations

from chillflow.database_url import parse_database_url
from chillflow.storage.jdbc import jdbc_write_options


def test_jdbc_options_carry_credentials_only_as_properties():
    target = parse_database_url("postgresql://u:s3cret@db.example:5433/trips?sslmode=require")

    options = jdbc_write_options(
        target, "stg.load_x", partitions=3, batch_size=500, rewrite_batched_inserts=True
    )

    assert options["url"] == "jdbc:postgresql://db.example:5433/trips"
    assert (options["user"], options["password"], options["sslmode"]) == ("u", "s3cret", "require")
    assert (options["numPartitions"], options["batchsize"]) == ("3", "500")
    assert options["reWriteBatchedInserts"] == "true"
    assert "s3cret" not in options["url"]
