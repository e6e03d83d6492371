"""Expected failures, each with an actionable message and the CLI's exit code."""


class ChillflowError(Exception):
    """Base class of every expected ChillFlow failure."""

    exit_code = 1

    def __init_subclass__(cls, exit_code: int | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.exit_code = exit_code or cls.exit_code


class ConfigError(ChillflowError, exit_code=2):
    """A setting, environment variable or command-line argument is invalid."""


class SchemaError(ChillflowError, exit_code=3):
    """A raw input file is unusable: unreadable, corrupt, empty, or of an unknown layout."""


class DataQualityError(ChillflowError, exit_code=4):
    """A data-quality rule with action ``fail`` or a failure-rate threshold was violated."""


class ConservationError(ChillflowError, exit_code=5):
    """Rows were lost or duplicated between input and outputs."""


class DatabaseError(ChillflowError, exit_code=6):
    """PostgreSQL is unreachable, misconfigured or refused an operation."""


class ReconciliationError(ChillflowError, exit_code=7):
    """Rows in PostgreSQL do not match the rows the job loaded."""


class DependencyError(ChillflowError, exit_code=8):
    """A runtime dependency (JVM jars, PostgreSQL binaries, a TLC file) cannot be fetched."""


class ClusterError(ChillflowError, exit_code=9):
    """A Spark standalone cluster did not start or lost its master or workers."""


class BusyError(ChillflowError, exit_code=10):
    """Another run holds the lock of the same stage and slice; retry once it has finished."""


class NotPublishedError(ChillflowError, exit_code=11):
    """The TLC has not published the requested file (yet); a later try may find it."""


def error_summary(exc: BaseException) -> str:
    """Return the first meaningful line of an error's message (at most 500 characters).

    A Spark error's message is a Java stack trace; the summary is the Java exception's own line.
    """
    for line in str(exc).strip().splitlines():
        line = line.strip().removeprefix(": ")  # Py4J puts ": " before the Java exception
        if line and not line.startswith(("An error occurred while calling", "Traceback")):
            return line[:500]
    return type(exc).__name__


def is_spark_error(exc: BaseException) -> bool:
    """Whether an error was raised by Spark (Py4J or PySpark) rather than by ChillFlow."""
    return type(exc).__module__.startswith(("py4j", "pyspark"))
