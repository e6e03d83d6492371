"""Logging policy: Spark errors in one line, their JVM stack traces only at DEBUG."""

from __future__ import annotations

import logging

import pytest
from pyspark.errors import AnalysisException
from pyspark.logger import PySparkLogger

from chillflow.logs import configure_logging


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def pyspark_query_log():
    """What PySpark's SQL query-context logger emits during the test."""
    logger = PySparkLogger.getLogger("SQLQueryContextLogger")
    records = _Records()
    logger.addHandler(records)
    yield records.records
    logger.removeHandler(records)
    configure_logging("WARNING", json=True)  # the test session's setting (tests/conftest.py)


@pytest.mark.parametrize(("level", "logged"), [("INFO", False), ("DEBUG", True)])
def test_pysparks_stack_trace_log_of_an_analysis_error_only_at_debug(
    spark, pyspark_query_log, level, logged
):
    configure_logging(level, json=True)

    with pytest.raises(AnalysisException):
        spark.range(1).selectExpr("no_such_column")

    assert bool(pyspark_query_log) is logged
    if logged:
        assert pyspark_query_log[0].levelno == logging.ERROR
        assert "at org.apache.spark" in str(pyspark_query_log[0].exc_info[1])
