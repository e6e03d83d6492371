"""``BatchTripProducer``: the process-trips stage as a Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chillflow.api.resources import StageResources
from chillflow.settings import parse_month, parse_service
from chillflow.stages.trips import prepare_database, process_trips


class BatchTripProducer(StageResources):
    """Load curated trips into PostgreSQL's ``stg.complete_trip``, one month per call."""

    def process_month(
        self, path: str | Path | None = None, month: str | None = None, service: str | None = None
    ) -> dict[str, Any]:
        """Load one month of curated trips; a rerun converges to the same rows.

        ``path`` is a curated Delta table or Parquet in the curated schema (by default the
        configured table); ``month`` may be left out when it holds one month; ``service``
        (yellow or green) defaults to every service of the month.

        Returns:
            Statistics with rows_read, inserted, updated, unchanged, deleted, skipped,
            duration_sec, run_id and more.
        """
        if month is not None:
            parse_month(month)
        if service is not None:
            parse_service(service)
        database_url = self.database_url
        # Before the SparkSession: a bad DATABASE_URL fails in a second, not after the JVM.
        prepared = prepare_database(database_url)
        return process_trips(
            self.spark,
            self.settings,
            database_url,
            path,
            month=month,
            service=service,
            prepared=prepared,
        )
