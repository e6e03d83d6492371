from datetime import date, datetime, timedelta, timezone

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from chillflow.schemas import local_frame, struct

DDL = "name STRING, count BIGINT, rate DOUBLE, at TIMESTAMP"
NEW_YORK = timezone(timedelta(hours=-5))


def test_rows_keep_values_and_declared_types(spark):
    at = datetime(2025, 1, 31, 23, 30, tzinfo=timezone.utc)
    rows = [("a", 3, 0.5, at), ("b", None, None, None)]

    frame = local_frame(spark, rows, DDL)

    expected = spark.createDataFrame(rows, struct(DDL))
    assert_df_equality(frame, expected, ignore_nullable=True)


def test_quotes_extreme_numbers_and_zoned_microsecond_times_keep_their_values(spark):
    ddl = f"{DDL}, day DATE, wall TIMESTAMP_NTZ"
    rows = [
        ('q"\\\n\u00e9', 2**62, float("nan"), datetime(2025, 3, 9, 7, 0, 0, 1, NEW_YORK),
         date(2025, 1, 2), datetime(2025, 1, 3, 4, 5, 6, 7)),
        ("i", -1, float("-inf"), datetime(2025, 1, 31, 23, 59, 59, 999999, timezone.utc),
         None, None),
    ]  # fmt: skip

    frame = local_frame(spark, rows, ddl)

    expected = spark.createDataFrame(rows, struct(ddl))
    assert_df_equality(frame, expected, ignore_nullable=True, allow_nan_equality=True)
    utc = frame.select(F.date_format("at", "yyyy-MM-dd HH:mm:ss.SSSSSS").alias("at")).collect()
    assert [r["at"] for r in utc] == ["2025-03-09 12:00:00.000001", "2025-01-31 23:59:59.999999"]


def test_no_rows_is_an_empty_frame_with_the_schema(spark):
    frame = local_frame(spark, [], DDL)

    assert frame.count() == 0
    assert [(f.name, f.dataType) for f in frame.schema] == [
        (f.name, f.dataType) for f in struct(DDL)
    ]


def test_a_row_of_the_wrong_width_is_refused(spark):
    with pytest.raises(ValueError):
        local_frame(spark, [("a", 1)], DDL)
