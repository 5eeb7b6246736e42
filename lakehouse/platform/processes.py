"""Stopping the background processes the project starts (the local broker, the local Spark cluster)."""

from __future__ import annotations

import os
import signal
import time
from typing import Callable


def terminate(pid: int, running: Callable[[], bool], timeout_s: float, group: bool = False) -> bool:
    """SIGTERM (to the process, or to its whole process group), then SIGKILL if ``running()`` still says
    so after ``timeout_s``; True if it stopped in time."""
    send = os.killpg if group else os.kill
    try:
        send(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not running():
            return True
        time.sleep(0.2)
    try:
        send(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False
