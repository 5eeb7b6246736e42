"""The jobs' Prometheus metrics: what each figure counts, the text format Prometheus reads, the endpoint's
address and port rules (no Spark, no broker: the jobs' own endpoints are tested in test_prometheus.py)."""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections import Counter
from types import SimpleNamespace

import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lakehouse.bronze.batch_figures import BatchFigures
from lakehouse.bronze.dedup import DedupState
from lakehouse.bronze.monitoring import partition_lag
from lakehouse.bronze.writer import prometheus_figures
from lakehouse.ingest.contract import REASONS
from lakehouse.ingest.producer import DeliveryStats
from lakehouse.ops.metrics import (
    BronzeBatchFigures,
    BronzeMetrics,
    BulkHistogram,
    ProducerMetrics,
    SilverMetrics,
    serve_metrics,
)
from lakehouse.silver.corrections import CorrectionFigures


def scrape(collector) -> dict[str, list]:
    """The collector's samples as Prometheus parses its text: name -> [(labels, value)]."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    found = [v for found_labels, v in samples[name] if all(found_labels.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def test_bulk_histogram_counts_each_value_in_the_first_bucket_at_or_above_it() -> None:
    histogram = BulkHistogram((1.0, 2.0, 5.0))
    histogram.observe_many([0.5, 1.0, 1.5, 2.0, 7.0, 7.0])
    assert histogram.counts == [2, 2, 0, 2]
    family = histogram.family("x_seconds", "x")
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name == "x_seconds_bucket"}
    assert buckets == {"1": 2, "2": 4, "5": 4, "+Inf": 6}
    assert {s.name: s.value for s in family.samples if not s.name.endswith("_bucket")} == {
        "x_seconds_count": 6, "x_seconds_sum": 19.0}


def figures(**changes) -> BronzeBatchFigures:
    base = dict(input_rows=10, bronze_rows=6, correction_rows=0, quarantined_rows=3, duplicate_rows=1,
                conflicting_rows=1, late_rows=2, reasons=Counter({"bad_amount": 2, "conflicting_id": 1}),
                duration_s=0.8,
                committed_at=1_000_000.0, latencies_s=[0.4, 1.2, 1.2, 6.0], newest_sale=999_990.0,
                watermark=999_980.0, dedup_entries=40, newest_read_ms={0: 999_999_000, 1: 999_998_000})
    base.update(changes)
    return BronzeBatchFigures(**base)


def test_bronze_metrics_add_up_the_batches_with_conventional_names() -> None:
    now = [1_000_010.0]
    metrics = BronzeMetrics(jvm_heap=lambda: (100, 400), clock=lambda: now[0])
    metrics.batch(figures())
    metrics.batch(figures(input_rows=5, bronze_rows=5, quarantined_rows=0, duplicate_rows=0, conflicting_rows=0,
                          late_rows=0, reasons=Counter(), duration_s=2.5, committed_at=1_000_005.0,
                          latencies_s=[0.3], newest_sale=None, watermark=None, dedup_entries=45,
                          newest_read_ms={1: 1_000_004_000}))
    metrics.kafka_lag({0: 0, 1: 7})
    s = scrape(metrics)
    assert value(s, "lakehouse_bronze_batches_total") == 2
    assert value(s, "lakehouse_bronze_input_records_total") == 15
    assert value(s, "lakehouse_bronze_rows_written_total", table="ventes") == 11
    assert value(s, "lakehouse_bronze_rows_written_total", table="ventes_quarantine") == 3
    assert value(s, "lakehouse_bronze_rows_written_total", table="ventes_duplicates") == 1
    assert value(s, "lakehouse_bronze_quarantined_records_total") == 3
    assert value(s, "lakehouse_bronze_quarantine_reasons_total", reason="bad_amount") == 2
    assert value(s, "lakehouse_bronze_quarantine_reasons_total", reason="conflicting_id") == 1
    assert value(s, "lakehouse_bronze_duplicate_records_total") == 1
    assert value(s, "lakehouse_bronze_conflicting_ids_total") == 1
    assert value(s, "lakehouse_bronze_late_sales_total") == 2
    assert value(s, "lakehouse_bronze_batch_duration_seconds_count") == 2
    assert value(s, "lakehouse_bronze_batch_duration_seconds_bucket", le="1") == 1
    assert value(s, "lakehouse_bronze_produce_to_commit_seconds_count") == 5
    assert value(s, "lakehouse_bronze_produce_to_commit_seconds_bucket", le="1") == 2
    assert value(s, "lakehouse_bronze_produce_to_commit_seconds_sum") == pytest.approx(9.1)
    assert value(s, "lakehouse_bronze_kafka_lag_records", partition="1") == 7
    # Partition 1 has records waiting behind the newest one read, produced 6 s before "now".
    assert value(s, "lakehouse_bronze_kafka_lag_seconds", partition="1") == pytest.approx(6.0)
    assert value(s, "lakehouse_bronze_kafka_lag_seconds", partition="0") == 0
    assert value(s, "lakehouse_bronze_last_commit_timestamp_seconds") == 1_000_005.0
    assert value(s, "lakehouse_bronze_seconds_since_last_commit") == pytest.approx(5.0)
    # A batch without a newer sale keeps the newest one known.
    assert value(s, "lakehouse_bronze_newest_sale_timestamp_seconds") == 999_990.0
    assert value(s, "lakehouse_bronze_watermark_timestamp_seconds") == 999_980.0
    assert value(s, "lakehouse_bronze_dedup_state_entries") == 45
    assert value(s, "lakehouse_bronze_jvm_heap_used_bytes") == 100
    assert value(s, "lakehouse_bronze_jvm_heap_max_bytes") == 400
    assert value(s, "lakehouse_bronze_driver_resident_memory_bytes") > 0


def test_before_its_first_batch_the_stream_counts_from_its_start() -> None:
    now = [50.0]
    metrics = BronzeMetrics(clock=lambda: now[0])
    now[0] = 80.0
    s = scrape(metrics)
    assert value(s, "lakehouse_bronze_seconds_since_last_commit") == 30.0
    assert "lakehouse_bronze_last_commit_timestamp_seconds" not in s
    assert "lakehouse_bronze_jvm_heap_used_bytes" not in s  # no JVM to ask


def test_a_batch_figures_count_each_reason_once_per_record_and_the_newest_record_per_partition() -> None:
    reasons = pa.chunked_array([pa.array([None, ["missing_field:pays", "missing_field:client_id", "bad_amount:montant"],
                                          None, ["not_json"]], pa.list_(pa.string()))])
    state = DedupState(60_000_000)
    state.max_event_us = 2_000_000_000
    batch = prometheus_figures(
        BatchFigures(input_rows=4, bronze_rows=1, quarantined_rows=3, duplicate_rows=0, conflicting_rows=1,
                     late_rows=0, started_ms=9_000), reasons, 1, [0, 1, 1, 0], [4_000, 5_000, None, 3_000], 10_000,
        state)
    assert batch.reasons == Counter({"missing_field": 1, "bad_amount": 1, "not_json": 1, "conflicting_id": 1})
    assert batch.newest_read_ms == {0: 4_000, 1: 5_000}
    assert batch.latencies_s == [6.0, 5.0, 7.0]
    assert batch.duration_s == 1.0 and batch.committed_at == 10.0
    assert batch.newest_sale == 2_000.0 and batch.watermark == 1_940.0


def test_quarantine_reason_labels_are_the_contract_s_reasons_only() -> None:
    """Label values stay bounded: the contract's fixed list of reasons, never a value from the data."""
    metrics = BronzeMetrics()
    metrics.batch(figures(reasons=Counter({r: 1 for r in REASONS})))
    labels = {labels["reason"] for labels, _ in scrape(metrics)["lakehouse_bronze_quarantine_reasons_total"]}
    assert labels == set(REASONS)


