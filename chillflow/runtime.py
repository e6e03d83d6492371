"""Settings, logging and the SparkSession of the process, each created once (entry points only)."""

from __future__ import annotations

import functools

from pyspark.sql import SparkSession

from chillflow.database_url import DatabaseUrl
from chillflow.logs import configure_logging
from chillflow.session import build_spark
from chillflow.settings import Settings, load_settings


@functools.cache
def settings() -> Settings:
    """Load and validate settings once per process, and configure logging from them."""
    loaded = load_settings()
    configure_logging(loaded.log_level)
    return loaded


def spark(loaded: Settings | None = None) -> SparkSession:
    """Return the process's SparkSession (built on first use)."""
    return build_spark((loaded or settings()).spark)


def database_url(loaded: Settings | None = None) -> DatabaseUrl:
    """Return ``DATABASE_URL``, or start/reuse the embedded PostgreSQL when it is unset."""
    from chillflow.storage.pg_server import ensure_local_postgres

    loaded = loaded or settings()
    return loaded.database_url or ensure_local_postgres(loaded.data_dir / "postgres")


def ledger_database_url(loaded: Settings | None = None) -> DatabaseUrl | None:
    """``DATABASE_URL``, else the embedded PostgreSQL if its cluster exists, else None."""
    from chillflow.storage.pg_server import PASSWORD_FILE, cluster_dir

    loaded = loaded or settings()
    if loaded.database_url or (cluster_dir(loaded.data_dir / "postgres") / PASSWORD_FILE).is_file():
        return database_url(loaded)
    return None
