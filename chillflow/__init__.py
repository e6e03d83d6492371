"""ChillFlow Batch: PySpark + Delta Lake batch jobs for NYC TLC trip records."""

__version__ = "0.1.0"
