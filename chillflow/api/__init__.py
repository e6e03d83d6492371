"""Public API classes; each builds what it is not given (settings, SparkSession) on first use.

``expected_failure`` says which ChillflowError an exception raised under them stands for.
"""

from __future__ import annotations

from chillflow.errors import ChillflowError, DatabaseError, error_summary, is_spark_error


def expected_failure(exc: Exception) -> ChillflowError | None:
    """Return the ChillflowError ``exc`` stands for; None for an unexpected error.

    A PostgreSQL failure that no storage function reported becomes a DatabaseError, any other
    error raised inside Spark's JVM a ChillflowError with the error's first line.
    """
    if isinstance(exc, ChillflowError):
        return exc
    from chillflow.storage.postgres import failure_reason

    reason = failure_reason(exc)
    if reason is not None:
        return DatabaseError(f"PostgreSQL failed: {reason}")
    if is_spark_error(exc):
        return ChillflowError(f"Spark failed: {error_summary(exc)}")
    return None
