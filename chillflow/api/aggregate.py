"""``BatchAggregator``: the aggregate stage as a Python API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from chillflow.api.resources import StageResources
from chillflow.hour_window import day_end, utc_date, yesterday
from chillflow.sections import check_source
from chillflow.stages.aggregate import aggregate_backfill, aggregate_full_refresh, aggregate_until
from chillflow.storage.kpi_mart import mart_status
from chillflow.storage.kpi_store import summarize_hourly_kpis
from chillflow.storage.ledger import AGGREGATE_JOB, BACKFILL_JOB


class BatchAggregator(StageResources):
    """Keep the hourly pickup-zone KPIs (Delta table and PostgreSQL mart) current.

    ``source`` is ``postgres`` (stg.complete_trip) or ``curated`` (the curated Delta table);
    ``[aggregate] default_source`` when None.
    """

    def aggregate_incremental(
        self,
        target: datetime | date | None = None,
        lookback_hours: int | None = None,
        *,
        source: str | None = None,
    ) -> dict[str, Any]:
        """Refresh the hours ``[day after target - lookback_hours, day after target)``.

        ``target`` is a UTC day (a datetime's UTC date); by default yesterday on the data's wall
        clock (``[curate] data_time_zone``), as ``hour_ts`` holds it, so never a day still
        running there. The lookback counts back from its end: 24 (configurable) covers that
        day, 48 the day before it too.

        Returns:
            Statistics: hours_processed, zones_affected, rows_inserted, rows_updated,
            rows_deleted, mart_rows_copied, duration_sec, run_id and more.
        """
        day = yesterday(self.settings.curate.data_time_zone) if target is None else target
        return self.aggregate_until(day_end(day), lookback_hours, source=source)

    def aggregate_until(
        self, end: datetime, lookback_hours: int | None = None, *, source: str | None = None
    ) -> dict[str, Any]:
        """Refresh ``[end - lookback_hours, end)``; ``end`` is naive, as ``hour_ts`` holds it."""
        source = self._source(source)
        return aggregate_until(
            self.spark, self.settings, self.database_url, end, lookback_hours, source=source
        )

    def aggregate_full_refresh(self, *, source: str | None = None) -> dict[str, Any]:
        """Recompute every KPI; replace the Delta table and the mart, each atomically."""
        source = self._source(source)
        return aggregate_full_refresh(self.spark, self.settings, self.database_url, source=source)

    def aggregate_backfill(
        self, start: date, end: date, *, source: str | None = None, restart: bool = False
    ) -> dict[str, Any]:
        """Refresh the days ``start..end`` (inclusive) in calendar-month chunks, resumably.

        ``restart`` ignores the chunks an unfinished earlier backfill of this range completed.
        """
        source, days = self._source(source), (utc_date(start), utc_date(end))
        return aggregate_backfill(
            self.spark, self.settings, self.database_url, *days, source=source, restart=restart
        )

    def get_kpi_count(self) -> int:
        """Rows in the KPI Delta table (0 when it does not exist yet)."""
        return summarize_hourly_kpis(self.spark, self.settings.tables.kpis)["rows"]

    def get_date_range(self) -> tuple[datetime | None, datetime | None]:
        """First and last hour_ts in the KPI table, as naive UTC; (None, None) when empty."""
        summary = summarize_hourly_kpis(self.spark, self.settings.tables.kpis)
        first, last = summary["first_hour"], summary["last_hour"]
        if first is None:
            return None, None
        return datetime.fromisoformat(first), datetime.fromisoformat(last)

    def status(self) -> dict[str, Any]:
        """Rows, hour range and zones of the KPI table, mart rows and the last run's outcome."""
        summary = summarize_hourly_kpis(self.spark, self.settings.tables.kpis)
        version = summary.pop("version")
        return {
            "kpi_table": str(self.settings.tables.kpis),
            **summary,
            "table_version": version,
            **mart_status(self.database_url, [AGGREGATE_JOB, BACKFILL_JOB]),
        }

    def _source(self, source: str | None) -> str:
        return check_source(source or self.settings.aggregate.default_source)
