"""`make demo`'s orchestrator: everything starts, sales reach Silver, SIGTERM stops every process in order
with nothing lost, a second run resumes without reprocessing; --fresh empties tables and topic."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from pyspark.sql import functions as F

from lakehouse.local.kafka_broker import BrokerError, running_pid
from lakehouse.ops.demo import Demo, Part, parse_args, render, reset_data
from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.paths import Paths
from lakehouse.platform.status import read_json
from tests.conftest import free_port, make_config, produce, wait_for, write_config


def processes_with(marker: str) -> list[str]:
    """Command lines of the processes whose environment holds ``marker`` (children, grandchildren, JVMs)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def run_demo_until(config: Path, marker: str, condition, log: Path, what: str) -> None:
    """Start the demo, wait for ``condition``, SIGTERM it, check it stopped cleanly and left nothing."""
    env = dict(os.environ, DEMO_TEST_MARKER=marker)
    with open(log, "ab") as out:
        demo = subprocess.Popen([sys.executable, "-m", "lakehouse.ops.demo", "--config", str(config), "--rate", "20",
                                 "--silver-interval", "5", "--refresh", "1"], cwd=PROJECT_DIR, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: condition() or demo.poll() is not None, 300, what)
            assert demo.poll() is None, f"the demo stopped by itself:\n{log.read_text()[-3000:]}"
            demo.send_signal(signal.SIGTERM)
            assert demo.wait(400) == 0, log.read_text()[-3000:]
        finally:
            if demo.poll() is None:
                demo.kill()
    wait_for(lambda: not processes_with(marker), 10, "no process left")


def test_demo_runs_stops_cleanly_and_resumes(spark, kafka_bootstrap, topic, tmp_path) -> None:
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    paths = Paths.from_config(cfg)
    web_port = free_port()
    config = write_config(tmp_path / "config.ini", cfg, streaming={"trigger_interval": "1 second"},
                          dashboard={"port": web_port})
    marker, log = uuid.uuid4().hex, tmp_path / "demo.out"
    web_answered = []

    def view_shows_silver() -> bool:  # what the user sees: stream health, then Silver's figures, and the web page
        if not web_answered:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/_stcore/health", timeout=2) as answer:
                    web_answered.append(answer.read())
            except OSError:
                pass
        return log.exists() and "Top 10 clients by net revenue" in log.read_text() and bool(web_answered)
    run_demo_until(config, marker, view_shows_silver, log, "the Silver dashboard in the live view and the web page")
    assert web_answered == [b"ok"] and f"Web dashboard: http://127.0.0.1:{web_port}" in log.read_text()
    first = read_json(paths.producer_summary)
    out = log.read_text()
    assert re.search(r"Stream: [\d.]+ events/s in · [\d,]+ sales and [\d,]+ returns or cancellations into Bronze "
                     r"this run", out)
    assert re.search(r"Sales [1-9][\d,]*   Revenue [\d,]+\.\d\d €", out)
    # Above Silver's figures, how old they are, read from Silver's status file at each refresh.
    assert re.search(r"\nSilver interval: newest sale counted \d+ (s|min) ago, last batch committed \d+ s ago\n"
                     "=== Sales lakehouse — Silver at ", out)
    for part in ("producer", "bronze", "silver", "dashboard"):
        assert (paths.logs_dir / f"{part}.log").stat().st_size > 0

    second_start = time.time()

    def new_batch() -> bool:  # a batch of the second run (the first run's status file is still there)
        status = read_json(paths.bronze_status)
        return bool(status and status["started_at"] > second_start and status["bronze_rows_total"] > 0)
    run_demo_until(config, marker, new_batch, log, "a Bronze batch in the second run")
    second = read_json(paths.producer_summary)

    # Every delivered sale is in Bronze once, or still in Kafka past the offsets the stream committed (the
    # next start reads from there: the SIGKILL test proves that part); none was read twice across runs.
    delivered = first["delivered"] + second["delivered"]
    ends, committed = topic_end_offsets(kafka_bootstrap, topic), committed_offsets(paths.bronze_checkpoint, topic)
    assert sum(ends.values()) == delivered
    waiting = sum(end - committed.get(partition, 0) for partition, end in ends.items())
    bronze = spark.read.format("delta").load(str(paths.bronze))
    metrics = spark.read.format("delta").load(str(paths.bronze_metrics))
    totals = metrics.agg(F.sum("input_rows"), F.sum("duplicate_rows")).first()
    assert first["delivered"] > 0 and second["delivered"] > 0
    assert totals[0] == delivered - waiting and totals[1] == 0  # every record read once: no replay across runs
    assert bronze.count() == bronze.select("vente_id").distinct().count() == delivered - waiting


