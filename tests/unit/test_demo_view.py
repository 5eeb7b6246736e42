"""`make demo`'s live view, without running the demo: the stream's health line, and Silver's freshness above its
figures (said plainly when Silver stopped)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from lakehouse.ops.demo import Part, format_health, render
from lakehouse.silver.freshness import SilverStatusWriter, read_freshness


def test_health_line() -> None:
    status = {"bronze_rows_total": 1234, "correction_rows_total": 40, "quarantined_rows_total": 2,
              "duplicate_rows_total": 1, "kafka_lag": 0, "last_batch": {"latency_p50_ms": 1500}}
    assert format_health(status, 3.04) == (
        "Stream: 3.0 events/s in · 1,234 sales and 40 returns or cancellations into Bronze this run · "
        "last batch latency 1.5 s · quarantined 2 · duplicates 1 · Kafka lag 0")
    assert format_health(None, None).startswith("Stream: starting")


def status_file(path: Path, now: dt.datetime, heartbeat_s: float, stopped: bool = False, error: str | None = None,
                newest_sale_s: float = 0.0, last_batch_s: float = 0.0) -> Path:
    """Silver's status file as its job writes it, its moments so many seconds before ``now``."""
    writer = SilverStatusWriter(path, "continuous", 2.0)
    moments = {"heartbeat_at": heartbeat_s, "newest_sale": newest_sale_s, "last_batch_at": last_batch_s}
    writer.state.update({k: (now - dt.timedelta(seconds=v)).isoformat() for k, v in moments.items()})
    writer.state.update(stopped_at=writer.state["heartbeat_at"] if stopped else None, error=error)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(writer.state), encoding="utf-8")
    return path


def test_the_view_says_how_old_silver_is_and_plainly_when_it_stopped(tmp_path) -> None:
    now = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.timezone.utc)
    parts = [Part(name, ["true"], tmp_path / f"{name}.log") for name in ("bronze", "producer", "silver")]
    dashboard = "=== Sales lakehouse — Silver at 2026-03-02 11:55:00 ===\nSales 6   Revenue 1,080.10 €\n"
    head = ["Sales lakehouse — live demo, running 0:00:00 (Ctrl-C stops everything cleanly)",
            "Parts: broker local · bronze stopped · producer stopped · silver stopped",
            "Stream: ...",
            f"Logs: {tmp_path}/{{bronze,producer,silver}}.log",
            ""]
    # Stopped five minutes ago: said above the last figures it left, which are not current.
    stopped = read_freshness(status_file(tmp_path / "silver.json", now, 300, True, None, 330, 300), now)
    screen = render(parts, "local", "Stream: ...", stopped.summary(now), dashboard, tmp_path, time.monotonic(), None)
    assert screen.split("\n") == [
        *head,
        "SILVER IS NOT RUNNING (last seen 5 min ago): figures are not current; newest sale counted 6 min ago, "
        "last batch committed 5 min ago",
        "=== Sales lakehouse — Silver at 2026-03-02 11:55:00 ===", "Sales 6   Revenue 1,080.10 €"]
    # Running; its last batch failed with a message that would clear the screen: shown, not obeyed.
    running = read_freshness(status_file(tmp_path / "silver.json", now, 2, False, "boom\x1b[2J", 4, 3), now)
    screen = render(parts, "local", "Stream: ...", running.summary(now), None, tmp_path, time.monotonic(), None)
    assert screen.split("\n") == [
        *head,
        "Silver continuous: newest sale counted 4 s ago, last batch committed 3 s ago; last batch failed: boom\\x1b[2J",
        "Silver: waiting for its first batch (Spark starts, then a batch every few seconds)..."]
