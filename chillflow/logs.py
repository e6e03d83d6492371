"""structlog configuration: console lines on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

_SECRET_KEYS = ("password", "salt", "secret", "database_url", "dsn", "token")
# PySpark logs every AnalysisException, even a caught one, with its JVM stack trace at ERROR;
# ChillFlow reports Spark errors in one line and keeps the trace for LOG_LEVEL=DEBUG.
_PYSPARK_QUERY_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


def _drop_secrets(_logger: object, _name: str, event: dict) -> dict:
    """Mask any field whose name suggests a secret, as a last line of defence."""
    for key in list(event):
        if any(part in key.lower() for part in _SECRET_KEYS):
            event[key] = "***"
    return event


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog: JSON lines, or console lines on a terminal (``json`` forces either)."""
    from pyspark.logger import PySparkLogger  # its own class; a plain Logger would break it

    use_json = not sys.stderr.isatty() if json is None else json
    renderer = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    for name in _PYSPARK_QUERY_LOGGERS:
        logger = PySparkLogger.getLogger(name)
        logger.setLevel(logging.WARNING if level == "DEBUG" else logging.CRITICAL)


def new_run_id() -> str:
    """Return a fresh, sortable-enough run id (12 hex characters)."""
    return uuid.uuid4().hex[:12]


@contextmanager
def bound_run(job: str, run_id: str, **params: object) -> Iterator[structlog.BoundLogger]:
    """Bind ``job``, ``run_id`` and run parameters (``month``) into every log line in the block."""
    with structlog.contextvars.bound_contextvars(job=job, run_id=run_id, **params):
        yield structlog.get_logger("chillflow")
