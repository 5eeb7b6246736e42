"""Small live status files (stream health, the Silver dashboard, the producer's summary): written
atomically by the jobs, read by the demo's terminal view without Spark."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def write_atomic(path: Path, text: str) -> bool:
    """Replace ``path`` with ``text`` in one step (a reader never sees half a file); False, with a warning,
    if the disk refuses: a status file must never stop a job."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return True
    except OSError as e:
        log.warning("Could not write the status file %s: %s", path, e)
        return False


def read_json(path: Path) -> dict | None:
    """A status file's content, or None while it does not exist (or is not valid JSON yet)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
