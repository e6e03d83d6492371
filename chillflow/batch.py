"""Public Python API: ``from chillflow.batch import MonthlyLoader``."""

from chillflow.api.curate import MonthlyLoader

__all__ = ["MonthlyLoader"]
