"""Named points where the fault-injection tests kill this process group with SIGKILL.

A run started with ``CHILLFLOW_FAILPOINT=<name>`` dies, JVM included, the moment it reaches
that point, with no cleanup of any kind: the tests then check that a rerun converges to the
state of a clean run. Unset, a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "CHILLFLOW_FAILPOINT"


def failpoint(name: str) -> None:
    """Kill this process's group with SIGKILL if ``CHILLFLOW_FAILPOINT`` names this point."""
    if os.environ.get(ENV) == name:
        os.killpg(os.getpgrp(), signal.SIGKILL)