def test_partition_lag_is_latest_minus_read_per_partition() -> None:
    source = SimpleNamespace(latestOffset='{"ventes":{"0":120,"1":80,"2":5}}',
                             endOffset='{"ventes":{"0":100,"1":80,"2":5}}')
    assert partition_lag([source]) == {0: 20, 1: 0, 2: 0}
    assert partition_lag([SimpleNamespace(latestOffset=None, endOffset='{"t":{"0":1}}')]) is None
    assert partition_lag([SimpleNamespace(latestOffset="not json", endOffset="{}")]) is None


def test_silver_metrics_give_freshness_from_the_newest_sale_counted() -> None:
    now = [2_000.0]
    metrics = SilverMetrics(jvm_heap=lambda: None, clock=lambda: now[0])
    metrics.resume(newest_sale=1_500.0, last_commit=1_900.0)  # what the status file kept from the last run
    s = scrape(metrics)
    assert value(s, "lakehouse_silver_freshness_seconds") == 500.0
    assert value(s, "lakehouse_silver_seconds_since_last_commit") == 100.0
    metrics.batch(rows=40, seconds=0.4, newest_sale=1_998.0, committed_at=1_999.0)
    metrics.batch(rows=2, seconds=0.3, newest_sale=1_700.0, committed_at=1_999.5)  # a late sale only
    metrics.failure()
    s = scrape(metrics)
    assert value(s, "lakehouse_silver_batches_total") == 2
    assert value(s, "lakehouse_silver_rows_merged_total") == 42
    assert value(s, "lakehouse_silver_failures_total") == 1
    assert value(s, "lakehouse_silver_batch_duration_seconds_bucket", le="0.5") == 2
    assert value(s, "lakehouse_silver_newest_sale_timestamp_seconds") == 1_998.0
    assert value(s, "lakehouse_silver_freshness_seconds") == 2.0
    assert value(s, "lakehouse_silver_last_commit_timestamp_seconds") == 1_999.5


