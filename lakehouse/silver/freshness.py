"""How fresh Silver is, for every reader: Silver's status file, written by the Silver job, read without Spark.

The job rewrites ``data/status/silver.json`` after each batch and every few seconds in between (its
heartbeat), and once more when it stops. A reader then tells apart a Silver that is current, one that runs
but has seen no new sale, and one that has stopped (its heartbeat is old, or it said it stopped): a stopped
Silver is never shown as current.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lakehouse.platform.status import read_json, write_atomic

# The job's heartbeat period, and the age from which a heartbeat says the job is gone (a kill -9, a crash
# of the machine: nothing else could tell).
HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # PySpark's timestamps arrive naive, in this machine's local time
        moment = moment.astimezone()
    return moment.astimezone(timezone.utc).isoformat()


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class SilverStatusWriter:
    """The Silver job's side: what it is doing, written atomically to ``path``."""

    def __init__(self, path: Path, mode: str, period_s: float | None):
        self.path = path
        self._lock = threading.Lock()  # the stream's thread and the job's main thread both write
        previous = read_json(path) or {}
        # The newest sale counted survives a restart: a restart with nothing new still counts it.
        self.state: dict[str, object] = {
            "pid": os.getpid(), "host": socket.gethostname(), "mode": mode, "period_s": period_s,
            "started_at": _iso(datetime.now(timezone.utc)), "stopped_at": None, "error": None,
            "newest_sale": previous.get("newest_sale"), "last_batch_at": previous.get("last_batch_at"),
            "last_batch_id": previous.get("last_batch_id"), "last_batch_rows": None,
            "last_batch_s": None, "last_batch_steps": None,
        }

    def batch(self, batch_id: int, rows: int, newest_sale: datetime | None, seconds: float,
              steps: dict[str, float]) -> None:
        newest = _parse(_iso(newest_sale))
        known = _parse(self.state.get("newest_sale"))
        if newest is not None and (known is None or newest > known):
            self.state["newest_sale"] = _iso(newest)
        self.state.update(last_batch_at=_iso(datetime.now(timezone.utc)), last_batch_id=batch_id,
                          last_batch_rows=rows, last_batch_s=round(seconds, 3),
                          last_batch_steps={k: round(v, 3) for k, v in steps.items()}, error=None)
        self.heartbeat()

    def newest_sale(self) -> float | None:
        """Event time (Unix seconds) of the newest sale counted, across restarts; None before any."""
        moment = _parse(self.state.get("newest_sale"))
        return None if moment is None else moment.timestamp()

    def last_batch_at(self) -> float | None:
        """When the last batch was committed (Unix seconds), across restarts; None before any."""
        moment = _parse(self.state.get("last_batch_at"))
        return None if moment is None else moment.timestamp()

    def error(self, message: str | None) -> None:
        self.state["error"] = message
        self.heartbeat()

    def heartbeat(self) -> None:
        with self._lock:
            self.state["heartbeat_at"] = _iso(datetime.now(timezone.utc))
            write_atomic(self.path, _dumps(self.state))

    def stopped(self) -> None:
        self.state["stopped_at"] = _iso(datetime.now(timezone.utc))
        self.heartbeat()


def _dumps(state: dict[str, object]) -> str:
    return json.dumps(state, indent=1) + "\n"


@dataclass(frozen=True)
class SilverFreshness:
    """What a reader says about Silver's freshness."""

    state: str  # "running", "stopped" or "unknown" (no status file: Silver never ran here)
    newest_sale: datetime | None  # event time of the newest sale Silver counts
    last_batch_at: datetime | None  # when Silver last committed a batch
    heartbeat_at: datetime | None
    mode: str | None
    error: str | None

    @property
    def current(self) -> bool:
        return self.state == "running"

    def age_s(self, moment: datetime | None, now: datetime) -> float | None:
        return None if moment is None else max(0.0, (now - moment).total_seconds())

    def summary(self, now: datetime) -> str:
        """One line: how old Silver is, and whether it still runs."""
        sale = _ago(self.age_s(self.newest_sale, now))
        batch = _ago(self.age_s(self.last_batch_at, now))
        if self.state == "unknown":
            return "Silver freshness unknown: no status from the Silver job (streaming_silver.py) yet"
        facts = f"newest sale counted {sale}, last batch committed {batch}"
        if self.state == "stopped":
            seen = _ago(self.age_s(self.heartbeat_at, now))
            return f"SILVER IS NOT RUNNING (last seen {seen}): figures are not current; {facts}"
        line = f"Silver {self.mode or 'running'}: {facts}"
        return f"{line}; last batch failed: {self.error}" if self.error else line


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def read_freshness(path: Path, now: datetime | None = None) -> SilverFreshness:
    """Silver's freshness from its status file at ``path`` (``Paths.silver_status``)."""
    now = now or datetime.now(timezone.utc)
    status = read_json(path)
    if not isinstance(status, dict):
        return SilverFreshness("unknown", None, None, None, None, None)
    heartbeat = _parse(status.get("heartbeat_at"))
    gone = heartbeat is None or (now - heartbeat).total_seconds() > STALE_AFTER_S
    mode = status.get("mode") if isinstance(status.get("mode"), str) else None
    stopped = bool(status.get("stopped_at")) or gone
    error = status.get("error") if isinstance(status.get("error"), str) else None
    return SilverFreshness("stopped" if stopped else "running", _parse(status.get("newest_sale")),
                           _parse(status.get("last_batch_at")), heartbeat, mode, error)
