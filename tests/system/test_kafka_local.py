"""The local broker launcher users run: start/stop/status idempotence, errors, wipe."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.local.kafka_broker import BrokerError, BrokerSettings, broker_answers, running_pid, start, stop, wipe
from lakehouse.platform.config import PROJECT_DIR
from tests.conftest import free_kafka_base, free_port, make_config, write_config
from tests.support.jvm_archive import SERVICE_FLAGS


def launcher(config: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lakehouse.local.kafka_broker", command, "--config", str(config)],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=180)


def test_start_stop_status_are_idempotent(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_OPTS", f"{SERVICE_FLAGS} -Dlakehouse.test=kafka-opts")
    port, controller = free_port(), free_port()
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=f"localhost:{port}",
                      kafka__controller_port=controller)
    config = write_config(tmp_path / "config.ini", cfg, kafka={"controller_port": controller})
    try:
        assert launcher(config, "status").returncode == 3
        assert launcher(config, "stop").returncode == 0  # stop while stopped is fine
        first = launcher(config, "start")
        assert first.returncode == 0, first.stderr
        pid = running_pid(BrokerSettings.from_config(cfg))
        assert pid is not None and broker_answers(f"localhost:{port}", 5.0)
        # KAFKA_OPTS reaches the broker's JVM, after the heap and collector.
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        assert args[args.index("-XX:+UseG1GC") + 1:][:3] == [*SERVICE_FLAGS.split(), "-Dlakehouse.test=kafka-opts"]
        again = launcher(config, "start")  # start while running: same broker, no second one
        assert again.returncode == 0 and "already running" in again.stderr
        assert running_pid(BrokerSettings.from_config(cfg)) == pid
        status = launcher(config, "status")
        assert status.returncode == 0 and f"running (pid {pid})" in status.stdout
        assert "Stop the broker before wiping" in launcher(config, "wipe").stderr
        assert launcher(config, "stop").returncode == 0
        assert running_pid(BrokerSettings.from_config(cfg)) is None
        assert not broker_answers(f"localhost:{port}", 1.0)
        assert (tmp_path / "data" / "kafka" / "kraft-logs" / "meta.properties").exists()  # data kept
        assert launcher(config, "wipe").returncode == 0
        assert not (tmp_path / "data" / "kafka").exists()
    finally:
        stop(BrokerSettings.from_config(cfg))


def test_start_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("localhost", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=f"localhost:{port}",
                          kafka__controller_port=free_port())
        with pytest.raises(BrokerError, match=f"Port {port} on localhost is already in use"):
            start(BrokerSettings.from_config(cfg))


def test_kafka_opts_that_cannot_be_split_are_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    from lakehouse.local.kafka_cluster import ClusterError, KafkaClusterSettings
    from lakehouse.local.kafka_cluster import start as start_cluster

    monkeypatch.setenv("KAFKA_OPTS", '-Dname="unclosed -Dssl.password=s3cret')
    controller = free_port()
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=f"localhost:{free_port()}",
                      kafka__controller_port=controller)
    result = launcher(write_config(tmp_path / "config.ini", cfg, kafka={"controller_port": controller}), "start")
    said = result.stderr.strip()
    assert result.returncode != 0 and len(said.splitlines()) == 1, said
    assert "KAFKA_OPTS cannot be split into JVM options: No closing quotation" in said and "s3cret" not in said
    assert not (tmp_path / "data" / "kafka").exists()  # nothing prepared
    with pytest.raises(ClusterError, match="KAFKA_OPTS cannot be split"):  # the cluster's nodes alike
        start_cluster(KafkaClusterSettings.from_config(make_config(tmp_path / "c",
                                                                   cluster__kafka_base_port=free_kafka_base())))
    assert not list((tmp_path / "c").rglob("*.properties"))


def test_wipe_when_nothing_exists_is_fine(tmp_path: Path) -> None:
    # A data folder whose broker never started: nothing of Kafka's to delete, and the tables beside it stay.
    settings = BrokerSettings.from_config(make_config(tmp_path / "data"))
    table = tmp_path / "data" / "delta" / "bronze" / "ventes" / "_delta_log" / "00000000000000000000.json"
    table.parent.mkdir(parents=True)
    table.write_text("{}\n", encoding="utf-8")
    assert not settings.data_dir.exists() and running_pid(settings) is None
    wipe(settings)
    wipe(settings)  # twice: still nothing to do
    assert not settings.data_dir.exists()
    assert table.read_text(encoding="utf-8") == "{}\n"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "data", "data/delta", "data/delta/bronze", "data/delta/bronze/ventes", "data/delta/bronze/ventes/_delta_log",
        "data/delta/bronze/ventes/_delta_log/00000000000000000000.json"]  # nothing created either
