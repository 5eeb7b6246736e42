"""The local three-node Kafka cluster (python -m lakehouse.local.kafka_cluster): a taken port is refused in one
line with nothing started; a node that cannot start is named with its log and what the call started is stopped;
and a node killed (SIGKILL, the leader of a partition) under the real producer and the real Bronze stream costs no
acknowledged sale and doubles none, the stream going on. Ports: 19110-19199, found free at run time."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from lakehouse.ingest.simulator import SalesSimulator
from lakehouse.local.kafka_cluster import (
    ClusterError,
    KafkaClusterSettings,
    registered_brokers,
    running_pid,
    server_properties,
    start,
    status,
    stop,
)
from lakehouse.platform.paths import Paths
from lakehouse.platform.topics import ensure_topic
from tests.conftest import PROJECT_DIR, make_config, wait_for, write_config

# Ports other test files use at fixed numbers (their own brokers); the cluster's are looked for above them.
PORT_RANGE = range(19110, 19200)
SEED, RATE, DURATION_S = 7, 150, 15


def free_base_port(count: int = 6) -> int:
    """The first port of ``count`` consecutive ports free on 127.0.0.1 in ``PORT_RANGE``."""
    for base in range(PORT_RANGE.start, PORT_RANGE.stop - count + 1, 2):
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError(f"no {count} consecutive free ports in {PORT_RANGE}")


def cluster_config(data_dir: Path, base: int, **overrides: object):
    bootstrap = ",".join(f"127.0.0.1:{base + 2 * i}" for i in range(3))
    return make_config(data_dir, cluster__kafka_base_port=base, kafka__bootstrap_servers=bootstrap, **overrides)


def no_process_left(settings: KafkaClusterSettings) -> bool:
    return not subprocess.run(["pgrep", "-f", str(settings.state_dir)], capture_output=True).stdout


def test_settings_and_node_properties_come_from_the_configuration(tmp_path: Path) -> None:
    settings = KafkaClusterSettings.from_config(make_config(tmp_path / "data", cluster__kafka_base_port=19180))
    assert settings.bootstrap == "127.0.0.1:19180,127.0.0.1:19182,127.0.0.1:19184"
    assert settings.node(2).data_dir == tmp_path / "data" / "kafka-cluster" / "node-2"
    assert settings.node(2).log_file == tmp_path / "data" / "logs" / "cluster" / "kafka-2.log"
    assert settings.heap == "384m" and settings.node(2).heap == "384m"
    lines = server_properties(settings, 2).splitlines()
    assert {
        "process.roles=broker,controller", "node.id=2",
        "controller.quorum.voters=1@127.0.0.1:19181,2@127.0.0.1:19183,3@127.0.0.1:19185",
        "listeners=PLAINTEXT://127.0.0.1:19182,CONTROLLER://127.0.0.1:19183",
        "advertised.listeners=PLAINTEXT://127.0.0.1:19182",
        f"log.dirs={tmp_path / 'data' / 'kafka-cluster' / 'node-2' / 'kraft-logs'}",
        "default.replication.factor=3", "min.insync.replicas=2", "offsets.topic.replication.factor=3",
        "transaction.state.log.replication.factor=3", "transaction.state.log.min.isr=2",
        "unclean.leader.election.enable=false", "auto.create.topics.enable=false",
    } <= set(lines)
    assert not [line for line in lines if line.endswith("replication.factor=1")]


def test_a_taken_port_is_refused_with_one_line_and_nothing_starts(tmp_path) -> None:
    base = free_base_port()
    taken = base + 3  # kafka-2's controller port
    settings = KafkaClusterSettings.from_config(cluster_config(tmp_path / "data", base))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", taken))
        busy.listen()
        with pytest.raises(ClusterError) as refused:
            start(settings)
    assert str(refused.value) == (f"Port {taken} on 127.0.0.1 is already in use by another process; stop it or "
                                  "change [cluster] kafka_base_port")
    assert status(settings) == {"kafka-1": None, "kafka-2": None, "kafka-3": None}
    assert not settings.state_dir.exists()  # refused before any storage was formatted
    assert no_process_left(settings)


def test_a_node_that_cannot_start_is_named_with_its_log_and_nothing_is_left(tmp_path) -> None:
    cfg = cluster_config(tmp_path / "data", free_base_port(), cluster__start_timeout="60 seconds")
    settings = KafkaClusterSettings.from_config(cfg)
    # kafka-3's storage says it belongs to node 7: Kafka refuses to start it.
    meta = settings.node(3).log_dirs / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("version=1\nnode.id=7\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAQ\n")
    try:
        with pytest.raises(ClusterError, match=r"kafka-3 exited with code \d+ while starting; last lines of .*"
                                               r"kafka-3\.log:\n"):
            start(settings)
    finally:
        stop(settings, timeout_s=20)
    assert status(settings) == {"kafka-1": None, "kafka-2": None, "kafka-3": None}  # 1 and 2 were stopped too
    assert no_process_left(settings)


def bronze_rows(path: Path) -> int:
    try:
        return DeltaTable(str(path)).to_pyarrow_table(columns=["vente_id"]).num_rows
    except Exception:  # not created yet
        return 0


def table_or_empty(path: Path, columns: list[str]) -> dict[str, list]:
    try:
        return DeltaTable(str(path)).to_pyarrow_table(columns=columns).to_pydict()
    except Exception:  # a table no batch had rows for
        return {c: [] for c in columns}


def acknowledged_sales(cfg, count: int) -> set[str]:
    """The vente_ids of the first ``count`` records the producer sent: the same seed draws the same sales."""
    simulator = SalesSimulator(SEED, cfg.producer.clients, max_event_bytes=cfg.streaming.max_event_bytes,
                               pool_seed=cfg.producer.pool_seed)
    records = simulator.records()
    return {next(records).event["vente_id"] for _ in range(count)}


def records_in_topic(servers: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=servers)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def replica_counts(servers: str, topic: str) -> list[int]:
    """Each partition's number of in-sync replicas, in partition order."""
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    return [len(p["isr_nodes"]) for p in sorted(described["partitions"], key=lambda p: p["partition_index"])]


