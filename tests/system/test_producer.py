"""producer_ventes.py against the real broker: exact delivery, fault reconciliation, returns and
cancellations, failures, signals. Its flags and summary without one: tests/unit/test_producer_flags.py."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from lakehouse.ingest.contract import parse_timestamp, violations
from lakehouse.ingest.simulator import EXPECTED_REASON
from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.topics import ensure_topic

# The producer runs on the project's config.ini, which sends returns and cancellations: these tests count
# sales, so they turn corrections off unless they ask for them (a later flag wins).
NO_CORRECTIONS = ("--return-ratio", "0", "--cancel-ratio", "0")


def run_producer(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "producer_ventes.py", *NO_CORRECTIONS, *args], cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=timeout)


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60) -> list:
    """Read the topic from the start until ``expected`` records arrived or the time is up, then read
    for one more second so that extra records (which would be a bug) are seen too."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
        for batch in consumer.poll(timeout_ms=1000).values():
            records += batch
    finally:
        consumer.close()
    return records


def test_events_are_consumed_back_exactly(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    result = run_producer("--max", "--count", "3000", "--seed", "21", "--topic", topic,
                          "--bootstrap-servers", kafka_bootstrap, "--summary-json", str(summary_path))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(summary_path.read_text())
    assert (summary["generated"], summary["delivered"], summary["failed"], summary["unsent"]) == (3000, 3000, 0, 0)
    assert "Summary: generated=3000 delivered=3000 failed=0 unsent=0 injected=none" in result.stderr

    records = consume_all(kafka_bootstrap, topic, 3000)
    assert len(records) == 3000
    events = [json.loads(r.value) for r in records]
    assert len({e["vente_id"] for e in events}) == 3000
    assert [violations(r.value) for r in records] == [[]] * 3000
    assert all(r.key.decode() == e["client_id"] for r, e in zip(records, events))
    # A client's sales stay in one partition.
    partitions = {}
    for r, e in zip(records, events):
        assert partitions.setdefault(e["client_id"], r.partition) == r.partition


def test_injected_faults_reconcile_with_the_summary(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    result = run_producer("--max", "--count", "2000", "--seed", "5", "--topic", topic,
                          "--bootstrap-servers", kafka_bootstrap, "--bad-ratio", "0.25",
                          "--duplicate-ratio", "0.05", "--late-ratio", "0.05", "--late-by", "3 h",
                          "--summary-json", str(summary_path))
    assert result.returncode == 0, result.stderr[-2000:]
    injected = json.loads(summary_path.read_text())["injected"]
    records = consume_all(kafka_bootstrap, topic, 2000)
    assert len(records) == 2000

    reasons = Counter()
    first_seen, duplicates, late = set(), 0, 0
    cutoff = datetime.now(timezone.utc) - timedelta(hours=2)
    for record in records:
        found = violations(record.value)
        if found:
            reasons[found[0].split(":")[0]] += 1
            continue
        event = json.loads(record.value)
        if event["vente_id"] in first_seen:
            duplicates += 1
        else:
            first_seen.add(event["vente_id"])
            late += parse_timestamp(event["timestamp"]) < cutoff
    expected_reasons = Counter()
    for kind, n in injected.items():
        if kind in EXPECTED_REASON:
            expected_reasons[EXPECTED_REASON[kind]] += n
    assert reasons == expected_reasons
    assert duplicates == injected["duplicate"]
    assert late == injected["late"]
    assert sum(injected.values()) > 500  # every kind really was exercised
    assert len(expected_reasons) == 10


def test_returns_and_cancellations_reconcile_with_the_summary(kafka_bootstrap: str, topic: str,
                                                             tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    result = run_producer("--max", "--count", "6000", "--seed", "8", "--topic", topic, "--bootstrap-servers",
                          kafka_bootstrap, "--return-ratio", "0.1", "--cancel-ratio", "0.05", "--early-corrections",
                          "--late-ratio", "0.02", "--summary-json", str(summary_path))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(summary_path.read_text())
    records = consume_all(kafka_bootstrap, topic, 6000)
    assert len(records) == summary["generated"] == summary["delivered"] == 6000

    kinds, early, seen = Counter(), 0, set()
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):  # each partition in its order
        assert violations(record.value) == []
        event = json.loads(record.value)
        assert record.key.decode() == event["client_id"]  # a correction goes where its sale goes
        kind = event.get("type_evenement", "vente")
        kinds[kind] += 1
        if kind == "vente":
            seen.add(event["vente_id"])
        else:
            early += event["vente_id"] not in seen  # read before its sale: sent early
    assert summary["sales"] + summary["injected"]["late"] == kinds["vente"]
    assert (summary["returns"], summary["cancellations"], summary["early_corrections"]) == (
        kinds["retour"], kinds["annulation"], early)
    assert summary["sales"] + summary["returns"] + summary["cancellations"] + summary["injected"]["late"] == 6000
    assert kinds["retour"] > 300 and kinds["annulation"] > 150 and early > 20
    assert (f"sales={summary['sales']} returns={summary['returns']} cancellations={summary['cancellations']} "
            f"early_corrections={early} ") in result.stderr


def test_a_client_id_is_the_same_client_in_every_run(kafka_bootstrap: str, topic: str) -> None:
    # Two runs, as two days of the same lakehouse: each run draws its events from a new seed.
    second_topic = f"{topic}_again"
    ensure_topic(kafka_bootstrap, second_topic, partitions=3)
    who = []
    for seed, run_topic in (("1", topic), ("2", second_topic)):
        result = run_producer("--max", "--count", "400", "--clients", "50", "--seed", seed, "--topic", run_topic,
                              "--bootstrap-servers", kafka_bootstrap)
        assert result.returncode == 0, result.stderr[-2000:]
        events = [json.loads(r.value) for r in consume_all(kafka_bootstrap, run_topic, 400)]
        who.append({e["client_id"]: (e["client_nom"], e["pays"], e["segment"]) for e in events})
    first, second = who
    common = first.keys() & second.keys()
    assert len(common) >= 20  # 50 clients, 400 sales a run: most clients buy in both
    assert {c: first[c] for c in common} == {c: second[c] for c in common}


def test_unreachable_broker_exits_nonzero_fast(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    config = tmp_path / "config.ini"
    config.write_text("[kafka]\nconnect_timeout = 3 seconds\n", encoding="utf-8")
    result = run_producer("--count", "5", "--bootstrap-servers", f"localhost:{port}", "--config",
                          str(config), timeout=60)
    assert result.returncode == 1
    assert f"Kafka broker not reachable at localhost:{port}" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_flushes_and_reports(kafka_bootstrap: str, topic: str, tmp_path: Path,
                                            signum: int) -> None:
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen([sys.executable, "producer_ventes.py", *NO_CORRECTIONS, "--rate", "500", "--topic", topic,
                             "--bootstrap-servers", kafka_bootstrap, "--summary-json", str(summary_path)],
                            cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Producing to" not in (proc.stderr.readline() or ""):
            pass  # wait until it really produces
        time.sleep(2)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    summary = json.loads(summary_path.read_text())
    assert summary["interrupted"] is True
    assert summary["generated"] == summary["delivered"] > 0 and summary["failed"] == summary["unsent"] == 0
    assert f"Summary: generated={summary['generated']} delivered={summary['generated']}" in stderr
    assert len(consume_all(kafka_bootstrap, topic, summary["generated"])) == summary["generated"]


def broker_command(command: str, config: Path) -> None:
    """The project's launcher, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "lakehouse.local.kafka_broker", command, "--config",
                             str(config)], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]


def test_broker_stopped_mid_run_every_record_is_counted(tmp_path: Path) -> None:
    # A throwaway broker (its own ports and data): stopping it disturbs no one else.
    config = tmp_path / "outage.ini"
    config.write_text(f"""[kafka]
bootstrap_servers = localhost:19101
controller_port = 19102
topic = ventes_outage
connect_timeout = 3 seconds
[paths]
data_dir = {tmp_path / "data"}
cache_dir = {PROJECT_DIR / ".cache"}
[producer]
delivery_timeout = 3 seconds
return_ratio = 0
cancel_ratio = 0
""", encoding="utf-8")
    summary_path = tmp_path / "summary.json"
    broker_command("start", config)
    try:
        proc = subprocess.Popen([sys.executable, "producer_ventes.py", "--rate", "200", "--duration", "15 s",
                                 "--summary-json", str(summary_path), "--config", str(config)],
                                cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = []
            while not any("Producing to" in line for line in lines) and proc.poll() is None:
                lines.append(proc.stderr.readline())
            time.sleep(3)  # some sales delivered, then the broker goes away for the rest of the run
            broker_command("stop", config)
            _, stderr = proc.communicate(timeout=120)
        finally:
            proc.kill()
        stderr = "".join(lines) + stderr
        assert proc.returncode == 4, stderr[-3000:]
        summary = json.loads(summary_path.read_text())
        generated, delivered, failed, unsent = (summary[k] for k in ("generated", "delivered", "failed", "unsent"))
        assert delivered + failed + unsent == generated
        assert delivered > 0 and failed + unsent > 0
        assert (f"Summary: generated={generated} delivered={delivered} failed={failed} unsent={unsent} "
                in stderr)
        assert f"Not every record reached Kafka: {failed} failed, {unsent} never sent" in stderr
        assert "Traceback" not in stderr

        # Back up: Kafka holds every delivered record (and perhaps some it wrote but could not confirm).
        broker_command("start", config)
        in_topic = len(consume_all("localhost:19101", "ventes_outage", delivered, timeout_s=30))
        assert delivered <= in_topic <= generated
    finally:
        broker_command("stop", config)
