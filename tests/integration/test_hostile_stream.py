"""The hostile corpus through the running Bronze stream: it never stops, every record of the topic is in
exactly one of Bronze, quarantine and duplicates, byte for byte, where the contract says, and delta-rs
reads the four tables as Spark does."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from kafka import KafkaConsumer, KafkaProducer
from pyspark.sql import functions as F

from lakehouse.bronze.monitoring import remove_progress_loggers
from lakehouse.bronze.stream import start_bronze_stream, stop_after_current_batch
from lakehouse.ingest.contract import ContractLimits, timestamp_micros, violations
from lakehouse.ingest.simulator import SalesSimulator, encode
from lakehouse.platform.delta import read_delta
from lakehouse.platform.paths import Paths
from tests.conftest import make_config
from tests.support.hostile_corpus import Case, correction_corpus, hostile_corpus

KEYS = [b"C000001", None, b"\xff\xfe\x00binary", b"", "clé-ünïcode".encode()]


def send_all(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, int]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2_000_000)
    try:
        futures = [producer.send(topic, key=k, value=v, timestamp_ms=ts) for k, v, ts in records]
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()


def topic_records(bootstrap: str, topic: str, expected: int) -> dict[tuple[int, int], bytes | None]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, isolation_level="read_committed", consumer_timeout_ms=5000)
    try:
        found = {}
        deadline = time.monotonic() + 60
        while len(found) < expected and time.monotonic() < deadline:
            for record in consumer:
                found[(record.partition, record.offset)] = record.value
        return found
    finally:
        consumer.close()


def own_ids(cases: list[Case], limits: ContractLimits, reference_ms: int) -> list[bytes]:
    """The corpus's values, where each accepted one that carries the base sale's id gets an id of its own
    (of the same length: the size cases stay at their limits).

    The corpus judges records one at a time, so its accepted variants all re-use one id; in a stream they
    would be duplicates or conflicts of whichever came first. Duplicates and conflicts are sent on purpose
    by the test; here the corpus's own verdicts are what is followed through the stream."""
    base_id = json.loads(cases[0].value)["vente_id"]
    values = []
    for n, case in enumerate(cases):
        value = case.value
        if not case.expected:
            value = value.replace(json.dumps(base_id).encode(), json.dumps(f"{base_id[:-3]}{n:03d}").encode(), 1)
            assert not violations(value, limits, reference_ms * 1000), case.name
        values.append(value)
    return values


def correction_values(cases: list[Case], limits: ContractLimits, reference_ms: int) -> list[bytes]:
    """The correction corpus's values, its accepted sales each with an id of its own (as ``own_ids``); its
    corrections keep their ids: sent in one partition, in order, the first of an id is kept and the others
    are duplicates or conflicting ids (``correction_outcomes``)."""
    values = []
    for n, case in enumerate(cases):
        value, event = case.value, None if case.expected else json.loads(case.value)
        if event is not None and (event.get("type_evenement") or "vente") == "vente":
            token = json.dumps(event["vente_id"]).encode()
            if token not in value:
                continue  # an escaped id: left out rather than guessed
            value = value.replace(token, json.dumps(f"cc-{n:05d}").encode(), 1)
            assert not violations(value, limits, reference_ms * 1000), case.name
        values.append(value)
    return values


def correction_outcomes(values: list[bytes], limits: ContractLimits, reference_ms: int,
                        delay_us: int) -> list[str | None]:
    """For accepted corrections in sending order: kept (None), a duplicate, or a conflicting id — a later one
    with a kept correction's retour_id and the same content repeats it, one with other content and an event time
    within the duplicate window of it conflicts, and one further away is another correction."""
    kept: dict[str, list[tuple]] = {}
    outcomes = []
    for value in values:
        event = json.loads(value)
        if violations(value, limits, reference_ms * 1000) or (event.get("type_evenement") or "vente") == "vente":
            outcomes.append(None)
            continue
        key = str(event["retour_id"])
        # What Bronze keeps of it (an annulation's quantite or montant is not part of it).
        is_return = event["type_evenement"] == "retour"
        money = event.get("montant") if is_return else None
        content = (event["type_evenement"], key, str(event["vente_id"]), str(event["client_id"]),
                   timestamp_micros(event["timestamp"]), event.get("quantite") if is_return else None,
                   None if money is None else round(float(money), 2), event.get("motif"))
        earlier = kept.setdefault(key, [])
        if content in earlier:
            outcomes.append("duplicate")
        elif any(abs(content[4] - other[4]) <= delay_us for other in earlier):
            outcomes.append("conflicting_id")
        else:
            earlier.append(content)
            outcomes.append(None)
    return outcomes


