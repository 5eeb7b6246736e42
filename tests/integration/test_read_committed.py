"""Read committed with a real transactional producer: an aborted transaction leaves no trace in any table."""

from __future__ import annotations

import json
import uuid

from kafka import KafkaProducer
from pyspark.sql import functions as F

from lakehouse.bronze.stream import start_bronze_stream
from lakehouse.ingest.simulator import SalesSimulator, encode
from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.paths import Paths
from tests.conftest import make_config


def _sale(sim: SalesSimulator, vente_id: str) -> tuple[bytes, bytes]:
    event = sim.sale()
    event["vente_id"] = vente_id
    return event["client_id"].encode(), encode(event)


def test_aborted_transaction_reaches_no_table(spark, kafka_bootstrap, topic, tmp_path) -> None:
    sim = SalesSimulator(seed=7, clients=20)
    a1, a2, b1, c1 = (_sale(sim, f"{name}-{uuid.uuid4().hex[:8]}") for name in ("A1", "A2", "B1", "C1"))
    bad = (b"bad", b"not json, from the aborted transaction")
    positions: dict[str, tuple[int, int]] = {}  # vente_id or "bad" -> (partition, offset) from the broker

    def send(producer: KafkaProducer, name: str, record: tuple[bytes, bytes], partition: int) -> None:
        meta = producer.send(topic, key=record[0], value=record[1], partition=partition).get(timeout=30)
        positions[name] = (meta.partition, meta.offset)

    tx = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{topic}", enable_idempotence=True)
    try:
        tx.init_transactions()
        tx.begin_transaction()
        send(tx, "A1", a1, 0)
        send(tx, "A2", a2, 1)
        tx.commit_transaction()
        tx.begin_transaction()
        send(tx, "B1", b1, 0)
        send(tx, "bad", bad, 1)  # partition 1 then ends with an abort marker
        tx.abort_transaction()
    finally:
        tx.close()
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        send(plain, "C1", c1, 0)  # after the aborted records and both markers of partition 0
    finally:
        plain.close()
    vente_id = {name: json.loads(rec[1])["vente_id"] for name, rec in (("A1", a1), ("A2", a2), ("B1", b1), ("C1", c1))}

    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    paths = Paths.from_config(cfg)
    start_bronze_stream(spark, cfg, paths, available_now=True).awaitTermination()

    load = lambda p: spark.read.format("delta").load(str(p))  # noqa: E731
    bronze = load(paths.bronze)
    assert {r.vente_id for r in bronze.select("vente_id").collect()} == {vente_id[n] for n in ("A1", "A2", "C1")}
    # Each kept sale sits at the position the broker gave it (offsets count the transaction markers).
    got = {r.vente_id: (r.kafka_partition, r.kafka_offset)
           for r in bronze.select("vente_id", "kafka_partition", "kafka_offset").collect()}
    assert got == {vente_id[n]: positions[n] for n in ("A1", "A2", "C1")}
    # Partition 0 holds A1, commit marker, B1, abort marker, C1: C1 is the 3rd record read but offset 4.
    assert positions["C1"] == (0, 4) and positions["A2"] == (1, 0)

    aborted_values = [b1[1], bad[1]]
    aborted_ids = [vente_id["B1"]]
    aborted_positions = [positions["B1"], positions["bad"]]
    for path in (paths.bronze, paths.quarantine, paths.duplicates):
        if not delta_table_exists(path):  # nothing was ever written there: nothing aborted either
            continue
        table = load(path)
        if "vente_id" in table.columns:
            assert table.filter(F.col("vente_id").isin(*aborted_ids)).isEmpty(), path
        value_col = "raw_value" if "raw_value" in table.columns else "raw_json"
        values = {bytes(r[0]) if isinstance(r[0], (bytes, bytearray)) else r[0].encode()
                  for r in table.select(value_col).collect()}
        assert not values & set(aborted_values), path
        coords = {(r.kafka_partition, r.kafka_offset)
                  for r in table.select("kafka_partition", "kafka_offset").collect()}
        assert not coords & set(aborted_positions), path
    # Nothing was quarantined or duplicated at all (the only bad record was aborted).
    assert not delta_table_exists(paths.quarantine) or load(paths.quarantine).isEmpty()
    assert not delta_table_exists(paths.duplicates) or load(paths.duplicates).isEmpty()

    metrics = load(paths.bronze_metrics)
    assert metrics.agg(F.sum("input_rows")).first()[0] == 3
    assert metrics.agg(F.sum("bronze_rows")).first()[0] == 3