def test_silver_metrics_count_corrections_refusals_and_orphans() -> None:
    now = [10_000.0]
    metrics = SilverMetrics(jvm_heap=lambda: None, clock=lambda: now[0], orphan_timeout_s=3600.0)
    s = scrape(metrics)
    assert "lakehouse_silver_corrections_waiting" not in s  # unknown before the first batch
    assert value(s, "lakehouse_silver_events_rejected_total", reason="client_mismatch") == 0
    metrics.batch(rows=5, seconds=0.1, newest_sale=None, committed_at=9_999.0, corrections=CorrectionFigures(
        applied=3, rejected=Counter({"client_mismatch": 1, "more_units_than_remain": 2}),
        waiting_since=[1_000.0, 9_000.0, 9_500.0]))
    metrics.batch(rows=1, seconds=0.1, newest_sale=None, committed_at=9_999.5, corrections=CorrectionFigures(
        applied=1, rejected=Counter({"client_mismatch": 1}), waiting_since=[1_000.0, 6_000.0]))
    s = scrape(metrics)
    assert value(s, "lakehouse_silver_corrections_applied_total") == 4
    assert value(s, "lakehouse_silver_events_rejected_total", reason="client_mismatch") == 2
    assert value(s, "lakehouse_silver_events_rejected_total", reason="more_units_than_remain") == 2
    assert value(s, "lakehouse_silver_corrections_waiting") == 2  # the last batch's list: every one waiting
    assert value(s, "lakehouse_silver_corrections_orphaned") == 2  # both past the hour
    now[0] = 9_000.0
    assert value(scrape(metrics), "lakehouse_silver_corrections_orphaned") == 1


def test_producer_metrics_read_the_delivery_counters_when_scraped() -> None:
    stats = DeliveryStats()
    metrics = ProducerMetrics(stats, 50.0)
    stats.generated, stats.delivered, stats.failed = 10, 7, 1
    s = scrape(metrics)
    assert [value(s, f"lakehouse_producer_records_{k}_total") for k in ("generated", "delivered", "failed")] == \
        [10, 7, 1]
    assert value(s, "lakehouse_producer_records_unsent") == 2
    assert value(s, "lakehouse_producer_target_rate_per_second") == 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_endpoint_serves_the_text_format_on_the_given_address() -> None:
    port = free_port()
    server = serve_metrics(ProducerMetrics(DeliveryStats(generated=3), None), "127.0.0.1", port, "Producer",
                           "metrics_port_producer")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain")
            text = answer.read().decode()
        assert "lakehouse_producer_records_generated_total 3.0" in text
    finally:
        server.shutdown()
        server.server_close()


def test_a_taken_port_is_one_warning_and_no_endpoint(caplog) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="lakehouse.ops.metrics"):
            assert serve_metrics(SilverMetrics(), "127.0.0.1", port, "Silver job", "metrics_port_silver") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and not warnings[0].exc_info
    message = warnings[0].getMessage()
    assert f"127.0.0.1:{port}" in message and "metrics_port_silver" in message and "goes on" in message


def test_port_zero_serves_nothing(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="lakehouse.ops.metrics"):
        assert serve_metrics(SilverMetrics(), "127.0.0.1", 0, "Silver job", "metrics_port_silver") is None
    assert not caplog.records
