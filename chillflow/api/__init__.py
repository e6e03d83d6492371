"""Public API classes; each builds what it is not given (settings, SparkSession) on first use."""
