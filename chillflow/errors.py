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
    """An input file does not have a layout ChillFlow can normalise."""

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
    """A runtime dependency (JVM jars, PostgreSQL binaries) cannot be found or fetched."""

    exit_code = 8


class ClusterError(ChillflowError):
    """A Spark standalone cluster did not start or lost its master or workers."""

    exit_code = 9
