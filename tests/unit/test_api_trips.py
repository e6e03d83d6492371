"""BatchTripProducer checks its run parameters before it touches Spark or the database."""

from __future__ import annotations

import pytest

from chillflow.batch import BatchTripProducer
from chillflow.errors import ConfigError

# Nothing listens on port 1: reaching the database would fail with a DatabaseError instead.
UNREACHABLE = "postgresql://u:p@127.0.0.1:1/none"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"month": "2025-1"}, "invalid month '2025-1': expected YYYY-MM"),
        ({"month": "2025-01", "service": "blue"}, "service 'blue': expected one of yellow, green"),
    ],
)
def test_process_month_refuses_a_bad_month_or_service_first(options, message):
    producer = BatchTripProducer(database_url=UNREACHABLE)

    with pytest.raises(ConfigError, match=message):
        producer.process_month(**options)
