"""``MonthlyLoader``: the curate stage as a Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chillflow.api.resources import StageResources
from chillflow.runtime import ledger_database_url
from chillflow.stages.curate import CurateTargets, curate
from chillflow.storage.raw import find_raw_files


class MonthlyLoader(StageResources):
    """Curate raw monthly TLC files into the curated Delta tables.

    Runs are recorded in ``database_url``: ``DATABASE_URL``, else an existing embedded server.
    """

    def curate_month(
        self,
        raw_path: str | Path,
        curated_path: str | Path | None = None,
        *,
        month: str | None = None,
    ) -> dict[str, Any]:
        """Curate a raw TLC Parquet file, directory or glob of monthly files.

        ``curated_path`` (default: the configured tables) gets its quarantine and DQ-metrics
        tables beside it as ``<name>_quarantine`` and ``<name>_dq_metrics``.

        Returns:
            Statistics with input_rows, output_rows, quarantined_rows, retention_rate
            (percent), rejections (rule -> rows), duration_sec and more.
        """
        # An unusable file (missing, corrupt, empty, a second one for a slice) fails here,
        # before a JVM starts (~5 s).
        files = find_raw_files(raw_path, month)
        targets = None
        if curated_path:
            curated = Path(curated_path).resolve()
            targets = CurateTargets(
                curated=curated,
                quarantine=curated.with_name(f"{curated.name}_quarantine"),
                dq_metrics=curated.with_name(f"{curated.name}_dq_metrics"),
            )
        database_url = self._database_url or ledger_database_url(self.settings)
        return curate(self.spark, self.settings, files, targets=targets, database_url=database_url)
