"""Expected failures of ChillFlow, each with an actionable message.

The CLI turns a :class:`ChillflowError` into a one-line message and a non-zero exit code;
anything else is a bug and propagates with its traceback.
"""


class ChillflowError(Exception):
    """Base class of every expected ChillFlow failure."""

    exit_code = 1


class ConfigError(ChillflowError):
    """A setting, environment variable or command-line argument is invalid."""

    exit_code = 2


class SchemaError(ChillflowError):
    """A raw input file is unusable: unreadable, corrupt, empty, or of an unknown layout."""

    exit_code = 3


class DataQualityError(ChillflowError):
    """A data-quality rule with action ``fail`` or a failure-rate threshold was violated."""

    exit_code = 4


class ConservationError(ChillflowError):
    """Rows were lost or duplicated between input and outputs."""

    exit_code = 5


class DatabaseError(ChillflowError):
    """PostgreSQL is unreachable, misconfigured or refused an operation."""

    exit_code = 6


class ReconciliationError(ChillflowError):
    """Rows in PostgreSQL do not match the rows the job loaded."""

    exit_code = 7


class DependencyError(ChillflowError):
    """A runtime dependency (JVM jars, PostgreSQL binaries, a TLC file) cannot be fetched."""

    exit_code = 8


class ClusterError(ChillflowError):
    """A Spark standalone cluster did not start or lost its master or workers."""

    exit_code = 9


class BusyError(ChillflowError):
    """Another run holds the lock of the same stage and slice; retry once it has finished."""

    exit_code = 10


class NotPublishedError(ChillflowError):
    """The TLC has not published the requested file (yet); a later try may find it."""

    exit_code = 11


def error_summary(exc: BaseException) -> str:
    """Return the first meaningful line of an error's message (at most 500 characters).

    Errors raised in Spark's JVM carry the whole Java stack trace in their message, after a
    ``An error occurred while calling …`` line; the summary is the Java exception's own line.
    """
    for line in str(exc).strip().splitlines():
        line = line.strip().removeprefix(": ")  # Py4J puts ": " before the Java exception
        if line and not line.startswith(("An error occurred while calling", "Traceback")):
            return line[:500]
    return type(exc).__name__


def is_spark_error(exc: BaseException) -> bool:
    """Whether an error was raised by Spark (Py4J or PySpark) rather than by ChillFlow."""
    return type(exc).__module__.startswith(("py4j", "pyspark"))