def same_sale(a: dict, b: dict) -> bool:
    """Same content as the duplicate check sees it: the sale's fields, the event time as an instant."""
    def content(s: dict) -> tuple:
        return tuple(timestamp_micros(s[f]) if f == "timestamp" else s.get(f) for f in sorted(s))
    return content(a) == content(b)


def test_hostile_records_never_stop_the_stream_and_none_vanishes(spark, kafka_bootstrap, topic, tmp_path) -> None:
    # The corpus's verdicts are written for naive timestamps refused (tests/test_contract_corpus.py reads
    # them in a zone).
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic,
                      streaming__trigger_interval="200 ms", streaming__max_offsets_per_trigger=150,
                      streaming__naive_timezone="reject")
    paths = Paths.from_config(cfg)
    reference = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
    reference_ms = int(reference.timestamp() * 1000)
    limits = ContractLimits.from_config(cfg)

    # Valid sales around the hostile ones, a sale sent twice (a duplicate) and another sale re-using its id.
    sim = SalesSimulator(21, 50, clock=lambda: reference)
    sales = [sim.sale() for _ in range(40)]
    reused = dict(sales[0], montant=sales[0]["montant"] + 1)
    values = [encode(s) for s in sales[:20]] + own_ids(hostile_corpus(reference), limits, reference_ms) \
        + [encode(sales[0]), encode(reused)] + [encode(s) for s in sales[20:]]
    records = [(KEYS[i % len(KEYS)], v, reference_ms) for i, v in enumerate(values)]
    # Returns and cancellations, hostile ones included, in one partition: Bronze judges them in sending order.
    corrections = correction_values(correction_corpus(reference), limits, reference_ms)
    outcomes = correction_outcomes(corrections, limits, reference_ms, int(cfg.streaming.watermark_delay.seconds * 1e6))
    records += [(KEYS[0], v, reference_ms) for v in corrections]
    # Accepted records sharing an id (besides the sale sent twice) all have the same content: duplicates.
    accepted = [v for v in values if not violations(v, limits, reference_ms * 1000)]
    by_id: dict[str, list[dict]] = {}
    for v in accepted:
        sale = json.loads(v)
        by_id.setdefault(str(sale["vente_id"]), []).append(sale)
    by_id[str(sales[0]["vente_id"])].pop()  # the re-used id: a conflict, not a duplicate
    assert all(all(same_sale(s, group[0]) for s in group) for group in by_id.values())
    expected_duplicates = sum(len(group) - 1 for group in by_id.values())

    query = start_bronze_stream(spark, cfg, paths)
    try:
        # In waves, so that poison pills are the newest record of some batches and the first of others.
        for i in range(0, len(records), 97):
            send_all(kafka_bootstrap, topic, records[i:i + 97])
        deadline = time.monotonic() + 900
        seen = 0
        while time.monotonic() < deadline and query.isActive:
            metrics = read_delta(spark, paths.bronze_metrics)
            seen = (metrics.agg(F.sum("input_rows")).first()[0] or 0) if metrics is not None else 0
            if seen >= len(records):
                break
            time.sleep(1)
        assert query.isActive and query.exception() is None, query.exception()
        assert seen == len(records)
    finally:
        if query.isActive:
            stop_after_current_batch(query)
        remove_progress_loggers(spark)

    in_topic = topic_records(kafka_bootstrap, topic, len(records))
    assert len(in_topic) == len(records)
    load = lambda p: spark.read.format("delta").load(str(p))  # noqa: E731
    bronze = {(r.kafka_partition, r.kafka_offset): r for r in load(paths.bronze).collect()}
    quarantine = {(r.kafka_partition, r.kafka_offset): r for r in load(paths.quarantine).collect()}
    duplicates = {(r.kafka_partition, r.kafka_offset): r for r in load(paths.duplicates).collect()}
    kept_corrections = {(r.kafka_partition, r.kafka_offset): r for r in load(paths.corrections).collect()}
    # Exactly one table per record, and together every record of the topic.
    tables = [bronze.keys(), kept_corrections.keys(), quarantine.keys(), duplicates.keys()]
    assert all(not (a & b) for i, a in enumerate(tables) for b in tables[i + 1:])
    assert set().union(*tables) == in_topic.keys()

    wrong = []
    for position, value in in_topic.items():
        expected = violations(value, limits, reference_ms * 1000)
        if position in bronze:
            row = bronze[position]
            if expected or row.raw_json.encode() != value:
                wrong.append((position, "bronze", expected))
        elif position in kept_corrections:
            row = kept_corrections[position]
            if expected or row.raw_json.encode() != value or json.loads(value)["type_evenement"] != row.type_evenement:
                wrong.append((position, "corrections", expected))
        elif position in duplicates:
            row = duplicates[position]
            kept_at = (row.kept_partition, row.kept_offset)
            if expected or bytes(row.raw_value) != value or not (kept_at in bronze or kept_at in kept_corrections):
                wrong.append((position, "duplicates", expected))
        else:
            row = quarantine[position]
            stored = bytes(row.raw_value) if row.raw_value is not None else None
            reasons = ["conflicting_id"] if row.reason == "conflicting_id" else expected
            if list(row.reasons) != reasons or stored != value:
                wrong.append((position, "quarantine", expected, list(row.reasons)))
    assert wrong == []
    assert [r.reason for r in quarantine.values()].count("conflicting_id") == 1 + outcomes.count("conflicting_id")
    assert len(duplicates) == expected_duplicates + outcomes.count("duplicate")
    assert len(kept_corrections) == sum(1 for v, o in zip(corrections, outcomes) if o is None
                                        and not violations(v, limits, reference_ms * 1000)
                                        and (json.loads(v).get("type_evenement") or "vente") != "vente")
    # Keys are kept losslessly: bytes always, text only when it is valid UTF-8.
    keys = {(r.kafka_key_bytes and bytes(r.kafka_key_bytes), r.kafka_key)
            for r in [*bronze.values(), *quarantine.values()]}
    assert (b"\xff\xfe\x00binary", None) in keys and ("clé-ünïcode".encode(), "clé-ünïcode") in keys

    # The watermark only moved with plausible sales: no sale within the delay of the reference time is late
    # (the stale ones the contract still accepts, up to max_event_age old, are kept and flagged late).
    delay = cfg.streaming.watermark_delay.seconds
    assert not any(r.is_late for r in bronze.values()
                   if r.event_ts.timestamp() >= reference.timestamp() - delay)
    assert any(r.is_late for r in bronze.values())
    metrics = load(paths.bronze_metrics)
    totals = metrics.agg(*[F.sum(c).alias(c) for c in ("input_rows", "bronze_rows", "quarantined_rows",
                                                       "duplicate_rows", "conflicting_rows")]).first()
    assert (totals.input_rows, totals.bronze_rows, totals.quarantined_rows, totals.duplicate_rows,
            totals.conflicting_rows) == (len(records), len(bronze), len(quarantine), len(duplicates),
                                         1 + outcomes.count("conflicting_id"))
    assert metrics.filter(F.year("max_event_ts") > reference.year + 1).isEmpty()

    # Another engine reads every table the corpus went through the same: rows, amounts, quantities, counts.
    for path in (paths.bronze, paths.corrections, paths.quarantine, paths.duplicates, paths.bronze_metrics):
        assert DeltaTable(str(path)).to_pyarrow_table().num_rows == load(path).count(), path
    bronze_rs = DeltaTable(str(paths.bronze)).to_pyarrow_table()
    sums = load(paths.bronze).agg(F.sum("montant"), F.sum("quantite"), F.sum(F.unix_micros("event_ts"))).first()
    assert (pc.sum(bronze_rs.column("montant")).as_py(), pc.sum(bronze_rs.column("quantite")).as_py(),
            pc.sum(pc.cast(bronze_rs.column("event_ts"), pa.int64())).as_py()) == tuple(sums)
    metrics_rs = DeltaTable(str(paths.bronze_metrics)).to_pyarrow_table()
    assert pc.sum(metrics_rs.column("input_rows")).as_py() == len(records)
