"""Silver's freshness (lakehouse.silver.freshness): what its status file says to every reader. A fresh
heartbeat is a running Silver; an old one, or a job that said it stopped, is a stopped Silver; no status
(or one that is not JSON) is unknown. The newest sale counted survives a restart and never goes back.
Pure: no Spark, a fixed ``now``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from lakehouse.silver.freshness import STALE_AFTER_S, SilverFreshness, SilverStatusWriter, read_freshness

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc)
UNKNOWN_LINE = "Silver freshness unknown: no status from the Silver job (streaming_silver.py) yet"


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def status_file(path: Path, writer: SilverStatusWriter | None = None, **moments: datetime | None) -> Path:
    """A status file as the Silver job writes it (its writer's fields), with these fields set to fixed moments."""
    writer = writer or SilverStatusWriter(path, "continuous", 2.0)
    writer.state.update({k: None if v is None else v.isoformat() for k, v in moments.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(writer.state), encoding="utf-8")
    return path


def test_a_fresh_heartbeat_is_a_running_silver(tmp_path) -> None:
    path = status_file(tmp_path / "status" / "silver.json", heartbeat_at=ago(4), newest_sale=ago(3),
                       last_batch_at=ago(2))
    freshness = read_freshness(path, NOW)
    assert freshness == SilverFreshness("running", ago(3), ago(2), ago(4), "continuous", None)
    assert freshness.current
    assert freshness.age_s(freshness.newest_sale, NOW) == 3.0
    assert freshness.summary(NOW) == "Silver continuous: newest sale counted 3 s ago, last batch committed 2 s ago"


def test_a_heartbeat_older_than_the_stale_limit_is_a_stopped_silver(tmp_path) -> None:
    path = tmp_path / "silver.json"
    status_file(path, heartbeat_at=ago(STALE_AFTER_S), newest_sale=ago(40), last_batch_at=ago(35))
    assert read_freshness(path, NOW).state == "running"  # just at the limit: still running
    status_file(path, heartbeat_at=ago(STALE_AFTER_S + 1), newest_sale=ago(40), last_batch_at=ago(35))
    at_limit = read_freshness(path, NOW)
    assert at_limit == SilverFreshness("stopped", ago(40), ago(35), ago(STALE_AFTER_S + 1), "continuous", None)
    assert not at_limit.current
    # A kill -9 five minutes ago: nothing but the old heartbeat tells.
    status_file(path, heartbeat_at=ago(300), newest_sale=ago(360), last_batch_at=ago(302))
    freshness = read_freshness(path, NOW)
    assert freshness.state == "stopped" and not freshness.current
    assert freshness.summary(NOW) == ("SILVER IS NOT RUNNING (last seen 5 min ago): figures are not current; "
                                      "newest sale counted 6 min ago, last batch committed 5 min ago")


def test_a_job_that_said_it_stopped_is_a_stopped_silver_even_with_a_fresh_heartbeat(tmp_path) -> None:
    path = status_file(tmp_path / "silver.json", heartbeat_at=ago(1), stopped_at=ago(1), newest_sale=ago(8),
                       last_batch_at=ago(6))
    freshness = read_freshness(path, NOW)
    assert freshness == SilverFreshness("stopped", ago(8), ago(6), ago(1), "continuous", None)
    assert freshness.summary(NOW) == ("SILVER IS NOT RUNNING (last seen 1 s ago): figures are not current; "
                                      "newest sale counted 8 s ago, last batch committed 6 s ago")


def test_the_writer_running_then_stopped(tmp_path) -> None:
    path = tmp_path / "status" / "silver.json"
    writer = SilverStatusWriter(path, "interval", 30.0)
    writer.heartbeat()
    running = read_freshness(path)
    assert (running.state, running.mode, running.newest_sale, running.last_batch_at) == \
        ("running", "interval", None, None)
    assert running.summary(running.heartbeat_at) == \
        "Silver interval: newest sale counted never, last batch committed never"
    writer.stopped()
    assert read_freshness(path).state == "stopped"
    assert json.loads(path.read_text(encoding="utf-8"))["stopped_at"] is not None


@pytest.mark.parametrize("content", [None, "", "{not json", "[1, 2]", '"running"'])
def test_no_status_or_one_that_is_not_a_json_object_is_unknown(tmp_path, content: str | None) -> None:
    path = tmp_path / "silver.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    freshness = read_freshness(path, NOW)
    assert freshness == SilverFreshness("unknown", None, None, None, None, None)
    assert not freshness.current
    assert freshness.summary(NOW) == UNKNOWN_LINE


def test_a_status_without_heartbeat_or_with_bad_values_is_stopped(tmp_path) -> None:
    path = tmp_path / "silver.json"
    path.write_text(json.dumps({"heartbeat_at": "yesterday", "newest_sale": 12, "mode": 3, "error": ["x"]}),
                    encoding="utf-8")
    freshness = read_freshness(path, NOW)
    assert freshness == SilverFreshness("stopped", None, None, None, None, None)
    assert freshness.summary(NOW) == ("SILVER IS NOT RUNNING (last seen never): figures are not current; "
                                      "newest sale counted never, last batch committed never")


def test_the_newest_sale_and_last_batch_survive_a_restart(tmp_path) -> None:
    path = tmp_path / "silver.json"
    first = SilverStatusWriter(path, "continuous", 2.0)
    first.batch(7, 10, ago(3), 0.5, {"merge": 0.4})
    first.stopped()
    before = json.loads(path.read_text(encoding="utf-8"))
    second = SilverStatusWriter(path, "interval", 30.0)
    second.heartbeat()
    after = json.loads(path.read_text(encoding="utf-8"))
    assert (after["newest_sale"], after["last_batch_at"], after["last_batch_id"]) == \
        (ago(3).isoformat(), before["last_batch_at"], 7)
    # What the new run has not done yet is not carried over.
    assert (after["mode"], after["period_s"], after["stopped_at"], after["last_batch_rows"], after["error"]) == \
        ("interval", 30.0, None, None, None)
    freshness = read_freshness(path)
    assert (freshness.state, freshness.newest_sale) == ("running", ago(3))


def test_a_later_batch_with_older_sales_keeps_the_newest_sale(tmp_path) -> None:
    path = tmp_path / "silver.json"
    writer = SilverStatusWriter(path, "continuous", 2.0)
    writer.batch(0, 3, ago(10), 0.2, {"merge": 0.1})
    writer.batch(1, 2, ago(600), 0.3, {"merge": 0.2})  # late sales
    writer.batch(2, 0, None, 0.1, {})  # a batch that counted no sale
    status = json.loads(path.read_text(encoding="utf-8"))
    assert (status["newest_sale"], status["last_batch_id"], status["last_batch_rows"], status["last_batch_steps"]) \
        == (ago(10).isoformat(), 2, 0, {})
    writer.batch(3, 1, ago(5), 0.123456, {"merge": 0.0004})
    status = json.loads(path.read_text(encoding="utf-8"))
    assert (status["newest_sale"], status["last_batch_s"], status["last_batch_steps"]) == \
        (ago(5).isoformat(), 0.123, {"merge": 0.0})


def test_a_naive_sale_time_is_this_machines_local_time(tmp_path) -> None:
    path = tmp_path / "silver.json"
    naive_local = ago(3).astimezone().replace(tzinfo=None)  # as PySpark hands timestamps over
    SilverStatusWriter(path, "continuous", 2.0).batch(0, 1, naive_local, 0.1, {})
    assert json.loads(path.read_text(encoding="utf-8"))["newest_sale"] == ago(3).isoformat()


def test_a_failed_batch_is_said_until_the_next_one_commits(tmp_path) -> None:
    path = tmp_path / "silver.json"
    writer = SilverStatusWriter(path, "continuous", 2.0)
    writer.error("Bronze table not found")
    assert json.loads(path.read_text(encoding="utf-8"))["error"] == "Bronze table not found"
    status_file(path, writer, heartbeat_at=ago(1), newest_sale=ago(20), last_batch_at=ago(15))
    assert read_freshness(path, NOW).summary(NOW) == (
        "Silver continuous: newest sale counted 20 s ago, last batch committed 15 s ago; "
        "last batch failed: Bronze table not found")
    writer.batch(0, 1, ago(2), 0.1, {})
    assert read_freshness(path).error is None


@pytest.mark.parametrize("seconds, shown", [
    (-5, "0 s ago"),  # a sale time ahead of this clock
    (0, "0 s ago"), (119, "119 s ago"), (120, "2 min ago"), (7199, "120 min ago"), (7200, "2.0 h ago"),
    (172799, "48.0 h ago"), (172800, "2 days ago"),
])
def test_ages_in_the_unit_that_reads_best(seconds: float, shown: str) -> None:
    freshness = SilverFreshness("running", ago(seconds), None, NOW, "continuous", None)
    assert freshness.summary(NOW) == f"Silver continuous: newest sale counted {shown}, last batch committed never"
