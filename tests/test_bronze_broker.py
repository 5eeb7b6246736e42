"""Broker trouble: a broker stopped under the running Bronze job, then back, loses nothing."""

from __future__ import annotations

import subprocess
import sys
import time

from pyspark.errors import AnalysisException
from pyspark.sql import functions as F

from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.kafka_local import BrokerSettings, start, stop
from lakehouse.platform.paths import Paths
from lakehouse.platform.topics import ensure_topic
from tests.conftest import make_config, write_config
from tests.test_bronze_stream import run_producer


def bronze_count(spark, paths: Paths) -> int:
    try:
        return spark.read.format("delta").load(str(paths.bronze)).count()
    except AnalysisException:  # no commit yet
        return 0


def test_broker_stopped_under_the_job_then_back_loses_nothing(spark, tmp_path) -> None:
    # A broker of its own (other ports, other data), so that stopping it disturbs no other test.
    servers = "localhost:19092"
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=servers, kafka__controller_port=19093,
                      kafka__topic="ventes_broker_trouble")
    broker = BrokerSettings.from_config(cfg)
    paths = Paths.from_config(cfg)
    config = write_config(tmp_path / "broker.ini", cfg, streaming={"broker_timeout": "5 seconds",
                                                                     "trigger_interval": "200 ms"})
    job = [sys.executable, "spark_streaming_delta.py", "--config", str(config)]
    common = ["--config", str(config)]
    start(broker)
    try:
        ensure_topic(servers, cfg.kafka.topic, partitions=3)
        run_producer(*common, "--count", "300", "--seed", "11")
        proc = subprocess.Popen(job, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            deadline = time.monotonic() + 180
            while bronze_count(spark, paths) < 300 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
            if proc.poll() is not None:
                raise AssertionError(f"the job ended early:\n{proc.stdout.read()[-3000:]}")
            assert bronze_count(spark, paths) == 300
            stop(broker)
            output, _ = proc.communicate(timeout=240)
        finally:
            proc.kill()
        assert proc.returncode == 1, output[-3000:]
        assert f"Kafka broker at {servers} is not reachable: the Bronze stream stopped" in output

        # Broker back, more sales, the job again: everything once.
        start(broker)
        run_producer(*common, "--count", "200", "--seed", "12")
        result = subprocess.run([*job, "--available-now"], cwd=PROJECT_DIR, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        stop(broker)
    bronze = spark.read.format("delta").load(str(paths.bronze))
    assert bronze.count() == 500
    assert bronze.select("vente_id").distinct().count() == 500
    assert bronze.agg(F.countDistinct("kafka_partition", "kafka_offset")).first()[0] == 500


def test_job_refuses_to_start_without_a_broker(tmp_path) -> None:
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers="localhost:19099")
    config = write_config(tmp_path / "nobroker.ini", cfg, kafka={"connect_timeout": "2 seconds"})
    result = subprocess.run([sys.executable, "spark_streaming_delta.py", "--config", str(config)],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Kafka broker at localhost:19099 is not reachable: start it" in result.stderr
