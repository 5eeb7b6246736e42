"""The whole local cluster in one command (python -m lakehouse.platform.cluster): the object store, the
Spark standalone cluster and the three Kafka nodes start together, say how to point the pipeline at them,
and stop leaving nothing; a start that cannot complete stops what it started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from lakehouse.platform import kafka_cluster, object_store, spark_cluster
from lakehouse.platform.cluster import parts, start, stop
from tests.conftest import PROJECT_DIR, make_config, write_config

SECRET = "cluster-test-secret-0b7"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_kafka_base() -> int:
    """A base port with the six ports of three nodes free (base .. base+5)."""
    for _ in range(50):
        base = free_port()
        if base + 6 < 65535 and all(not _taken(base + i) for i in range(6)):
            return base
    raise AssertionError("no six free ports in a row")


def _taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def cluster_config(data_dir, env=None):
    return make_config(data_dir, env=env, s3__endpoint=f"http://127.0.0.1:{free_port()}",
                       cluster__spark_master_port=free_port(), cluster__kafka_base_port=free_kafka_base())


def test_without_the_secret_nothing_starts(tmp_path) -> None:
    cfg = cluster_config(tmp_path / "data")
    with pytest.raises(object_store.ObjectStoreError, match="LAKEHOUSE_S3_SECRET_KEY"):
        start(cfg)
    assert not any(part.running() for part in parts(cfg))


@pytest.mark.integration  # starts the three parts
def test_one_command_starts_every_part_and_stops_them_all(tmp_path) -> None:
    cfg = cluster_config(tmp_path / "data", env={"LAKEHOUSE_S3_SECRET_KEY": SECRET})
    config = write_config(tmp_path / "c.ini", cfg, s3={"endpoint": cfg.s3.endpoint},
                          cluster={"spark_master_port": cfg.cluster.spark_master_port,
                                   "kafka_base_port": cfg.cluster.kafka_base_port})
    env = dict(os.environ, LAKEHOUSE_S3_SECRET_KEY=SECRET)

    def cli(action: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lakehouse.platform.cluster", action, "--config", str(config)],
                              cwd=PROJECT_DIR, capture_output=True, text=True, timeout=240, env=env)
    try:
        result = cli("start")
        assert result.returncode == 0, result.stderr[-3000:]
        assert all(part.running() for part in parts(cfg))
        kafka = kafka_cluster.KafkaClusterSettings.from_config(cfg)
        assert f"LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}" in result.stdout
        assert f"LAKEHOUSE_SPARK_MASTER=spark://127.0.0.1:{cfg.cluster.spark_master_port}" in result.stdout
        assert f"LAKEHOUSE_S3_ENDPOINT={cfg.s3.endpoint}" in result.stdout and SECRET not in result.stdout
        status = cli("status")
        assert status.returncode == 0 and "object store: running" in status.stdout
        assert cli("start").returncode == 0  # again: nothing more starts
    finally:
        stopped = cli("stop")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert not any(part.running() for part in parts(cfg))
    assert cli("status").returncode == 3
    assert not subprocess.run(["pgrep", "-f", str(tmp_path / "data")], capture_output=True).stdout


@pytest.mark.integration  # starts the object store
def test_a_part_that_cannot_start_stops_what_the_call_started(tmp_path) -> None:
    cfg = cluster_config(tmp_path / "data", env={"LAKEHOUSE_S3_SECRET_KEY": SECRET})
    with socket.socket() as busy:  # the Spark master's port is taken: the object store started first goes again
        busy.bind(("127.0.0.1", cfg.cluster.spark_master_port))
        busy.listen()
        with pytest.raises(spark_cluster.ClusterError, match="already in use"):
            start(cfg)
    assert object_store.running_pid(object_store.StoreSettings.from_config(cfg)) is None
    stop(cfg)  # nothing runs: stopping is still fine
