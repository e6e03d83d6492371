"""Time as the scheduler sees it: a protocol that tests fake, and the system clock."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    """Where the scheduler reads the time and waits."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware in UTC."""
        ...

    def wait(self, seconds: float, until: threading.Event | None = None) -> bool:
        """Wait ``seconds``, or less when ``until`` is set; return whether it was set."""
        ...


class SystemClock:
    """The real time; waits end early when their event is set."""

    def now(self) -> datetime:
        """Return the current time in UTC."""
        return datetime.now(timezone.utc)

    def wait(self, seconds: float, until: threading.Event | None = None) -> bool:
        """Block for ``seconds`` or until ``until`` is set; return whether it was set."""
        seconds = max(0.0, seconds)
        if until is None:
            time.sleep(seconds)
            return False
        return until.wait(seconds)
