"""The trips load's PostgreSQL names and columns."""

from __future__ import annotations

from datetime import datetime

import pytest

from chillflow.errors import ConfigError
from chillflow.storage.trips_pg import COMPARED_COLUMNS, LOAD_COLUMNS, staging_table


def test_load_columns_follow_the_ddl_and_compare_all_but_key_and_lineage():
    assert LOAD_COLUMNS[:3] == ("trip_key", "vehicle_id_h", "service")
    assert LOAD_COLUMNS[-1] == "curated_run_id"
    assert set(LOAD_COLUMNS) - set(COMPARED_COLUMNS) == {"trip_key", "curated_run_id"}


def test_staging_table_names_are_safe_and_dated():
    assert staging_table("abc123", datetime(2025, 1, 2, 3, 4, 5)) == (
        "stg",
        "load_20250102t030405_abc123",
    )
    with pytest.raises(ConfigError, match="run id 'x; DROP TABLE'"):
        staging_table("x; DROP TABLE", datetime(2025, 1, 1))
