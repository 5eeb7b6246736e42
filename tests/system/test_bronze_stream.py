"""Kafka → Bronze end to end with the real broker: reconciliation, schema evolution, SIGKILL recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse.bronze.stream import start_bronze_stream, stop_after_current_batch
from lakehouse.ingest.simulator import EXPECTED_REASON
from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.delta import checkpoint_entries
from lakehouse.platform.job_lock import EXIT_ALREADY_RUNNING
from lakehouse.platform.paths import Paths
from tests.conftest import make_config, produce, write_config


def run_producer(*args: str) -> dict:
    summary = Path(os.environ.get("TMPDIR", "/tmp")) / f"summary_{time.monotonic_ns()}.json"
    result = subprocess.run([sys.executable, "producer_ventes.py", "--max", *args, "--summary-json", str(summary)],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(summary.read_text())


def drain(spark, cfg) -> None:
    start_bronze_stream(spark, cfg, Paths.from_config(cfg), available_now=True).awaitTermination()


def tables(spark, paths: Paths):
    load = lambda p: spark.read.format("delta").load(str(p))  # noqa: E731
    return load(paths.bronze), load(paths.quarantine), load(paths.bronze_metrics)


def test_mixed_input_reconciles_exactly(spark, kafka_bootstrap, topic, tmp_path) -> None:
    # Batches of 1,000: duplicates meet kept sales of the same batch and of earlier ones.
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic,
                      streaming__max_offsets_per_trigger=1000)
    common = ["--topic", topic, "--bootstrap-servers", kafka_bootstrap]
    first = run_producer(*common, "--count", "200", "--seed", "1")
    drain(spark, cfg)  # sets the watermark so that late sales below are late whatever the batching
    second = run_producer(*common, "--count", "2000", "--seed", "2", "--bad-ratio", "0.2",
                          "--duplicate-ratio", "0.1", "--late-ratio", "0.05", "--late-by", "3 h")
    # A new optional field must not break ingestion: it is kept in raw_json.
    evolved = {"vente_id": "evo-1", "client_id": "C9", "produit_id": "P9",
               "timestamp": datetime.now(timezone.utc).isoformat(),
               "quantite": 1, "montant": 10, "client_nom": "Nouveau", "produit_nom": "X", "categorie": "Y",
               "pays": "France", "segment": "B2C", "code_promo": "NOEL24"}
    produce(kafka_bootstrap, topic, [("C9", json.dumps(evolved).encode())])
    # A second instance started on the same configuration while the stream runs: refused at once, in one
    # line (issue #32: it used to skip a batch, add metrics rows twice and die ~37 s later in Java stack).
    query = start_bronze_stream(spark, cfg, Paths.from_config(cfg))
    try:
        other_instance = subprocess.run(
            [sys.executable, "spark_streaming_delta.py", "--config", str(write_config(tmp_path / "same.ini", cfg))],
            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
        assert query.isActive
        query.processAllAvailable()
    finally:
        stop_after_current_batch(query)
    assert other_instance.returncode == EXIT_ALREADY_RUNNING
    refusal = other_instance.stderr.strip().splitlines()
    assert len(refusal) == 1 and f"(pid {os.getpid()} on host" in refusal[0]

    bronze, quarantine, metrics = tables(spark, Paths.from_config(cfg))
    corrections = spark.read.format("delta").load(str(Paths.from_config(cfg).corrections))
    in_topic = first["generated"] + second["generated"] + 1
    duplicates = metrics.agg(F.sum("duplicate_rows")).first()[0]
    # The producer's default returns and cancellations (config.ini) land in the corrections table.
    sent_corrections = sum(s["returns"] + s["cancellations"] for s in (first, second))
    assert sent_corrections > 0 and corrections.count() == sent_corrections
    assert bronze.count() + corrections.count() + quarantine.count() + duplicates == in_topic
    injected = second["injected"]
    assert duplicates == injected["duplicate"]
    assert bronze.filter("is_late").count() == injected["late"]
    assert metrics.agg(F.sum("late_rows")).first()[0] == injected["late"]
    expected_reasons = Counter()
    for kind, n in injected.items():
        if kind in EXPECTED_REASON:
            expected_reasons[EXPECTED_REASON[kind]] += n
    actual_reasons = Counter({r.reason: r["count"] for r in quarantine.groupBy("reason").count().collect()})
    assert actual_reasons == expected_reasons
    assert bronze.select("vente_id").distinct().count() == bronze.count()
    assert metrics.agg(F.sum("input_rows")).first()[0] == in_topic
    assert metrics.groupBy("query_id", "batch_id").count().filter("count > 1").count() == 0
    row = bronze.filter("vente_id = 'evo-1'").first()
    assert json.loads(row.raw_json)["code_promo"] == "NOEL24" and row.segment == "B2C"
    # Lineage: every Kafka record is accounted for exactly once across the two tables + duplicates.
    coords = bronze.select("kafka_partition", "kafka_offset").union(
        quarantine.select("kafka_partition", "kafka_offset"))
    assert coords.distinct().count() == coords.count()


def _committed_batches(paths: Paths) -> int:
    """Batches the stream has finished (its checkpoint's commit log)."""
    return checkpoint_entries(paths.bronze_checkpoint, "commits")


def test_sigkill_at_three_moments_gives_the_same_tables(spark, kafka_bootstrap, topic, tmp_path) -> None:
    common = ["--topic", topic, "--bootstrap-servers", kafka_bootstrap]
    run_producer(*common, "--count", "2000", "--seed", "3", "--bad-ratio", "0.1", "--duplicate-ratio", "0.1")
    # The reference in one batch: batching changes no decision here (no sale is late: they are all sent now).
    reference = make_config(tmp_path / "reference", kafka__bootstrap_servers=kafka_bootstrap,
                            kafka__topic=topic, streaming__max_offsets_per_trigger=2000)
    drain(spark, reference)

    killed = make_config(tmp_path / "killed", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic,
                         streaming__max_offsets_per_trigger=150)
    config = write_config(tmp_path / "killed.ini", killed, streaming={"max_offsets_per_trigger": 150,
                                                                       "trigger_interval": "200 ms"})
    paths = Paths.from_config(killed)
    job = [sys.executable, "spark_streaming_delta.py", "--config", str(config)]
    for batches_before_kill, extra_delay in ((0, 0.0), (1, 0.3), (2, 0.8)):
        proc = subprocess.Popen(job, cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 240
            start = _committed_batches(paths)
            while _committed_batches(paths) <= start + batches_before_kill and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(extra_delay)  # land somewhere inside the next batch
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.kill()
    # What the kills left, finished by a new run (here in-process: no fourth JVM) in larger batches: the
    # batch a kill interrupted is replayed with its planned offsets, the rest needs no small batches.
    drain(spark, make_config(tmp_path / "killed", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic,
                             streaming__max_offsets_per_trigger=2000))

    run_columns = ["ingestion_ts", "bronze_query_id", "bronze_batch_id"]
    ref_bronze, ref_quarantine, _ = tables(spark, Paths.from_config(reference))
    bronze, quarantine, metrics = tables(spark, paths)
    assertDataFrameEqual(bronze.drop(*run_columns), ref_bronze.drop(*run_columns))
    assertDataFrameEqual(quarantine.drop(*run_columns), ref_quarantine.drop(*run_columns))
    # The producer's default returns and cancellations too: the same corrections table.
    load = lambda p: spark.read.format("delta").load(str(p))  # noqa: E731
    corrections, ref_corrections = load(paths.corrections), load(Paths.from_config(reference).corrections)
    assert corrections.count() > 0
    assertDataFrameEqual(corrections.drop(*run_columns), ref_corrections.drop(*run_columns))
    assert bronze.count() + corrections.count() + quarantine.count() \
        + metrics.agg(F.sum("duplicate_rows")).first()[0] == 2000
    # One metrics row per batch, none lost to the kills (rows not yet flushed come back from the commits).
    assert metrics.groupBy("query_id", "batch_id").count().filter("count > 1").count() == 0
    assert metrics.agg(F.sum("input_rows")).first()[0] == 2000
    assert metrics.count() == _committed_batches(paths)


def _classic_run(kafka_bootstrap: str, topic: str, out: Path, count: int) -> list[dict]:
    """The classic producer's replica, as its users run it, on a machine whose clock shows Paris time."""
    result = subprocess.run([sys.executable, "tests/support/classic_producer.py",
                             "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--count", str(count),
                             "--interval", "0.05", "--out", str(out)],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TZ": "Europe/Paris"})
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_the_classic_producer_lands_field_by_field_and_its_restart_is_kept_in_quarantine(
        spark, kafka_bootstrap, topic, tmp_path) -> None:
    # Issue #32: its naive local timestamps (datetime.now().isoformat()) were all quarantined as bad_timestamp.
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic,
                      streaming__naive_timezone="Europe/Paris")
    paths = Paths.from_config(cfg)
    runs = []
    for run in range(2):  # the producer restarts (its ids start again at 1), and so does the stream
        runs.append(_classic_run(kafka_bootstrap, topic, tmp_path / f"run{run}.jsonl", 8))
        query = start_bronze_stream(spark, cfg, paths)
        try:
            query.processAllAvailable()
        finally:
            stop_after_current_batch(query)
    bronze, quarantine, _ = tables(spark, paths)

    from zoneinfo import ZoneInfo
    expected = [(str(s["vente_id"]), str(s["client_id"]), str(s["produit_id"]),
                 datetime.fromisoformat(s["timestamp"]).replace(tzinfo=ZoneInfo("Europe/Paris")).astimezone(timezone.utc),
                 True, s["quantite"], Decimal(str(s["montant"])), s["client_nom"], s["produit_nom"], s["categorie"],
                 s["pays"], {"Particulier": "B2C", "Entreprise": "B2B"}[s["segment"]], None, json.dumps(s))
                for s in runs[0]]
    actual = [(r.vente_id, r.client_id, r.produit_id, r.event_ts.replace(tzinfo=timezone.utc), r.timestamp_naif,
               r.quantite, r.montant, r.client_nom, r.produit_nom, r.categorie, r.pays, r.segment, r.kafka_key,
               r.raw_json)
              for r in bronze.withColumn("event_ts", F.to_utc_timestamp("event_ts", spark.conf.get(
                  "spark.sql.session.timeZone"))).orderBy(F.col("vente_id").cast("int")).collect()]
    assert actual == expected
    # The second run re-used ids 1-8 with other sales within the watermark delay: kept aside, not lost.
    kept_at = {r.vente_id: (r.kafka_partition, r.kafka_offset) for r in bronze.collect()}
    conflicts = sorted(((r.reason, (r.kept_partition, r.kept_offset), json.loads(r.raw_text))
                        for r in quarantine.collect()), key=lambda c: c[2]["vente_id"])
    assert conflicts == [("conflicting_id", kept_at[str(s["vente_id"])], s) for s in runs[1]]
