"""The background processes the project starts (the local broker, the local clusters): their pid files,
their logs' ends, stopping them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable


def live_pid(pid_file: Path, ours: Callable[[int], bool]) -> int | None:
    """The pid in ``pid_file`` if that process is alive and ``ours`` says it is the one we started (not a
    reused pid); a stale pid file is removed."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if ours(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def log_tail(path: Path, lines: int = 20, offset: int = 0) -> str:
    """The last ``lines`` lines of a log (of what was written past ``offset``)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(nothing written)"


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
