"""What every API class uses: settings, the SparkSession and the database, each made on demand."""

from __future__ import annotations

from functools import cached_property

from pyspark.sql import SparkSession

from chillflow import runtime
from chillflow.database_url import DatabaseUrl, parse_database_url
from chillflow.settings import Settings


class StageResources:
    """Settings, SparkSession and PostgreSQL URL of an API object, created on first use.

    By default the settings of ``conf/`` and the environment, the shared ChillFlow session, and
    ``DATABASE_URL``, else the embedded local server under the data directory.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        spark: SparkSession | None = None,
        database_url: DatabaseUrl | str | None = None,
    ):
        self._settings, self._spark = settings, spark
        if isinstance(database_url, str):
            database_url = parse_database_url(database_url)
        self._database_url = database_url

    @cached_property
    def settings(self) -> Settings:
        """The settings in use."""
        return self._settings or runtime.settings()

    @cached_property
    def spark(self) -> SparkSession:
        """The SparkSession in use."""
        return self._spark or runtime.spark(self.settings)

    @cached_property
    def database_url(self) -> DatabaseUrl:
        """The PostgreSQL URL in use (contains the password: never log it)."""
        return self._database_url or runtime.database_url(self.settings)
