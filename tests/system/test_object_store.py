"""The lake on S3-compatible object storage (s3proxy, python -m lakehouse.local.object_store).

The launcher starts, starts again without a second copy, keeps anonymous clients out, refuses a taken
port and a missing secret in one line, stops. The lake's locations answer the pipeline's questions over
S3. And the whole pipeline on the local cluster one command starts and stops (the object store, Spark
standalone, three Kafka nodes) — the producer with faults, the Bronze stream on the Spark cluster writing into
the object store while its own upkeep compacts Bronze under load, Silver, the report — gives exactly the
tables and the report a single-machine run on a local folder gives on the same input.
The lake's settings and the upkeep each kind of lake allows: tests/integration/test_lake.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakehouse.local.object_store import ObjectStoreError, StoreSettings, running_pid, start, stop
from lakehouse.local.spark_cluster import ClusterSettings
from lakehouse.platform.config import ConfigError
from lakehouse.platform.lake import ObjectPath, S3Settings, remove_tree
from lakehouse.platform.paths import Paths
from tests.conftest import PROJECT_DIR, free_kafka_base, free_port, make_config, wait_for, write_config

SECRET = "test-secret-key-5ef1"
ENV = {"LAKEHOUSE_S3_SECRET_KEY": SECRET}


def store_config(data_dir: Path, port: int, lake: str = "s3a://lakehouse/lake", env: dict | None = None,
                 **overrides: object):
    return make_config(data_dir, env=env or ENV, s3__endpoint=f"http://127.0.0.1:{port}", paths__lake=lake,
                       **overrides)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One object store for the module's tests (each test uses a prefix of its own)."""
    cfg = store_config(tmp_path_factory.mktemp("store"), free_port())
    settings = StoreSettings.from_config(cfg)
    start(settings)
    yield cfg, settings
    stop(settings)