def topic_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: end for tp, end in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def committed_offsets(checkpoint: Path, topic: str) -> dict[int, int]:
    """The Kafka offsets up to which the stream's last finished batch read (its offset log entry)."""
    last = max(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    source = (checkpoint / "offsets" / str(last)).read_text(encoding="utf-8").splitlines()[2]
    return {int(partition): offset for partition, offset in json.loads(source)[topic].items()}


def test_fresh_empties_tables_checkpoints_and_topic(kafka_bootstrap, topic, tmp_path) -> None:
    paths = Paths.from_config(make_config(tmp_path / "data"))
    for directory in (paths.bronze, paths.bronze_checkpoint, paths.status_dir):
        directory.mkdir(parents=True)
    produce(kafka_bootstrap, topic, [("k", b"old")] * 5)
    reset_data(paths, kafka_bootstrap, topic, 3)
    assert not paths.delta_dir.exists() and not paths.checkpoints_dir.exists() and not paths.status_dir.exists()
    assert topic_end_offsets(kafka_bootstrap, topic) == {0: 0, 1: 0, 2: 0}


def test_the_web_dashboard_is_an_extra_that_the_pipeline_survives(tmp_path) -> None:
    with socket.socket() as busy:  # its port taken: not started, said in the view, the rest goes on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = make_config(tmp_path / "data", dashboard__port=busy.getsockname()[1])
        demo = Demo(cfg, parse_args([]), io.StringIO())
        note = demo.start_web([sys.executable, "-c", "pass"], dict(os.environ))
    assert note.startswith("Web dashboard: not started (cannot listen on 127.0.0.1:") and not demo.parts
    # Started, then stopped: said once, and it is no reason to stop the pipeline.
    demo = Demo(make_config(tmp_path / "data", dashboard__port=free_port()), parse_args([]), io.StringIO())
    note = demo.start_web([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))
    assert note.startswith("Web dashboard: http://127.0.0.1:")
    demo.parts[0].proc.wait(30)
    note = demo.check_web(note)
    assert note.startswith("Web dashboard: stopped (exit 3") and demo.check_web(note) == note
    assert not demo.parts[0].essential
    screen = render(demo.parts, "local", "Stream: ...", "Silver interval: ...", None, tmp_path, time.monotonic(), 30,
                    note)
    assert "dashboard stopped" in screen and note in screen


def test_the_demo_starts_prometheus_when_asked(tmp_path, monkeypatch) -> None:
    """--prometheus: Prometheus (make monitoring's launcher) is one more part, not an essential one; without
    the prometheus package, the view says how to install it and the demo goes on."""
    port = free_port()
    cfg = make_config(tmp_path / "data", monitoring__prometheus_port=port)
    config = write_config(tmp_path / "demo.ini", cfg, monitoring={"prometheus_port": port})
    args = parse_args(["--prometheus", "--config", str(config)])
    demo = Demo(cfg, args, io.StringIO())
    command = [sys.executable, "-m", "lakehouse.ops.prometheus", "--config", str(config)]
    note = demo.start_prometheus(command, dict(os.environ))
    assert note == f"Prometheus: http://127.0.0.1:{port} (alerts: http://127.0.0.1:{port}/alerts)"
    part = demo.parts[0]
    assert part.name == "prometheus" and not part.essential

    def ready() -> bool:
        assert part.running, part.log_file.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 60, "Prometheus started by the demo")
    finally:
        assert part.stop(20) == 0, part.log_file.read_text()[-3000:]
    monkeypatch.setenv("PATH", str(tmp_path))  # no prometheus there
    demo = Demo(cfg, args, io.StringIO())
    assert demo.start_prometheus(command, dict(os.environ)) == \
        "Prometheus: not installed (sudo apt-get install prometheus)"
    assert not demo.parts


def test_an_unreachable_cluster_is_not_replaced_by_a_single_broker(tmp_path) -> None:
    servers = "127.0.0.1:19191,127.0.0.1:19193"  # nothing listens there
    demo = Demo(make_config(tmp_path / "data", kafka__bootstrap_servers=servers), parse_args([]), io.StringIO())
    with pytest.raises(BrokerError, match=f"Kafka brokers at {servers} are not reachable: start them"):
        demo.setup()
    assert not demo.owns_broker and running_pid(demo.broker) is None


def test_the_wait_for_bronze_is_said_once(tmp_path) -> None:
    # The demo used to repeat the line every 5 s until the Bronze stream ran.
    cfg = make_config(tmp_path / "data")
    paths = Paths.from_config(cfg)
    out = io.StringIO()
    demo = Demo(cfg, parse_args([]), out)
    bronze = Part("bronze", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "bronze.log")
    demo.parts = [bronze]
    bronze.start(dict(os.environ))

    def bronze_runs() -> None:
        paths.bronze_status.parent.mkdir(parents=True, exist_ok=True)
        paths.bronze_status.write_text("{}", encoding="utf-8")

    runs = threading.Timer(7, bronze_runs)  # past the old 5 s repeat
    runs.start()
    try:
        demo.wait_for_bronze_start(timeout_s=60)
    finally:
        runs.cancel()
        bronze.stop(5)
    assert paths.bronze_status.exists()  # it waited until the stream ran
    assert out.getvalue() == "Starting the Bronze stream (the first start also downloads Spark's jars)...\n"
