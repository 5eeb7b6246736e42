"""The whole local cluster in one command (python -m lakehouse.local.cluster): without the object store's
secret nothing starts, and a start that cannot complete stops what it started. The command starting the three
parts, saying how to point the pipeline at them and stopping them leaving nothing is tested with the pipeline
that runs on them (tests/test_object_store.py)."""

from __future__ import annotations

import socket

import pytest

from lakehouse.local import object_store, spark_cluster
from lakehouse.local.cluster import parts, start, stop
from tests.conftest import free_kafka_base, free_port, make_config

SECRET = "cluster-test-secret-0b7"


def cluster_config(data_dir, env=None):
    return make_config(data_dir, env=env, s3__endpoint=f"http://127.0.0.1:{free_port()}",
                       cluster__spark_master_port=free_port(), cluster__kafka_base_port=free_kafka_base())


def test_without_the_secret_nothing_starts(tmp_path) -> None:
    cfg = cluster_config(tmp_path / "data")
    with pytest.raises(object_store.ObjectStoreError, match="LAKEHOUSE_S3_SECRET_KEY"):
        start(cfg)
    assert not any(part.running() for part in parts(cfg))


def test_a_part_that_cannot_start_stops_what_the_call_started(tmp_path) -> None:
    cfg = cluster_config(tmp_path / "data", env={"LAKEHOUSE_S3_SECRET_KEY": SECRET})
    with socket.socket() as busy:  # the Spark master's port is taken: the object store started first goes again
        busy.bind(("127.0.0.1", cfg.cluster.spark_master_port))
        busy.listen()
        with pytest.raises(spark_cluster.ClusterError, match="already in use"):
            start(cfg)
    assert object_store.running_pid(object_store.StoreSettings.from_config(cfg)) is None
    stop(cfg)  # nothing runs: stopping is still fine