def status_code(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


# --- the launcher and the store ----------------------------------------------------------------------

def test_the_store_starts_once_keeps_strangers_out_and_stops(tmp_path) -> None:
    port = free_port()
    cfg = store_config(tmp_path / "data", port)
    settings = StoreSettings.from_config(cfg)
    try:
        assert start(settings) == f"http://127.0.0.1:{port}"
        pid = running_pid(settings)
        assert pid is not None and start(settings) == settings.endpoint and running_pid(settings) == pid
        assert oct(settings.properties_file.stat().st_mode & 0o777) == "0o600"  # it holds the secret
        other = StoreSettings.from_config(store_config(tmp_path / "data", port,
                                                       env={"LAKEHOUSE_S3_SECRET_KEY": "x" * 12}))
        with pytest.raises(ObjectStoreError, match="another key pair"):  # its clients would all be refused
            start(other)
        lake = ObjectPath.from_uri("s3a://lakehouse/t", S3Settings.from_config(cfg))
        (lake / "a.txt").write_bytes(b"sales")
        blob = settings.blobs / "lakehouse" / "t" / "a.txt"
        assert blob.read_bytes() == b"sales" and blob.stat().st_mode & 0o077 == 0
        # Without the key pair: no listing, no object, no write.
        assert status_code(f"{settings.endpoint}/lakehouse/") == 403
        assert status_code(f"{settings.endpoint}/lakehouse/t/a.txt") == 403
        put = urllib.request.Request(f"{settings.endpoint}/lakehouse/t/b.txt", data=b"x", method="PUT")
        assert status_code(put) == 403
        wrong = S3Settings.from_config(make_config(tmp_path, env={"LAKEHOUSE_S3_SECRET_KEY": "not-the-key"},
                                                   s3__endpoint=settings.endpoint, paths__lake="s3a://lakehouse/t"))
        with pytest.raises(OSError):
            ObjectPath.from_uri("s3a://lakehouse/t", wrong).read_text()  # a fresh client: its own key
    finally:
        assert stop(settings)
    assert running_pid(settings) is None and not stop(settings)
    result = subprocess.run([sys.executable, "-m", "lakehouse.local.object_store", "status", "--config",
                             str(write_config(tmp_path / "c.ini", cfg, s3={"endpoint": settings.endpoint},
                                              paths={"lake": "s3a://lakehouse/lake"}))],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, env=dict(os.environ, **ENV))
    assert result.returncode == 3 and "s3proxy: stopped" in result.stdout


def test_a_taken_port_and_a_missing_secret_are_refused_in_one_line(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = StoreSettings.from_config(store_config(tmp_path / "data", port))
        with pytest.raises(ObjectStoreError, match=f"Port {port} on 127.0.0.1 is already in use"):
            start(settings)
    cfg = make_config(tmp_path / "d2", s3__endpoint=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ObjectStoreError, match="LAKEHOUSE_S3_SECRET_KEY"):
        start(StoreSettings.from_config(cfg))
    with pytest.raises(ConfigError, match="127.0.0.1:<port> only"):
        StoreSettings.from_config(make_config(tmp_path, s3__endpoint="http://example.com:9000"))


def test_lake_locations_answer_over_s3(store) -> None:
    cfg, _ = store
    root = ObjectPath.from_uri("s3a://lakehouse/paths-test", S3Settings.from_config(cfg))
    table = root / "delta" / "t"
    assert not table.exists() and table.glob("*.json") == []
    (table / "_delta_log" / "00000000000000000000.json").write_bytes(b"{}\n")
    (table / "_delta_log" / "00000000000000000001.json").write_bytes(b"{}\n")
    (table / "_delta_log" / "_last_checkpoint").write_bytes(b"{}")
    assert table.is_dir() and table.exists() and (table / "_delta_log" / "00000000000000000001.json").is_file()
    assert sorted(p.name for p in (table / "_delta_log").glob("*.json")) == [
        "00000000000000000000.json", "00000000000000000001.json"]
    assert (table / "_delta_log" / "_last_checkpoint").read_text() == "{}"
    assert table.parent == root / "delta" and table.name == "t"
    remove_tree(root / "delta")
    assert not root.exists() or root.iterdir() == []
    remove_tree(root / "never-was")  # nothing to remove: no error


# --- the whole pipeline on the cluster and the object store ------------------------------------------

def run(args: list[str], config: Path, log: Path, timeout: float = 600) -> None:
    with open(log, "ab") as out:
        result = subprocess.run([sys.executable, *args, "--config", str(config)], cwd=PROJECT_DIR, stdout=out,
                                stderr=subprocess.STDOUT, timeout=timeout, env=dict(os.environ, **ENV))
    assert result.returncode == 0, log.read_text()[-3000:]


def table_rows(path, columns: list[str] | None = None) -> list[tuple]:
    """Every row of a Delta table (read with delta-rs, the reader without a JVM), sorted."""
    options = path.settings.delta_rs_options() if isinstance(path, ObjectPath) else None
    table = DeltaTable(str(path), storage_options=options).to_pyarrow_table(columns=columns)
    return sorted(tuple(row.values()) for row in table.to_pylist())


# Columns that say when and by which run a row was written: they differ between any two runs. And is_late,
# which compares a sale with the watermark of the batches before its own: a stream that reads the input in
# many batches and a drain that reads it in one flag different sales (everything else is the same).
RUN_COLUMNS = {"ingestion_ts", "bronze_query_id", "bronze_batch_id", "updated_at", "is_late"}
# The report's sections that hold the data (the others show the runs: batches, table versions, paths);
# the quarantine and duplicates counts also say when the first and last such record was ingested.
DATA_SECTIONS = ["Overview", "Top clients (10)", "Revenue by country", "Revenue by segment", "Daily revenue",
                 "Quarantine by reason", "Duplicates (records repeating a kept sale)"]
INGESTION_TIMES = {"Quarantine by reason", "Duplicates (records repeating a kept sale)"}


def sections(markdown: str) -> dict[str, str]:
    parts = markdown.split("\n## ")[1:]
    found = {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts}
    return {title: re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<time>", text) if title in INGESTION_TIMES else text
            for title, text in found.items()}


def comparable(path) -> list[tuple]:
    options = path.settings.delta_rs_options() if isinstance(path, ObjectPath) else None
    names = [f.name for f in DeltaTable(str(path), storage_options=options).schema().fields]
    return table_rows(path, [n for n in names if n not in RUN_COLUMNS])


PAGE_FIGURES = ["Sales", "Revenue", "Clients", "Loyal clients", "Average basket", "Rows in Bronze", "Quarantined",
                "Duplicates"]


def run_page(config: Path, monkeypatch):
    """The web page, run once in this process (Streamlit's AppTest) with this configuration file."""
    import streamlit
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LAKEHOUSE_CONFIG", str(config))
    monkeypatch.setenv("LAKEHOUSE_S3_SECRET_KEY", SECRET)
    streamlit.cache_resource.clear()  # the configuration is read once per server
    at = AppTest.from_file(str(PROJECT_DIR / "streamlit_dashboard.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_figures(config: Path, monkeypatch) -> dict[str, str]:
    figures = {m.label: m.value for m in run_page(config, monkeypatch).metric}
    return {label: figures.get(label) for label in PAGE_FIGURES}


def cluster_cli(action: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lakehouse.local.cluster", action, "--config", str(config)],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=240, env=dict(os.environ, **ENV))


def test_the_pipeline_on_the_local_cluster_gives_the_single_machine_tables(spark, tmp_path, monkeypatch) -> None:
    """README's cluster path end to end: one command starts the object store, the Spark standalone cluster and
    three Kafka nodes and prints the settings that point the pipeline at them; the producer with every kind of
    fault → the Bronze stream on the Spark cluster writing into the object store, its own upkeep compacting
    Bronze while batches commit → Silver on the cluster → the report. That gives exactly the tables, the
    report and the web page of a single-machine run on a local folder over the same topic; the same command
    stops everything, leaving no process."""
    from lakehouse.bronze.stream import start_bronze_stream
    from lakehouse.local.kafka_cluster import KafkaClusterSettings
    from lakehouse.platform.topics import ensure_topic
    from lakehouse.serve.queries import Lakehouse
    from lakehouse.serve.report import build_report, write_report_files
    from lakehouse.silver.job import run_silver
    from lakehouse.silver.transforms import ClientRules

    topic, lake = "ventes_pipeline", "s3a://lakehouse/pipeline"
    s3_port, master_port, kafka_base = free_port(), free_port(), free_kafka_base()

    def configured(**more: object):
        return store_config(tmp_path / "remote", s3_port, lake=lake, cluster__spark_master_port=master_port,
                            cluster__kafka_base_port=kafka_base, **more)
    servers = KafkaClusterSettings.from_config(configured()).bootstrap
    remote = configured(kafka__bootstrap_servers=servers, kafka__topic=topic, kafka__replication_factor=3)
    store, cluster = StoreSettings.from_config(remote), ClusterSettings.from_config(remote)
    config = write_config(tmp_path / "remote.ini", remote,
                          paths={"lake": lake}, s3={"endpoint": store.endpoint},
                          cluster={"spark_master_port": master_port, "kafka_base_port": kafka_base},
                          kafka={"replication_factor": 3},
                          spark={"master": cluster.master_url, "cores_max": 1, "jars_on_workers": "true"},
                          streaming={"metrics_interval": "0 seconds"},
                          analytics={"upkeep_interval": "4 seconds"},
                          producer={"seed": 11})
    logs = tmp_path / "logs"
    logs.mkdir()
    remote_paths = Paths.from_config(remote)
    status_file = remote_paths.bronze_status
    local = make_config(tmp_path / "local", kafka__bootstrap_servers=servers, kafka__topic=topic)
    local_paths = Paths.from_config(local)
    try:
        started = cluster_cli("start", config)
        assert started.returncode == 0, started.stderr[-3000:]
        # It says how to point the pipeline at it (the settings written above), never the secret.
        for line in (f"LAKEHOUSE_SPARK_MASTER={cluster.master_url} LAKEHOUSE_SPARK_CORES_MAX=1 "
                     "LAKEHOUSE_SPARK_JARS_ON_WORKERS=true", f"LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS={servers} "
                     "LAKEHOUSE_KAFKA_REPLICATION_FACTOR=3", f"LAKEHOUSE_S3_ENDPOINT={store.endpoint}"):
            assert line in started.stdout, started.stdout
        assert SECRET not in started.stdout + started.stderr
        assert cluster_cli("start", config).returncode == 0  # again: nothing more starts
        status = cluster_cli("status", config)
        assert status.returncode == 0 and "object store: running" in status.stdout
        assert ensure_topic(servers, topic, partitions=3, replication_factor=3)
        with open(logs / "bronze.log", "wb") as out:
            bronze = subprocess.Popen([sys.executable, "spark_streaming_delta.py", "--config", str(config)],
                                      cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT,
                                      env=dict(os.environ, **ENV))
        try:
            def read(count: int) -> bool:
                assert bronze.poll() is None, (logs / "bronze.log").read_text()[-3000:]
                try:
                    return json.loads(status_file.read_text())["input_rows_total"] >= count
                except (OSError, ValueError, KeyError):
                    return False

            def bronze_optimized() -> bool:
                assert bronze.poll() is None, (logs / "bronze.log").read_text()[-3000:]
                return any(h["operation"] == "OPTIMIZE" for h in DeltaTable(
                    str(remote_paths.bronze), storage_options=remote_paths.bronze.settings.delta_rs_options()
                ).history())

            # The producer with every kind of fault: a first slice, then, once the stream runs, more at a pace
            # that keeps batches coming until the stream's own upkeep has compacted Bronze (same driver, Delta's
            # log store): so that OPTIMIZE commits while batches do.
            faults = ["--bad-ratio", "0.05", "--duplicate-ratio", "0.05", "--late-ratio", "0.03"]
            run(["producer_ventes.py", "--count", "200", "--max", *faults], config, logs / "producer.log")
            wait_for(lambda: read(200), 300, "the first records read by the Bronze stream on the cluster")
            summary = tmp_path / "producer.json"
            with open(logs / "producer.log", "ab") as out:
                producer = subprocess.Popen(
                    [sys.executable, "producer_ventes.py", "--count", "25000", "--rate", "100", "--seed", "12",
                     *faults, "--summary-json", str(summary), "--config", str(config)],
                    cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, **ENV))
            try:
                wait_for(lambda: bronze_optimized() or producer.poll() is not None, 150,
                         "an OPTIMIZE of Bronze by the stream's own upkeep")
                assert bronze_optimized(), "the producer ended before the stream's upkeep compacted Bronze"
            finally:
                producer.send_signal(signal.SIGTERM)  # it sends what it generated, then says how many
                assert producer.wait(60) == 0, (logs / "producer.log").read_text()[-3000:]
            sent = 200 + json.loads(summary.read_text())["delivered"]
            wait_for(lambda: read(sent), 300, "every record read by the Bronze stream on the cluster")
        finally:
            bronze.send_signal(signal.SIGTERM)
            assert bronze.wait(180) == 0, (logs / "bronze.log").read_text()[-3000:]
        run(["streaming_silver.py", "--no-dashboard"], config, logs / "silver.log")
        run(["query_utils.py", "--batch", "--out", str(tmp_path / "remote-report")], config, logs / "report.log")
        # The three jobs' executors loaded the jars from the cache where the driver did: no copies.
        work = list(cluster.state_dir.glob("spark-worker-*-work/app-*/*"))
        assert work and not [p for folder in work for p in folder.glob("*.jar")], work

        # The same input on one machine, a local folder: the tests' own Spark session (Kafka still up).
        start_bronze_stream(spark, local, local_paths, available_now=True).awaitTermination()
        run_silver(spark, ClientRules.from_config(local), local_paths)
        report = build_report(Lakehouse(spark, local_paths), datetime.now())
        local_md = write_report_files(report, tmp_path / "local-report").read_text(encoding="utf-8")

        for table in ("bronze", "quarantine", "duplicates"):
            assert comparable(getattr(remote_paths, table)) == comparable(getattr(local_paths, table)), table
        for name in ("clients", "pays", "segments", "ventes_jour"):
            assert comparable(remote_paths.silver(name)) == comparable(local_paths.silver(name)), name
        bronze_ids = table_rows(remote_paths.bronze, ["vente_id"])
        assert len(bronze_ids) == len(set(bronze_ids)) > 0.8 * sent  # each sale once; faults elsewhere
        remote_md = sections((tmp_path / "remote-report" / "report.md").read_text(encoding="utf-8"))
        local_md = sections(local_md)
        for title in DATA_SECTIONS:
            assert remote_md[title] == local_md[title], title
        # The web page (delta-rs, no JVM) shows the same figures from either lake.
        local_ini = write_config(tmp_path / "local.ini", local)
        remote_page, local_page = page_figures(config, monkeypatch), page_figures(local_ini, monkeypatch)
        assert remote_page == local_page and remote_page["Sales"] == f"{len(bronze_ids):,}"
    finally:
        stopped = cluster_cli("stop", config)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    status = cluster_cli("status", config)
    assert status.returncode == 3 and "object store: stopped" in status.stdout, status.stdout
    assert not subprocess.run(["pgrep", "-f", str(tmp_path / "remote")], capture_output=True).stdout
    # The store gone, the page says so in one line (no traceback) instead of figures.
    at = run_page(config, monkeypatch)
    assert any("cannot be read" in e.value for e in at.error), [e.value for e in at.error]