def node_to_kill(servers: str, topic: str) -> tuple[int, bool]:
    """The node to kill: the active controller if it also leads a partition of ``topic`` (both roles lost at
    once; it usually does, three partitions over three nodes), else the leader of partition 0; and whether it
    is the controller."""
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        (described,) = admin.describe_topics([topic])
        controller = admin.describe_cluster()["controller_id"]
    finally:
        admin.close()
    leaders = {p["partition_index"]: p["leader_id"] for p in described["partitions"]}
    return (controller, True) if controller in leaders.values() else (leaders[0], False)


def test_a_node_killed_under_load_loses_no_acknowledged_sale_and_doubles_none(tmp_path) -> None:
    base = free_base_port()
    topic = "ventes_cluster"
    cfg = cluster_config(tmp_path / "data", base, kafka__topic=topic, kafka__replication_factor=3)
    settings = KafkaClusterSettings.from_config(cfg)
    servers = cfg.kafka.bootstrap_servers
    paths = Paths.from_config(cfg)
    config = write_config(tmp_path / "config.ini", cfg, kafka={"replication_factor": 3},
                          streaming={"metrics_interval": "0 seconds"})
    summary_file = paths.producer_summary
    job_log, producer_log = tmp_path / "bronze.log", tmp_path / "producer.log"
    facts: dict[str, object] = {}
    lag = LagSampler(paths.bronze_status)
    try:
        began = time.monotonic()
        assert start(settings) == servers
        facts["cluster_start_s"] = round(time.monotonic() - began, 1)
        pids = status(settings)
        assert all(pids.values())
        assert start(settings) == servers and status(settings) == pids  # again: nothing more starts
        assert ensure_topic(servers, topic, partitions=3, replication_factor=3)
        # The new topic reaches every node's metadata a moment later.
        wait_for(lambda: replica_counts(servers, topic) == [3, 3, 3], 30, "three replicas of each partition")
        admin = KafkaAdminClient(bootstrap_servers=servers)
        try:
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, ["min.insync.replicas"])])
            assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2"
        finally:
            admin.close()

        with open(job_log, "wb") as out:
            job = subprocess.Popen([sys.executable, "spark_streaming_delta.py", "--config", str(config)],
                                   cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT)
        producer = None
        try:
            wait_for(lambda: paths.bronze_status.exists() or job.poll() is not None, 180, "the Bronze stream to run")
            assert job.poll() is None, job_log.read_text()[-3000:]
            summary_file.parent.mkdir(parents=True, exist_ok=True)
            with open(producer_log, "wb") as out:
                producer = subprocess.Popen(
                    [sys.executable, "producer_ventes.py", "--rate", str(RATE), "--duration", f"{DURATION_S} s",
                     "--seed", str(SEED), "--config", str(config), "--summary-json", str(summary_file)],
                    cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT)
            produced_at = time.monotonic()
            # Mid-load: once the stream has written sales, the leader of partition 0 dies without a word.
            wait_for(lambda: bronze_rows(paths.bronze) > 0 or job.poll() is not None or producer.poll() is not None,
                     60, "the first sales in Bronze")
            assert job.poll() is None and producer.poll() is None
            victim, facts["controller_killed"] = node_to_kill(servers, topic)
            facts["victim"] = victim
            os.kill(running_pid(settings, victim), signal.SIGKILL)
            facts["killed_after_s"] = round(time.monotonic() - produced_at, 1)
            facts["bronze_rows_at_kill"] = bronze_rows(paths.bronze)
            wait_for(lambda: lag.sample() or producer.poll() is not None, DURATION_S + 90, "the producer to end")
            assert producer.returncode == 0, producer_log.read_text()[-3000:]
            facts["producer_done_after_s"] = round(time.monotonic() - produced_at, 1)
            summary = json.loads(summary_file.read_text())
            assert summary["failed"] == summary["unsent"] == 0 and summary["delivered"] == summary["generated"] > 0
            delivered = summary["delivered"]
            caught_up = time.monotonic()
            wait_for(lambda: lag.sample() or bronze_rows(paths.bronze) >= delivered or job.poll() is not None, 120,
                     f"{delivered} sales in Bronze")
            facts["bronze_caught_up_after_producer_s"] = round(time.monotonic() - caught_up, 1)
            facts["kafka_lag_max_seen"] = lag.highest
            assert job.poll() is None, job_log.read_text()[-3000:]  # the stream outlived the node
            assert bronze_rows(paths.bronze) == delivered
            assert registered_brokers(servers) == {1, 2, 3} - {victim}
            # Kafka holds each record once: the producer's retries were not appended twice (idempotence).
            assert records_in_topic(servers, topic) == delivered
        finally:
            if producer is not None and producer.poll() is None:
                producer.kill()
            job.send_signal(signal.SIGTERM)
            assert job.wait(120) == 0, job_log.read_text()[-3000:]
    finally:
        began = time.monotonic()
        stop(settings, timeout_s=30)
        facts["stop_s"] = round(time.monotonic() - began, 1)
        print("cluster test facts:", json.dumps(facts))
        print("producer output:\n", producer_log.read_text()[-4000:] if producer_log.exists() else "")
    assert status(settings) == {"kafka-1": None, "kafka-2": None, "kafka-3": None}
    assert no_process_left(settings)
    shown = subprocess.run([sys.executable, "-m", "lakehouse.local.kafka_cluster", "status", "--config",
                            str(write_config(tmp_path / "c2.ini", cfg, cluster={"kafka_base_port": base}))],
                           cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 3 and f"kafka-1: stopped on 127.0.0.1:{base}" in shown.stdout
    assert f"bootstrap: {servers}" in shown.stdout

    bronze = table_or_empty(paths.bronze, ["vente_id"])["vente_id"]
    assert len(bronze) == len(set(bronze)) == delivered
    assert set(bronze) == acknowledged_sales(cfg, delivered)
    assert table_or_empty(paths.duplicates, ["vente_id"])["vente_id"] == []
    assert table_or_empty(paths.quarantine, ["reason"])["reason"] == []
    metrics = table_or_empty(paths.bronze_metrics, ["input_rows", "duplicate_rows"])
    assert sum(metrics["input_rows"]) == delivered and sum(metrics["duplicate_rows"]) == 0  # each record read once


class LagSampler:
    """The highest Kafka lag the Bronze stream reported in its status file (for the test's printed facts)."""

    def __init__(self, status_file: Path):
        self.status_file, self.highest = status_file, None

    def sample(self) -> bool:
        try:
            lag = json.loads(self.status_file.read_text()).get("kafka_lag")
        except (OSError, ValueError):
            return False
        if lag is not None and (self.highest is None or lag > self.highest):
            self.highest = lag
        return False
