"""Every table the Bronze stream writes is readable by another engine (delta-rs) with the same content,
and its Parquet files hold timestamps as TIMESTAMP_MICROS, not the legacy INT96."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable
from kafka import KafkaProducer
from pyspark.sql import functions as F

from lakehouse.bronze.stream import start_bronze_stream
from lakehouse.ingest.simulator import SalesSimulator, encode
from lakehouse.platform.paths import Paths
from tests.conftest import make_config

BINARY_KEY = b"\xff\xfe\x00"  # not valid UTF-8


def _send_all(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[tuple[int, int]]:
    """Send raw (key, value) records in order; the (partition, offset) each one got."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in records]
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def _delta_rs(path: Path) -> pa.Table:
    return DeltaTable(str(path)).to_pyarrow_table()


def test_every_table_reads_the_same_with_delta_rs(spark, kafka_bootstrap, topic, tmp_path) -> None:
    sim = SalesSimulator(seed=11, clients=30)

    def sale(**changes: object) -> dict:
        event = sim.sale()
        event["vente_id"] = f"v-{uuid.uuid4().hex[:12]}"
        event.update(changes)
        return event

    kept: list[dict] = [sale() for _ in range(5)]
    kept += [sale(client_nom="Zoë Ñúñez-Łukasiewicz 李小龍", ville="Kraków 🏙", produit_nom="Café « crème » ☕"),
             sale(client_nom="Ἀριστοτέλης Δημητρίου", ville="Θεσσαλονίκη"),
             sale(montant=999999999999.99, prix_unitaire=9999999.99, quantite=100000),
             sale(montant=0.01, prix_unitaire=0.01, quantite=1),
             sale(quantite=100000)]
    binary_keyed, unkeyed, duplicated, conflicted = sale(), sale(), sale(), sale()
    kept += [binary_keyed, unkeyed, duplicated, conflicted]
    # Same id and timestamp, other amount (through Decimal: a float sum could print as 30.900000000000002).
    conflicting = dict(conflicted, montant=float(Decimal(str(conflicted["montant"])) + 1))
    year_9999 = sale(timestamp="9999-12-31T23:59:59.999+00:00")

    key = lambda e: e["client_id"].encode()  # noqa: E731
    records: list[tuple[bytes | None, bytes]] = [(key(e), encode(e)) for e in kept[:-4]]
    at: dict[str, int] = {}  # name -> index in records

    def add(name: str, k: bytes | None, value: bytes) -> None:
        at[name] = len(records)
        records.append((k, value))

    add("binary_key", BINARY_KEY, encode(binary_keyed))
    add("no_key", None, encode(unkeyed))
    add("original", key(duplicated), encode(duplicated))
    add("duplicate", key(duplicated), encode(duplicated))  # same bytes and key: same partition, later offset
    add("first", key(conflicted), encode(conflicted))
    add("conflict", key(conflicted), encode(conflicting))
    add("not_json", b"k-not-json", b"vente 42, montant=12")
    add("non_utf8", b"k-non-utf8", b"\xff\xfe" + json.dumps(sale()).encode("utf-16-le"))
    add("year_9999", BINARY_KEY, encode(year_9999))  # a bad record with a binary key too
    # A return (motif in several scripts, an amount at the cent) and a cancellation of kept sales.
    retour = {"type_evenement": "retour", "retour_id": f"r-{uuid.uuid4().hex[:12]}", "vente_id": kept[0]["vente_id"],
              "client_id": kept[0]["client_id"], "timestamp": kept[0]["timestamp"], "quantite": 1, "montant": 0.01,
              "motif": "défectueux « écran » 李 ☕"}
    annulation = {"type_evenement": "annulation", "retour_id": f"a-{uuid.uuid4().hex[:12]}",
                  "vente_id": kept[1]["vente_id"], "client_id": kept[1]["client_id"], "timestamp": kept[1]["timestamp"]}
    add("retour", key(kept[0]), json.dumps(retour).encode())
    add("annulation", BINARY_KEY, json.dumps(annulation).encode())
    positions = _send_all(kafka_bootstrap, topic, records)
    pos = {name: positions[i] for name, i in at.items()}
    expected_quarantine = {pos["conflict"]: "conflicting_id", pos["not_json"]: "not_json",
                           pos["non_utf8"]: "non_utf8", pos["year_9999"]: "future_event"}

    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    paths = Paths.from_config(cfg)
    start_bronze_stream(spark, cfg, paths, available_now=True).awaitTermination()
    load = lambda p: spark.read.format("delta").load(str(p))  # noqa: E731

    # Bronze: the same rows, amounts and quantities in both engines, and what was sent.
    bronze_spark, bronze_rs = load(paths.bronze), _delta_rs(paths.bronze)
    ids = {e["vente_id"] for e in kept}
    assert bronze_spark.count() == bronze_rs.num_rows == len(kept)
    assert {r.vente_id for r in bronze_spark.select("vente_id").collect()} == ids
    assert set(bronze_rs.column("vente_id").to_pylist()) == ids
    montant = sum(Decimal(str(e["montant"])) for e in kept)
    quantite = sum(e["quantite"] for e in kept)
    spark_sums = bronze_spark.agg(F.sum("montant"), F.sum("quantite")).first()
    assert spark_sums[0] == pc.sum(bronze_rs.column("montant")).as_py() == montant
    assert spark_sums[1] == pc.sum(bronze_rs.column("quantite")).as_py() == quantite
    assert pa.types.is_decimal(bronze_rs.schema.field("montant").type)
    names = {r["vente_id"]: (r["client_nom"], r["ville"], r["produit_nom"]) for r in bronze_rs.to_pylist()}
    for e in kept[5:7]:
        assert names[e["vente_id"]] == (e["client_nom"], e["ville"], e["produit_nom"])
    # Lineage of keys: binary bytes kept exactly, text only when the key is valid UTF-8, null key null.
    by_id = {r["vente_id"]: r for r in bronze_rs.to_pylist()}
    spark_by_id = {r.vente_id: r for r in bronze_spark.collect()}
    for rows in (by_id, spark_by_id):
        assert rows[binary_keyed["vente_id"]]["kafka_key_bytes"] == BINARY_KEY
        assert rows[binary_keyed["vente_id"]]["kafka_key"] is None
        assert rows[unkeyed["vente_id"]]["kafka_key_bytes"] is None
        assert rows[unkeyed["vente_id"]]["kafka_key"] is None
        assert rows[kept[0]["vente_id"]]["kafka_key"] == kept[0]["client_id"]
        assert rows[kept[0]["vente_id"]]["kafka_key_bytes"] == kept[0]["client_id"].encode()
    # Event times to the microsecond (compared as epoch micros: Spark returns session-local times).
    rs_us = dict(zip(bronze_rs.column("vente_id").to_pylist(),
                     pc.cast(bronze_rs.column("event_ts"), pa.int64()).to_pylist()))
    assert rs_us == {r[0]: r[1] for r in bronze_spark.select("vente_id", F.unix_micros("event_ts")).collect()}
    sent = datetime.fromisoformat(kept[0]["timestamp"]) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert rs_us[kept[0]["vente_id"]] == sent // timedelta(microseconds=1)

    # Quarantine: the same records (by Kafka position) and reasons; raw bytes and binary keys intact.
    q_spark, q_rs = load(paths.quarantine), _delta_rs(paths.quarantine)
    spark_q = {(r.kafka_partition, r.kafka_offset): r.reason for r in q_spark.collect()}
    rs_q = {(r["kafka_partition"], r["kafka_offset"]): r["reason"] for r in q_rs.to_pylist()}
    assert q_spark.count() == q_rs.num_rows == len(expected_quarantine)
    assert spark_q == rs_q == expected_quarantine
    rs_rows = {(r["kafka_partition"], r["kafka_offset"]): r for r in q_rs.to_pylist()}
    for name in ("conflict", "not_json", "non_utf8", "year_9999"):
        assert rs_rows[pos[name]]["raw_value"] == records[at[name]][1]
        assert rs_rows[pos[name]]["kafka_key_bytes"] == records[at[name]][0]
    assert rs_rows[pos["year_9999"]]["kafka_key"] is None
    conflict = rs_rows[pos["conflict"]]
    assert (conflict["kept_partition"], conflict["kept_offset"]) == pos["first"]
    assert conflict["reasons"] == ["conflicting_id"]

    # Duplicates: the repeated record, pointing at the kept one.
    d_spark, d_rs = load(paths.duplicates), _delta_rs(paths.duplicates)
    assert d_spark.count() == d_rs.num_rows == 1
    spark_d = {(r.kafka_partition, r.kafka_offset): (r.kept_partition, r.kept_offset) for r in d_spark.collect()}
    rs_d = {(r["kafka_partition"], r["kafka_offset"]): (r["kept_partition"], r["kept_offset"])
            for r in d_rs.to_pylist()}
    assert spark_d == rs_d == {pos["duplicate"]: pos["original"]}
    assert d_rs.column("raw_value").to_pylist() == [records[at["duplicate"]][1]]

    # Metrics: every record read counted once.
    m_spark, m_rs = load(paths.bronze_metrics), _delta_rs(paths.bronze_metrics)
    assert m_spark.count() == m_rs.num_rows
    assert m_spark.agg(F.sum("input_rows")).first()[0] == pc.sum(m_rs.column("input_rows")).as_py() == len(records)
    assert pc.sum(m_rs.column("bronze_rows")).as_py() == len(kept)
    assert pc.sum(m_rs.column("correction_rows")).as_py() == 2

    # Corrections: the same rows in both engines, lineage and the refund exact.
    c_spark, c_rs = load(paths.corrections), _delta_rs(paths.corrections)
    spark_c = {r.retour_id: (r.type_evenement, r.vente_id, r.quantite, r.montant, r.motif, r.kafka_key_bytes)
               for r in c_spark.collect()}
    rs_c = {r["retour_id"]: (r["type_evenement"], r["vente_id"], r["quantite"], r["montant"], r["motif"],
                             r["kafka_key_bytes"]) for r in c_rs.to_pylist()}
    assert spark_c == rs_c == {
        retour["retour_id"]: ("retour", retour["vente_id"], 1, Decimal("0.01"), retour["motif"], key(kept[0])),
        annulation["retour_id"]: ("annulation", annulation["vente_id"], None, None, None, BINARY_KEY)}

    # No INT96 anywhere: every timestamp column of every data file is TIMESTAMP_MICROS.
    for path in (paths.bronze, paths.corrections, paths.quarantine, paths.duplicates, paths.bronze_metrics):
        files = DeltaTable(str(path)).file_uris()
        assert files, path
        for uri in files:
            local = uri.removeprefix("file://")
            physical = pq.ParquetFile(local).schema  # the Parquet schema, before any Arrow conversion
            for i in range(len(physical)):
                assert physical.column(i).physical_type != "INT96", (local, physical.column(i).path)
            arrow = pq.read_schema(local)
            stamps = [f for f in arrow if pa.types.is_timestamp(f.type)]
            assert stamps, local  # every table has at least kafka_timestamp / committed_at
            for f in stamps:
                assert f.type.unit == "us", (local, f.name, f.type)
