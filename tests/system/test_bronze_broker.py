"""Broker trouble: a broker stopped under the running Bronze job stops it within [streaming] broker_timeout
plus a margin; back, it loses nothing."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from lakehouse.bronze.stream import start_bronze_stream
from lakehouse.local.kafka_broker import BrokerSettings, start, stop
from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.job_lock import EXIT_ALREADY_RUNNING
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import jvm_log_file
from lakehouse.platform.topics import ensure_topic, reset_topic
from tests.conftest import make_config, write_config
from tests.system.test_bronze_stream import run_producer

# The documented bound (docs/OPERATIONS.md): the stream stops within [streaming] broker_timeout plus this
# margin; the Kafka source's offset lookups share the timeout (three lookups of a full timeout each took
# three times as long).
STOP_MARGIN_S = 15
BROKER_TIMEOUT_S = 10  # three lookups of a full timeout each (30 s) would break the bound


def bronze_count(paths: Paths) -> int:
    try:
        return DeltaTable(str(paths.bronze)).to_pyarrow_table(columns=["vente_id"]).num_rows
    except TableNotFoundError:  # no commit yet
        return 0


def test_broker_stopped_under_the_job_then_back_loses_nothing(spark, tmp_path) -> None:
    # A broker of its own (other ports, other data), so that stopping it disturbs no other test.
    servers = "localhost:19105"
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=servers, kafka__controller_port=19106,
                      kafka__topic="ventes_broker_trouble")
    broker = BrokerSettings.from_config(cfg)
    paths = Paths.from_config(cfg)
    config = write_config(tmp_path / "broker.ini", cfg,
                          streaming={"broker_timeout": f"{BROKER_TIMEOUT_S} seconds", "trigger_interval": "200 ms"})
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
            while bronze_count(paths) < 300 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
            if proc.poll() is not None:
                raise AssertionError(f"the job ended early:\n{proc.stdout.read()[-3000:]}")
            assert bronze_count(paths) == 300
            stop(broker)
            gone = time.monotonic()
            output, _ = proc.communicate(timeout=240)
            stopped_after = time.monotonic() - gone
        finally:
            proc.kill()
        assert proc.returncode == 1, output[-3000:]
        assert f"Kafka broker at {servers} is not reachable: the Bronze stream stopped" in output
        assert stopped_after <= BROKER_TIMEOUT_S + STOP_MARGIN_S, f"stopped {stopped_after:.0f} s after the broker"

        # Broker back, more sales, a new run (in-process: the JVM start proves nothing more): everything once.
        start(broker)
        run_producer(*common, "--count", "200", "--seed", "12")
        start_bronze_stream(spark, cfg, paths, available_now=True).awaitTermination()
    finally:
        stop(broker)
    bronze = DeltaTable(str(paths.bronze)).to_pyarrow_table(columns=["vente_id", "kafka_partition", "kafka_offset"])
    assert bronze.num_rows == 500
    assert len(set(bronze.column("vente_id").to_pylist())) == 500
    assert len(set(zip(bronze.column("kafka_partition").to_pylist(), bronze.column("kafka_offset").to_pylist()))) == 500


def test_job_refuses_to_start_without_a_broker(tmp_path) -> None:
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers="localhost:19099")
    config = write_config(tmp_path / "nobroker.ini", cfg, kafka={"connect_timeout": "2 seconds"})
    result = subprocess.run([sys.executable, "spark_streaming_delta.py", "--config", str(config)],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Kafka broker at localhost:19099 is not reachable: start it" in result.stderr


# What a Java stack trace or a Spark log line looks like on the terminal.
JAVA_NOISE = re.compile(r"^\s+at [\w$.]+\(|^\d\d/\d\d/\d\d \d\d:\d\d:\d\d ERROR "
                        r"|^(java|org\.apache|scala)\.[\w.$]+(Exception|Error)", re.M)


def test_a_second_start_and_a_deleted_topic_each_end_in_one_clear_line(kafka_bootstrap, topic, tmp_path) -> None:
    # Issue #32: both used to print dozens to hundreds of lines of Java stack before the clear line.
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    config = write_config(tmp_path / "job.ini", cfg, streaming={"trigger_interval": "200 ms"})
    paths = Paths.from_config(cfg)
    run_producer("--config", str(config), "--count", "50", "--seed", "13")
    job = [sys.executable, "spark_streaming_delta.py", "--config", str(config)]
    proc = subprocess.Popen(job, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while bronze_count(paths) < 50 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert proc.poll() is None and bronze_count(paths) == 50
        second = subprocess.run(job, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
        reset_topic(kafka_bootstrap, topic, partitions=3)  # deleted and created again under the running job
        _, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert second.returncode == EXIT_ALREADY_RUNNING, second.stderr
    refusal = second.stderr.strip().splitlines()
    assert len(refusal) == 1
    assert f"The Bronze stream already runs on {paths.bronze_checkpoint} (pid {proc.pid} on host" in refusal[0]
    assert proc.returncode == 1, stderr[-3000:]
    assert not JAVA_NOISE.search(stderr), stderr[-5000:]
    last = stderr.strip().splitlines()[-1]
    assert " - ERROR - spark_streaming_delta - Kafka no longer holds records that the checkpoint" in last, \
        stderr[-3000:]
    assert len([line for line in stderr.splitlines() if " - ERROR - " in line]) == 1
    # Spark's own account, stack included, is in the job's Spark log.
    spark_log = jvm_log_file(paths, "bronze_ventes").read_text(encoding="utf-8")
    assert "\tat org.apache.spark" in spark_log and "ERROR" in spark_log


def test_a_full_disk_ends_the_stream_in_one_clear_line(kafka_bootstrap, topic, tmp_path) -> None:
    # Issue #32: the lake on a small file system of its own (a tmpfs, mounted as root, as CI runs) fills up
    # under the stream; the terminal gets the one line that says so, the stack stays in the Spark log.
    lake = tmp_path / "lake"
    lake.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(lake)], capture_output=True,
                             text=True)
    assert mounted.returncode == 0, f"this test mounts a small tmpfs (as root): {mounted.stderr}"
    try:
        cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic,
                          paths__lake=str(lake))
        config = write_config(tmp_path / "job.ini", cfg, paths={"lake": str(lake)},
                              streaming={"max_offsets_per_trigger": 5000})
        run_producer("--config", str(config), "--count", "60000", "--max", "--seed", "17")
        done = subprocess.run([sys.executable, "spark_streaming_delta.py", "--config", str(config)], cwd=PROJECT_DIR,
                              capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["umount", "-l", str(lake)], capture_output=True)
    assert done.returncode == 1, done.stderr[-3000:]
    assert not JAVA_NOISE.search(done.stderr), done.stderr[-5000:]
    errors = [line for line in done.stderr.splitlines() if " - ERROR - " in line]
    assert len(errors) == 1 and "The disk is full (No space left on device): the Bronze stream stopped" in errors[0], \
        done.stderr[-3000:]
    assert "No space left on device" in jvm_log_file(Paths.from_config(cfg), "bronze_ventes").read_text()
