"""Upkeep while the pipeline runs: the real producer (its own process) feeds the broker, the Bronze stream and
Silver run in this process, and upkeep compacts and vacuums under them again and again: nothing is lost or
doubled, Silver stays exact. Upkeep alone on real tables: tests/integration/test_upkeep.py."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time

from lakehouse.bronze.monitoring import remove_progress_loggers
from lakehouse.bronze.stream import start_bronze_stream, stop_after_current_batch
from lakehouse.ops.upkeep import run_upkeep
from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.paths import Paths
from lakehouse.silver.job import run_silver
from tests.conftest import make_config
from tests.integration.test_silver_incremental import RULES, assert_silver_equals_full_recompute


def operations(spark, path) -> list[str]:
    return [r.operation for r in spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()]


def test_upkeep_while_bronze_and_silver_run(spark, kafka_bootstrap, topic, tmp_path) -> None:
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    paths = Paths.from_config(cfg)
    producer = subprocess.Popen(
        [sys.executable, "producer_ventes.py", "--rate", "250", "--count", "2000", "--seed", "5",
         "--topic", topic, "--bootstrap-servers", kafka_bootstrap], cwd=PROJECT_DIR,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bronze = start_bronze_stream(spark, cfg, paths)
    stop, silver_errors, silver_runs = threading.Event(), [], []

    def silver_every_few_seconds() -> None:
        while not stop.wait(2):
            try:
                silver_runs.append(run_silver(spark, RULES, paths))
            except Exception as e:  # noqa: BLE001 - recorded, asserted empty below
                silver_errors.append(e)
                return

    silver = threading.Thread(target=silver_every_few_seconds, daemon=True)
    try:
        deadline = time.monotonic() + 120
        while not delta_table_exists(paths.bronze) and time.monotonic() < deadline:
            time.sleep(0.5)
        silver.start()
        upkeep_runs = []
        # Upkeep again and again while sales flow in (and the stream and Silver run), at least twice and
        # until Bronze had small files to compact (on a slow machine the first runs may see one per day).
        deadline = time.monotonic() + 600
        while producer.poll() is None or len(upkeep_runs) < 2 or (
                "OPTIMIZE" not in operations(spark, paths.bronze) and time.monotonic() < deadline):
            upkeep_runs.append(run_upkeep(spark, cfg, paths, dt.datetime.now(dt.timezone.utc).date()))
        assert producer.returncode == 0
    finally:
        stop.set()
        silver.join(120)
        if producer.poll() is None:
            producer.kill()
        time.sleep(3)  # the stream's last trigger picks up the last records
        stop_after_current_batch(bronze)
        remove_progress_loggers(spark)
    start_bronze_stream(spark, cfg, paths, available_now=True).awaitTermination()
    run_silver(spark, RULES, paths)

    assert silver_errors == [] and len(silver_runs) >= 2, silver_runs
    assert all(upkeep_runs), upkeep_runs  # no step met a conflict
    assert "OPTIMIZE" in operations(spark, paths.bronze)
    # Nothing lost or doubled by compaction under the writers, and Silver still exact.
    bronze_df = spark.read.format("delta").load(str(paths.bronze))
    corrections = spark.read.format("delta").load(str(paths.corrections)).count()  # config.ini's 3% and 1%
    assert corrections > 0
    assert bronze_df.count() == bronze_df.select("vente_id").distinct().count() == 2000 - corrections
    assert_silver_equals_full_recompute(spark, paths)
