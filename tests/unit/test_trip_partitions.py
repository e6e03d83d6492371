"""Names of stg.complete_trip's partitions and of a load's staged slices."""

from __future__ import annotations

from datetime import datetime

import pytest

from chillflow.errors import SchemaError
from chillflow.storage.trip_partitions import partition_table
from chillflow.storage.trips_pg import staged_slice_table, staging_table


def test_partitions_are_named_after_service_and_month():
    assert partition_table("green") == ("stg", "complete_trip_green")
    assert partition_table("yellow", "2025-01") == ("stg", "complete_trip_yellow_2025_01")


@pytest.mark.parametrize(
    ("service", "month", "message"),
    [
        ("blue", "2025-01", "service 'blue': expected one of yellow, green"),
        ("yellow", "2025-13", "pickup month '2025-13': expected YYYY-MM"),
        ("yellow", "2025-01'; DROP TABLE x; --", "expected YYYY-MM"),
    ],
)
def test_a_slice_that_cannot_name_a_partition_is_refused(service, month, message):
    with pytest.raises(SchemaError, match=message):
        partition_table(service, month)


def test_staged_slices_fit_postgresql_names_and_are_never_taken_for_staging_tables():
    staging = staging_table("r" * 40, datetime(2025, 1, 2, 3, 4, 5))
    staged = staged_slice_table(staging, "yellow")

    assert len(staging[1]) <= 63 and len(staged[1]) <= 63
    assert staged[0] == "stg" and not staged[1].startswith("load_")
    assert staged != staged_slice_table(staging_table("s" * 40, datetime(2025, 1, 2)), "yellow")
