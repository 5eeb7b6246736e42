"""The local Spark standalone cluster (python -m lakehouse.local.spark_cluster): it starts, says so,
starts again without a second copy, refuses a taken port with one line, names a worker that cannot start,
runs the Bronze job unchanged (only [spark] master and cores_max set) and stops leaving no process behind.
Under one running stream: a worker killed with its executor costs no sale and doubles none (the job gets an
executor on the other); the last worker killed stops the job in one line instead of a wait for ever; the
workers back, the next start finishes the work exactly once."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakehouse.local.spark_cluster import ClusterError, ClusterSettings, running_pid, start, status, stop
from lakehouse.platform.spark_jars import beside_spark
from tests.conftest import PROJECT_DIR, free_port, make_config, produce, wait_for, write_config


def sale(i: int) -> bytes:
    return json.dumps({"vente_id": f"V{i}", "client_id": f"C{i % 7}", "produit_id": "P1",
                       "timestamp": "2026-11-27T10:00:00+00:00", "quantite": 1, "montant": 10.5,
                       "client_nom": "Nom", "produit_nom": "Lampe", "categorie": "Maison", "pays": "France",
                       "segment": "B2C"}).encode()


def test_a_taken_master_port_is_refused_with_one_line(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = ClusterSettings.from_config(make_config(tmp_path / "data", cluster__spark_master_port=port))
        with pytest.raises(ClusterError, match=f"Port {port} on 127.0.0.1 is already in use"):
            start(settings)
    assert status(settings) == {"spark-master": None, "spark-worker-1": None, "spark-worker-2": None}


def test_a_worker_that_cannot_start_is_named_with_its_log_and_nothing_is_left(tmp_path) -> None:
    cfg = make_config(tmp_path / "data", cluster__spark_master_port=free_port(), cluster__start_timeout="30 seconds")
    settings = dataclasses.replace(ClusterSettings.from_config(cfg), worker_memory="0m")  # Spark refuses it
    with pytest.raises(ClusterError, match=r"spark-worker-1 exited with code \d+ while starting; last lines of .*"
                                           r"spark-worker-1\.log"):
        start(settings)
    assert status(settings) == dict.fromkeys(settings.names())  # the master it had started was stopped too


def test_settings_come_from_the_configuration(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "data", cluster__spark_workers=3, cluster__spark_worker_memory="512m")
    settings = ClusterSettings.from_config(cfg)
    assert settings.names() == ["spark-master", "spark-worker-1", "spark-worker-2", "spark-worker-3"]
    assert settings.worker_memory == "512m" and settings.state_dir == tmp_path / "data" / "cluster" / "spark"
    assert settings.log_file("spark-master") == tmp_path / "data" / "logs" / "cluster" / "spark-master.log"


def test_jars_loaded_ahead_of_spark_leave_out_those_holding_any_of_its_classes(tmp_path: Path) -> None:
    """With [spark] jars_on_workers the resolved jars go ahead of Spark's own: one that holds a class Spark
    ships (another jackson-databind) would replace it, so it is left out; the choice is kept beside the list."""
    def jar(name: str, *classes: str) -> str:
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for c in classes:
                z.writestr(c, b"")
        return str(tmp_path / name)

    ours = jar("io.delta_delta-spark-9.9.jar", "io/delta/Only.class", "org/apache/spark/unused/UnusedStubClass.class")
    older = jar("com.fasterxml.jackson.core_jackson-databind-2.13.5.jar", "io/other/Fine.class",
                "com/fasterxml/jackson/databind/ObjectMapper.class")
    listing = tmp_path / "jars.txt"
    assert beside_spark([ours, older], listing) == [ours]
    assert (tmp_path / "jars.txt.beside-spark").read_text().split() == [ours]
    assert beside_spark([ours, older], listing) == [ours]  # read back, not worked out again


def bronze_ids(path: Path) -> list[str]:
    """The sales in Bronze now (read without Spark, so that the test's session does not compete)."""
    try:
        return DeltaTable(str(path)).to_pyarrow_table(columns=["vente_id"]).column("vente_id").to_pylist()
    except Exception:  # not created yet
        return []


def executors(settings: ClusterSettings, worker: int) -> list[Path]:
    """The executors a worker has run (its work folder holds one folder per application and executor)."""
    return list((settings.state_dir / f"spark-worker-{worker}-work").glob("app-*/*"))


def test_the_bronze_job_on_the_cluster_outlives_a_worker_stops_without_any_and_resumes_exactly(
        kafka_bootstrap, topic, tmp_path) -> None:
    """One cluster, one stream, three events: a worker killed under it (the job goes on with the other), the
    last worker killed (the job stops in one line instead of waiting for ever), the workers back (the next
    start takes up where the checkpoint says). Each sale once in Bronze, each record read once."""
    port = free_port()
    cfg = make_config(tmp_path / "data", cluster__spark_master_port=port, kafka__bootstrap_servers=kafka_bootstrap,
                      kafka__topic=topic)
    settings = ClusterSettings.from_config(cfg)
    # Only [spark] master and cores_max differ from a single-machine run (executor_wait shortened here, but
    # not below what a new executor takes to start on the other worker while the machine is busy: a shorter
    # wait failed in CI).
    config = write_config(tmp_path / "config.ini", cfg, spark={"master": f"spark://127.0.0.1:{port}", "cores_max": 1,
                                                               "executor_wait": "30 seconds"},
                          streaming={"metrics_interval": "0 seconds"})
    bronze_path = tmp_path / "data" / "delta" / "bronze" / "ventes"
    log = tmp_path / "bronze.log"
    try:
        assert start(settings) == f"spark://127.0.0.1:{port}"
        pids = status(settings)
        assert all(pids.values()) and len(pids) == 3
        start(settings)  # again: nothing more starts
        assert status(settings) == pids
        with open(log, "wb") as out:
            job = subprocess.Popen([sys.executable, "spark_streaming_delta.py", "--config", str(config)],
                                   cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT)
        try:
            produce(kafka_bootstrap, topic, [(f"C{i % 7}", sale(i)) for i in range(1000)])
            wait_for(lambda: bronze_ids(bronze_path) or job.poll() is not None, 180, "the first sales in Bronze")
            assert job.poll() is None, log.read_text()[-3000:]
            # The job's one executor (cores_max = 1) runs on a worker, not in the driver.
            (victim,) = [w for w in (1, 2) if executors(settings, w)]
            assert len(executors(settings, victim)) == 1
            # That worker goes, with its executor (the whole process group): the job gets the other one.
            os.killpg(running_pid(settings, f"spark-worker-{victim}"), signal.SIGKILL)
            produce(kafka_bootstrap, topic, [(f"C{i % 7}", sale(i)) for i in range(1000, 2000)])
            wait_for(lambda: len(bronze_ids(bronze_path)) >= 2000 or job.poll() is not None, 300,
                     "every sale in Bronze after a worker was killed")
            assert job.poll() is None, log.read_text()[-3000:]
            survivor = 3 - victim
            assert executors(settings, survivor), "the job got an executor on the other worker"
            # The last worker goes. Before: the job waited for ever, and a SIGTERM left it hanging. Now: one
            # line, exit 1, no Python traceback, no JVM left.
            os.killpg(running_pid(settings, f"spark-worker-{survivor}"), signal.SIGKILL)
            produce(kafka_bootstrap, topic, [(f"C{i % 7}", sale(i)) for i in range(2000, 2300)])
            assert job.wait(90) == 1, log.read_text()[-3000:]
        finally:
            if job.poll() is None:
                job.kill()
        said = log.read_text()
        assert "No Spark executor for 30 s on spark://127.0.0.1" in said and "Traceback" not in said, said[-3000:]
        assert not subprocess.run(["pgrep", "-f", str(config)], capture_output=True).stdout
        start(settings)  # the workers back: the next start takes up where the checkpoint says
        result = subprocess.run([sys.executable, "spark_streaming_delta.py", "--available-now", "--config",
                                 str(config)], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        stop(settings)
    assert status(settings) == dict.fromkeys(pids)
    assert all(running_pid(settings, name) is None for name in settings.names())
    assert not subprocess.run(["pgrep", "-f", str(settings.state_dir)], capture_output=True).stdout
    result = subprocess.run([sys.executable, "-m", "lakehouse.local.spark_cluster", "status", "--config",
                             str(config)], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "spark-master: stopped" in result.stdout
    ids = bronze_ids(bronze_path)
    assert len(ids) == len(set(ids)) == 2300
    metrics = DeltaTable(str(tmp_path / "data" / "delta" / "monitoring" / "bronze_metrics")).to_pyarrow_table(
        columns=["input_rows", "duplicate_rows"]).to_pylist()
    # Every record read once: the batch the last kill interrupted was replayed, not read twice.
    assert sum(m["input_rows"] for m in metrics) == 2300 and sum(m["duplicate_rows"] for m in metrics) == 0
