"""Named points where a run with ``CHILLFLOW_FAILPOINT=<name>`` dies at once, JVM included."""

from __future__ import annotations

import os
import signal

ENV = "CHILLFLOW_FAILPOINT"


def failpoint(name: str) -> None:
    """Kill this process's group with SIGKILL if ``CHILLFLOW_FAILPOINT`` names this point."""
    if os.environ.get(ENV) == name:
        os.killpg(os.getpgrp(), signal.SIGKILL)
