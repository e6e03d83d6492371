from datetime import datetime, timezone

import pytest
from chispa import assert_df_equality

from chillflow.schemas import local_frame, struct

DDL = "name STRING, count BIGINT, rate DOUBLE, at TIMESTAMP"


def test_rows_keep_values_and_declared_types(spark):
    at = datetime(2025, 1, 31, 23, 30, tzinfo=timezone.utc)
    rows = [("a", 3, 0.5, at), ("b", None, None, None)]

    frame = local_frame(spark, rows, DDL)

    expected = spark.createDataFrame(rows, struct(DDL))
    assert_df_equality(frame, expected, ignore_nullable=True)


def test_no_rows_is_an_empty_frame_with_the_schema(spark):
    frame = local_frame(spark, [], DDL)

    assert frame.count() == 0
    assert [(f.name, f.dataType) for f in frame.schema] == [
        (f.name, f.dataType) for f in struct(DDL)
    ]


def test_a_row_of_the_wrong_width_is_refused(spark):
    with pytest.raises(ValueError):
        local_frame(spark, [("a", 1)], DDL)
