"""The long-running Silver job (streaming_silver.py --continuous) as users run it: kill -9 in the middle of a
batch and a restart leave the tables of an uninterrupted run; SIGTERM stops it after its batch; its
Prometheus endpoint counts what it merged."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.delta import checkpoint_entries
from lakehouse.platform.paths import Paths
from lakehouse.silver.freshness import read_freshness
from lakehouse.silver.job import read_rows
from tests.conftest import free_port, make_config, write_config
from tests.test_silver_incremental import append_bronze, assert_silver_equals_full_recompute, random_sales


def scrape(port: int) -> dict[str, float]:
    """The unlabelled samples of a job's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if not s.labels}


def start_silver(config: Path, log_file: Path) -> subprocess.Popen:
    # A session of its own, as make demo starts it: a kill -9 of the group takes its JVM too.
    return subprocess.Popen([sys.executable, "streaming_silver.py", "--continuous", "--no-dashboard", "--config",
                             str(config)], cwd=PROJECT_DIR, stdout=open(log_file, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def counted(paths: Paths) -> int:
    """Sales Silver counts (its countries' nb_ventes), read as the web page reads it."""
    try:
        return sum(row["nb_ventes"] for row in read_rows(paths.silver("pays")))
    except Exception:  # noqa: BLE001 (not created yet, or being replaced: asked again)
        return -1


def wait_for(condition, what: str, proc: subprocess.Popen, log_file: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"Silver stopped while waiting for {what}:\n{log_file.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n{log_file.read_text()[-3000:]}"
        time.sleep(0.2)


def test_kill_9_in_a_batch_then_a_restart_equals_an_uninterrupted_run_and_sigterm_ends_after_the_batch(
        spark, tmp_path) -> None:
    cfg = make_config(tmp_path / "data")
    paths = Paths.from_config(cfg)
    metrics_port = free_port()
    config = write_config(tmp_path / "config.ini", cfg, analytics={"silver_trigger": "0.5 s"},
                          monitoring={"metrics_port_silver": metrics_port})
    log_file = tmp_path / "silver.log"
    rng = random.Random(5)
    # A first batch large enough for Spark's path (seconds long): the kill lands inside it.
    append_bronze(spark, paths, random_sales(rng, 0, 60_000))
    silver = start_silver(config, log_file)
    try:
        planned = lambda: checkpoint_entries(paths.silver_checkpoint, "offsets") >= 1  # noqa: E731
        wait_for(planned, "first batch planned", silver, log_file)
        assert checkpoint_entries(paths.silver_checkpoint, "commits") == 0  # in the middle of the batch
        os.killpg(silver.pid, signal.SIGKILL)
        silver.wait(30)
        append_bronze(spark, paths, random_sales(rng, 60_000, 25))

        silver = start_silver(config, log_file)  # the lock the killed job held is free again
        wait_for(lambda: counted(paths) == 60_025, "both batches counted", silver, log_file)
        # And later sales, in small batches merged in the driver, while the stream runs.
        for start in (60_025, 60_030, 60_040):
            append_bronze(spark, paths, random_sales(rng, start, 5 if start < 60_040 else 10))
            time.sleep(1)
        wait_for(lambda: counted(paths) == 60_045, "the later batches", silver, log_file)
        # Its Prometheus endpoint counts what this run merged: everything (the killed run committed nothing).
        samples = scrape(metrics_port)
        assert samples["lakehouse_silver_rows_merged_total"] == 60_045
        assert samples["lakehouse_silver_batches_total"] >= 2
        assert samples["lakehouse_silver_freshness_seconds"] >= 0
        assert samples["lakehouse_silver_jvm_heap_used_bytes"] > 0
        silver.send_signal(signal.SIGTERM)
        assert silver.wait(120) == 0
    finally:
        if silver.poll() is None:
            os.killpg(silver.pid, signal.SIGKILL)
    log = log_file.read_text()
    assert "Silver stream stopped after" in log
    assert read_freshness(paths.silver_status).state == "stopped"
    assert_silver_equals_full_recompute(spark, paths)
