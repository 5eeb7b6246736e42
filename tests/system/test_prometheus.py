"""Prometheus for real: the shipped alert rules and scrape configuration pass promtool, and a real Prometheus
scraping a running Bronze stream and paced producer sees the series, agrees with the metrics table, and puts
the "no progress" alert in pending or firing when the Bronze stream stops while the producer still sends.

Debian's prometheus package provides both binaries (.ci/run installs it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakehouse.ingest.contract import REASONS
from lakehouse.ops.prometheus import RULES_FILE, SHIPPED_CONFIG, scrape_config
from lakehouse.platform.config import PROJECT_DIR, load_config
from lakehouse.platform.paths import Paths
from tests.conftest import free_port, make_config, wait_for, write_config


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed: apt-get install prometheus (.ci/run installs it)"
    return found


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = subprocess.run([tool("promtool"), "check", "rules", str(RULES_FILE)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([tool("promtool"), "test", "rules", "monitoring/alerts_test.yml"], cwd=PROJECT_DIR,
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_shipped_scrape_configuration_is_the_default_settings_one_and_valid() -> None:
    defaults = load_config(PROJECT_DIR / "config.ini", env={})
    assert SHIPPED_CONFIG.read_text(encoding="utf-8") == scrape_config(defaults, "alerts.yml")
    checked = subprocess.run([tool("promtool"), "check", "config", str(SHIPPED_CONFIG)], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("interval, written", [("5 seconds", "5s"), ("1.5 s", "1500ms"), ("2 min", "2m"),
                                               ("90 s", "90s")])
def test_the_scrape_interval_is_written_in_prometheus_duration_syntax(tmp_path: Path, interval: str,
                                                                      written: str) -> None:
    text = scrape_config(make_config(tmp_path, monitoring__scrape_interval=interval), "alerts.yml")
    assert f"  scrape_interval: {written}\n" in text and f"  evaluation_interval: {written}\n" in text
    (tmp_path / "alerts.yml").write_text(RULES_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "prometheus.yml").write_text(text, encoding="utf-8")
    checked = subprocess.run([tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_endpoint_turned_off_is_not_scraped(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, monitoring__metrics_port_bronze=9481, monitoring__metrics_address="0.0.0.0")
    text = scrape_config(cfg, "alerts.yml")
    assert "job_name: lakehouse_bronze" in text and "'127.0.0.1:9481'" in text  # every interface: via loopback
    assert "lakehouse_silver" not in text and "lakehouse_producer" not in text  # ports 0 (the tests' default)


class PromQL:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}/api/v1"

    def get(self, path: str, **params: str) -> object:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.base}/{path}{query}", timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def values(self, expr: str) -> list[tuple[dict, float]]:
        return [(r["metric"], float(r["value"][1])) for r in self.get("query", query=expr)["result"]]

    def one(self, expr: str) -> float | None:
        found = self.values(expr)
        assert len(found) <= 1, found
        return found[0][1] if found else None

    def alert_state(self, name: str) -> str | None:
        states = [a["state"] for a in self.get("alerts")["alerts"] if a["labels"]["alertname"] == name]
        return states[0] if states else None


def stop(proc: subprocess.Popen, timeout: float = 120) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_prometheus_scrapes_the_jobs_agrees_with_the_metrics_table_and_alerts_when_bronze_stops(
        kafka_bootstrap, topic, tmp_path) -> None:
    bronze_port, producer_port, prometheus_port = free_port(), free_port(), free_port()
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic,
                      monitoring__metrics_port_bronze=bronze_port, monitoring__metrics_port_producer=producer_port,
                      monitoring__prometheus_port=prometheus_port)
    # Prometheus as make monitoring starts it, reading the jobs every second here instead of every 5 s.
    config = write_config(tmp_path / "job.ini", cfg, streaming={"metrics_interval": "0 seconds"},
                          monitoring={"metrics_port_bronze": bronze_port, "metrics_port_producer": producer_port,
                                      "prometheus_port": prometheus_port, "scrape_interval": "1 second"})
    paths = Paths.from_config(cfg)
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, command: list[str]) -> subprocess.Popen:
        with open(logs / f"{name}.log", "ab") as out:
            return subprocess.Popen(command, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)

    def producer(seed: int) -> subprocess.Popen:
        return start("producer", [sys.executable, "producer_ventes.py", "--rate", "40", "--seed", str(seed),
                                  "--bad-ratio", "0.1", "--duplicate-ratio", "0.05", "--summary-json",
                                  str(tmp_path / f"producer{seed}.json"), "--config", str(config)])

    tool("prometheus")
    prometheus = start("prometheus", [sys.executable, "-m", "lakehouse.ops.prometheus", "--config", str(config)])
    bronze = start("bronze", [sys.executable, "spark_streaming_delta.py", "--config", str(config)])
    sender = producer(1)
    promql = PromQL(prometheus_port)
    try:
        def scraped(expr: str, minimum: float = 0) -> bool:
            for name, proc in (("bronze", bronze), ("prometheus", prometheus)):
                assert proc.poll() is None, (logs / f"{name}.log").read_text()[-3000:]
            try:
                value = promql.one(expr)
            except OSError:  # Prometheus still starting
                return False
            return value is not None and value > minimum

        wait_for(lambda: scraped("lakehouse_bronze_input_records_total", 100), 300,
                 "Prometheus to scrape the Bronze stream's first batches")
        # Every series the issue names, under its conventional name and bounded labels (the lag comes with the
        # stream's progress report, just after the batch's own figures).
        expected = ("lakehouse_bronze_rows_written_total", "lakehouse_bronze_quarantine_reasons_total",
                     "lakehouse_bronze_duplicate_records_total", "lakehouse_bronze_conflicting_ids_total",
                     "lakehouse_bronze_late_sales_total", "lakehouse_bronze_batch_duration_seconds_bucket",
                     "lakehouse_bronze_produce_to_commit_seconds_bucket", "lakehouse_bronze_kafka_lag_records",
                     "lakehouse_bronze_kafka_lag_seconds", "lakehouse_bronze_watermark_timestamp_seconds",
                     "lakehouse_bronze_seconds_since_last_commit", "lakehouse_bronze_dedup_state_entries",
                     "lakehouse_bronze_driver_resident_memory_bytes", "lakehouse_bronze_jvm_heap_used_bytes",
                     "lakehouse_producer_records_generated_total", "lakehouse_producer_records_delivered_total",
                     "lakehouse_producer_records_failed_total", "lakehouse_producer_records_unsent",
                     'up{job="lakehouse_bronze"}', 'up{job="lakehouse_producer"}')
        wait_for(lambda: all(promql.values(expr) for expr in expected), 30,
                 f"every series: {[e for e in expected if not promql.values(e)]}")
        assert {m["partition"] for m, _ in promql.values("lakehouse_bronze_kafka_lag_records")} == {"0", "1", "2"}
        assert {m["reason"] for m, _ in promql.values("lakehouse_bronze_quarantine_reasons_total")} <= set(REASONS)

        # The producer stops; once Bronze has read everything and Prometheus has scraped it since, its
        # counters equal the metrics table's sums.
        stop(sender, 60)
        delivered = json.loads((tmp_path / "producer1.json").read_text())["delivered"]
        status = paths.bronze_status
        wait_for(lambda: json.loads(status.read_text())["input_rows_total"] >= delivered, 120,
                 "Bronze to read every delivered record")
        wait_for(lambda: promql.one("lakehouse_bronze_input_records_total") == delivered, 30,
                 "Prometheus to scrape the stream after its last batch")
        metrics = DeltaTable(str(paths.bronze_metrics)).to_pyarrow_table().to_pylist()
        table = {k: sum(r[k] for r in metrics) for k in ("input_rows", "bronze_rows", "quarantined_rows",
                                                           "duplicate_rows", "late_rows")}
        assert table["input_rows"] == delivered
        assert promql.one('lakehouse_bronze_rows_written_total{table="ventes"}') == table["bronze_rows"]
        assert promql.one("lakehouse_bronze_quarantined_records_total") == table["quarantined_rows"] > 0
        assert promql.one("lakehouse_bronze_duplicate_records_total") == table["duplicate_rows"] > 0
        assert promql.one("lakehouse_bronze_late_sales_total") == table["late_rows"]
        assert promql.one("lakehouse_bronze_batches_total") == len(metrics)
        assert promql.one("lakehouse_bronze_produce_to_commit_seconds_count") == table["input_rows"]
        wait_for(lambda: promql.one("sum(lakehouse_bronze_kafka_lag_records)") == 0, 30,
                 "the lag of the stream's last progress report to reach Prometheus")
        assert promql.alert_state("LakehouseBronzeNoProgress") is None

        # The producer sends again and Bronze stops: the alert goes pending (it fires after its minute).
        sender = producer(2)
        wait_for(lambda: (promql.one("rate(lakehouse_producer_records_delivered_total[2m])") or 0) > 0, 60,
                 "Prometheus to see the producer deliver again")
        stop(bronze)
        wait_for(lambda: promql.alert_state("LakehouseBronzeNoProgress") in ("pending", "firing"), 60,
                 "the no-progress alert once Bronze stopped")
        assert promql.one('up{job="lakehouse_bronze"}') == 0
    finally:
        for proc in (sender, bronze, prometheus):
            stop(proc)
    # The launcher stopped its Prometheus with it; Prometheus' data stayed under the data folder.
    assert prometheus.returncode == 0, (logs / "prometheus.log").read_text()[-3000:]
    assert (paths.data_dir / "prometheus" / "data").is_dir()


def test_without_prometheus_installed_the_launcher_says_how_to_install_it(tmp_path: Path) -> None:
    config = write_config(tmp_path / "job.ini", make_config(tmp_path / "data"))
    result = subprocess.run([sys.executable, "-m", "lakehouse.ops.prometheus", "--config", str(config)],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PATH=str(tmp_path)))  # no prometheus there
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and "apt-get install prometheus" in lines[0] and "Traceback" not in lines[0]
    # The configuration it would have started Prometheus with is written all the same.
    assert str(RULES_FILE) in (tmp_path / "data" / "prometheus" / "prometheus.yml").read_text()
