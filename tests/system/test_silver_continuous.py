"""The long-running Silver job (streaming_silver.py --continuous) as users run it: kill -9 in the middle of a
batch and a restart leave the tables of an uninterrupted run (and, with returns and cancellations, the oracle's);
SIGTERM stops it after its batch; its Prometheus endpoint counts what it merged."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.delta import checkpoint_entries
from lakehouse.platform.paths import Paths
from lakehouse.silver.freshness import read_freshness
from lakehouse.silver.job import read_rows
from lakehouse.silver.tables import FIGURE_TABLES
from tests.conftest import free_port, make_config, write_config
from tests.integration.test_silver_incremental import (
    RECEIVED,
    UTC,
    BronzeLog,
    assert_silver_equals_full_recompute,
    random_corrections,
    random_event_sales,
)
from tests.integration.test_silver_random_histories import read_silver
from tests.unit.test_silver_corrections import RULES, Ev, assert_matches, oracle

START = dt.datetime(2024, 12, 1, tzinfo=UTC)  # the events' first day (of four)


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
    # Silver with the oracle's client rules (loyalty, spending tiers).
    config = write_config(tmp_path / "config.ini", cfg, analytics={
        "silver_trigger": "0.5 s", "loyalty_threshold": RULES.loyalty_threshold,
        "premium_threshold": RULES.premium_threshold, "standard_threshold": RULES.standard_threshold},
        monitoring={"metrics_port_silver": metrics_port})
    log_file = tmp_path / "silver.log"
    rng = random.Random(5)
    bronze = BronzeLog(spark, paths, rng, RECEIVED)
    first, second = random_event_sales(rng, 0, 60_000, START), random_event_sales(rng, 60_000, 25, START)
    # Returns and cancellations: two on average for each of 150 sales (some refused: their units or money gone,
    # the sale cancelled, another client), of sales not sent yet (they wait), and of a sale never sent.
    corrected = first[:150]
    corrections = random_corrections(rng, corrected, 300, 0, START) + random_corrections(rng, second, 10, 300, START)
    corrections.append(Ev("retour", "jamais_vendue", "C1", START, retour_id="r_orphan", quantite=1,
                          montant=Decimal("1.00")))
    # A first batch large enough for Spark's path (seconds long): the kill lands inside it.
    bronze.append(first + corrections)
    silver = start_silver(config, log_file)
    try:
        planned = lambda: checkpoint_entries(paths.silver_checkpoint, "offsets") >= 1  # noqa: E731
        wait_for(planned, "first batch planned", silver, log_file)
        assert checkpoint_entries(paths.silver_checkpoint, "commits") == 0  # in the middle of the batch
        os.killpg(silver.pid, signal.SIGKILL)
        silver.wait(30)
        bronze.append(second + random_corrections(rng, corrected + second, 20, 320, START))

        silver = start_silver(config, log_file)  # the lock the killed job held is free again
        wait_for(lambda: counted(paths) == 60_025, "both batches counted", silver, log_file)
        # And later sales and corrections, in small batches merged in the driver, while the stream runs.
        later = []
        for start, n in ((60_025, 5), (60_030, 5), (60_040, 10)):
            sales = random_event_sales(rng, start, n, START)
            later += sales
            bronze.append(sales + random_corrections(rng, corrected + second + later, 4, start, START))
            time.sleep(1)
        # A batch's corrections are written before its sales: once its sales are counted, they are merged too.
        wait_for(lambda: counted(paths) == 60_045, "the later batches", silver, log_file)
        # Its Prometheus endpoint counts what this run merged: everything (the killed run committed nothing).
        # A batch's counter moves after its tables are written: the last one may still be ending.
        assert len(bronze.arrived) == 60_045 + 343
        merged = lambda: scrape(metrics_port)["lakehouse_silver_rows_merged_total"] >= len(bronze.arrived)  # noqa: E731
        wait_for(merged, "the last batch counted", silver, log_file, timeout=60)
        samples = scrape(metrics_port)
        assert samples["lakehouse_silver_rows_merged_total"] == len(bronze.arrived)
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
    # The figures as a full recompute gives them, and every table as the oracle does (each sale's state
    # too: compared to a recompute, its 60,045 rows would take longer than the rest of the check).
    assert_silver_equals_full_recompute(spark, paths, RULES, FIGURE_TABLES)
    assert_matches(oracle(bronze.arrived), *read_silver(spark, paths))
