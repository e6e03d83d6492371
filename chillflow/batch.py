"""Public Python API: ``from chillflow.batch import MonthlyLoader``."""

from chillflow.api.aggregate import BatchAggregator
from chillflow.api.curate import MonthlyLoader
from chillflow.api.pipeline import MonthlyPipeline
from chillflow.api.trips import BatchTripProducer
from chillflow.scheduler.scheduler import BatchScheduler

__all__ = [
    "BatchAggregator",
    "BatchScheduler",
    "BatchTripProducer",
    "MonthlyLoader",
    "MonthlyPipeline",
]
