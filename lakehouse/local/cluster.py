"""The whole local cluster in one command: the object store, the Spark standalone cluster, the Kafka nodes.

Usage: python -m lakehouse.local.cluster start|stop|status [--config PATH]
(make cluster-start, make cluster-stop, make cluster-status.)

Each part has its own launcher (object_store, spark_cluster, kafka_cluster) with its own settings; this one
starts them in that order (a part that fails stops the start, and what the call started is stopped again),
stops them in the reverse order, and prints the settings that point the pipeline at them. The object store
needs LAKEHOUSE_S3_SECRET_KEY in the environment: the same variable the jobs read.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Callable

from lakehouse.local import kafka_cluster, object_store, spark_cluster
from lakehouse.local.daemon import EXIT_NOT_RUNNING, command_line
from lakehouse.platform.config import Config, ConfigError

log = logging.getLogger("lakehouse.local.cluster")

FAILURES = (object_store.ObjectStoreError, spark_cluster.ClusterError, kafka_cluster.ClusterError, ConfigError)


@dataclass(frozen=True)
class Part:
    name: str
    start: Callable[[], str]
    stop: Callable[[], bool]
    running: Callable[[], bool]


def parts(cfg: Config) -> list[Part]:
    store = object_store.StoreSettings.from_config(cfg)
    spark = spark_cluster.ClusterSettings.from_config(cfg)
    kafka = kafka_cluster.KafkaClusterSettings.from_config(cfg)
    return [
        Part("object store", lambda: object_store.start(store), lambda: object_store.stop(store),
             lambda: object_store.running_pid(store) is not None),
        Part("Spark", lambda: spark_cluster.start(spark), lambda: spark_cluster.stop(spark),
             lambda: all(spark_cluster.status(spark).values())),
        Part("Kafka", lambda: kafka_cluster.start(kafka), lambda: kafka_cluster.stop(kafka),
             lambda: all(kafka_cluster.status(kafka).values())),
    ]


def settings_for(cfg: Config) -> list[str]:
    """The environment that points the pipeline's scripts at the local cluster (secret left to the user)."""
    store = object_store.StoreSettings.from_config(cfg)
    spark = spark_cluster.ClusterSettings.from_config(cfg)
    kafka = kafka_cluster.KafkaClusterSettings.from_config(cfg)
    lake = cfg.paths.lake if (cfg.paths.lake or "").startswith("s3a://") else f"s3a://{store.bucket}/lake"
    return [f"export LAKEHOUSE_SPARK_MASTER={spark.master_url} LAKEHOUSE_SPARK_CORES_MAX=1 "
            "LAKEHOUSE_SPARK_JARS_ON_WORKERS=true",
            f"export LAKEHOUSE_PATHS_LAKE={lake} LAKEHOUSE_S3_ENDPOINT={store.endpoint}",
            f"export LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap} LAKEHOUSE_KAFKA_REPLICATION_FACTOR=3"]


def start(cfg: Config) -> None:
    """Start every part that does not run; on a failure, stop what this call started and raise."""
    started: list[Part] = []
    for part in parts(cfg):
        was_running = part.running()
        try:
            part.start()
        except FAILURES:
            for done in reversed(started):
                done.stop()
            raise
        if not was_running:
            started.append(part)


def stop(cfg: Config) -> None:
    for part in reversed(parts(cfg)):
        part.stop()


def main(argv: list[str] | None = None) -> int:
    return command_line("The local cluster: object store, Spark standalone, three Kafka nodes.", run_command, argv)


def run_command(action: str, cfg: Config) -> int:
    """Carry out ``start``, ``stop`` or ``status``; returns the exit code."""
    try:
        if action == "start":
            start(cfg)
            print("The local cluster runs. Point the pipeline at it (and export LAKEHOUSE_S3_SECRET_KEY):")
            print("\n".join(settings_for(cfg)))
            return 0
        if action == "stop":
            stop(cfg)
            return 0
        states = {part.name: part.running() for part in parts(cfg)}
    except FAILURES as e:
        log.error("%s", e)
        return 1
    for name, running in states.items():
        print(f"{name}: {'running' if running else 'stopped (or partly)'}")
    return 0 if all(states.values()) else EXIT_NOT_RUNNING


if __name__ == "__main__":
    sys.exit(main())
