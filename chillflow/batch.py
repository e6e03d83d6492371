"""Public Python API: ``from chillflow.batch import MonthlyLoader``."""

from typing import TYPE_CHECKING, Any

from chillflow.api.aggregate import BatchAggregator
from chillflow.api.curate import MonthlyLoader
from chillflow.api.pipeline import MonthlyPipeline
from chillflow.api.trips import BatchTripProducer

if TYPE_CHECKING:
    from chillflow.scheduler.scheduler import BatchScheduler

__all__ = [
    "BatchAggregator",
    "BatchScheduler",
    "BatchTripProducer",
    "MonthlyLoader",
    "MonthlyPipeline",
]


def __getattr__(name: str) -> Any:
    # The scheduler (and croniter) load only when asked for, not for every batch job.
    if name == "BatchScheduler":
        from chillflow.scheduler.scheduler import BatchScheduler

        return BatchScheduler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
