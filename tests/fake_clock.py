"""A clock for the scheduler that never blocks: tests move its time by hand."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone


class FakeClock:
    """A clock that never blocks: waiting moves its time forward at once.

    Args:
        start: The initial time; must be timezone-aware.

    Attributes:
        waits: Every requested wait in seconds, in order, for tests to inspect.
    """

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def now(self) -> datetime:
        """Return the fake current time in UTC."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the time forward by ``seconds``."""
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def wait(self, seconds: float, until: threading.Event | None = None) -> bool:
        """Advance by ``seconds`` at once unless ``until`` is already set."""
        if until is not None and until.is_set():
            return True
        seconds = max(0.0, seconds)
        with self._lock:
            self.waits.append(seconds)
            self._now += timedelta(seconds=seconds)
        return until is not None and until.is_set()
