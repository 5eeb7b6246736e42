"""Bronze transforms on small batch DataFrames: contract check, typing, duplicates, late, quarantine."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal

from pyspark.sql import Row
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from lakehouse.bronze.columns import BRONZE_COLUMNS, DUPLICATES_COLUMNS, QUARANTINE_COLUMNS
from lakehouse.bronze.contract_check import with_contract_check
from lakehouse.bronze.dedup import Decision, DedupState, Kept, SaleKey, find_duplicates
from lakehouse.bronze.writer import DECISIONS_SCHEMA, to_bronze_rows, to_duplicate_rows, to_quarantine_rows
from lakehouse.ingest.contract import ContractLimits, violations
from lakehouse.ingest.simulator import SalesSimulator

KAFKA_SCHEMA = T.StructType([
    T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
])
KAFKA_TS = dt.datetime(2024, 12, 12, 10, 16)
KAFKA_TS_US = int(KAFKA_TS.replace(tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
NOW = KAFKA_TS.replace(tzinfo=dt.timezone.utc)  # the checks judge the Kafka timestamp as of this time


def limits(max_bytes: int = 65536) -> ContractLimits:
    return ContractLimits(max_event_bytes=max_bytes)


def kafka_rows(spark, values: list[bytes | None]):
    return spark.createDataFrame(
        [(b"k", bytearray(v) if v is not None else None, "t", 0, i, KAFKA_TS) for i, v in enumerate(values)],
        KAFKA_SCHEMA)


def _sale(**changes: object) -> bytes:
    sale = {"vente_id": "v1", "client_id": "C1", "produit_id": "P1", "timestamp": "2024-12-12T10:15:00Z",
            "quantite": 1, "montant": 10, "client_nom": "a", "produit_nom": "b", "categorie": "c", "pays": "France",
            "segment": "B2C"}
    return json.dumps({**sale, **changes}).encode()


# An event time too far ahead or behind is judged apart from the other fields (with the batch's clock):
# its reason must still take its place among theirs, as in the Python verdict.
FUTURE, STALE = "2025-03-01T00:00:00Z", "2019-01-01T00:00:00Z"
TIME_AMONG_OTHERS = [
    _sale(timestamp=FUTURE), _sale(timestamp=STALE),
    _sale(vente_id="", timestamp=FUTURE, quantite=0),
    _sale(vente_id="", client_id=True, produit_id="", timestamp=STALE, montant=-1, devise="\u0001"),
    _sale(client_id=[1], timestamp=FUTURE),  # a record-level reason wins
    _sale(timestamp=FUTURE, quantite=0, segment="X"),
]


def test_spark_contract_check_names_the_same_reasons_as_the_python_contract(spark) -> None:
    sim = SalesSimulator(3, 100, bad_ratio=0.6, duplicate_ratio=0.1, max_event_bytes=2048,
                         clock=lambda: KAFKA_TS.replace(tzinfo=dt.timezone.utc))
    gen = sim.records()
    values = [next(gen).value for _ in range(300)] + [None, b"[1, 2]", b'"texte"', b"null"] + TIME_AMONG_OTHERS
    actual_df = kafka_rows(spark, values).transform(lambda df: with_contract_check(df, limits(2048), NOW)) \
        .select("kafka_offset", "reasons")
    expected_df = spark.createDataFrame(
        [(i, violations(v, limits(2048), KAFKA_TS_US, KAFKA_TS_US)) for i, v in enumerate(values)], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)


def test_valid_shapes_are_typed_and_normalized(spark) -> None:
    legacy = {"vente_id": 7, "client_id": 42, "produit_id": 3, "timestamp": "2024-12-12T10:15:25.123456Z",
              "quantite": 2, "montant": 150.5, "client_nom": "Jean Dupont", "produit_nom": "Souris",
              "categorie": "Accessoires", "pays": "France", "segment": "Particulier"}
    modern = {"vente_id": "a-b", "client_id": "C1", "produit_id": "P1",
              "timestamp": "2024-12-12T11:15:25.000+01:00", "quantite": 10, "montant": 1799.9,
              "prix_unitaire": 179.99, "client_nom": "ACME SA", "produit_nom": "Écran", "categorie": "IT",
              "pays": "Belgique", "ville": "Liège", "segment": "Entreprise", "canal": "web", "devise": "EUR",
              "contract_version": 1, "code_promo": "NOEL24"}
    values = [json.dumps(legacy).encode(), json.dumps(modern, ensure_ascii=False).encode()]
    actual_df = kafka_rows(spark, values).transform(lambda df: with_contract_check(df, limits(), NOW)).select(
        "reasons", "vente_id", "client_id", "produit_id", "event_ts", "jour", "quantite", "montant",
        "prix_unitaire", "segment", "ville", "canal", "contract_version", "raw_text")
    expected_df = spark.createDataFrame([
        Row(reasons=[], vente_id="7", client_id="42", produit_id="3",
            event_ts=dt.datetime(2024, 12, 12, 10, 15, 25, 123456), jour=dt.date(2024, 12, 12), quantite=2,
            montant=Decimal("150.50"), prix_unitaire=None, segment="B2C", ville=None, canal=None,
            contract_version=None, raw_text=values[0].decode()),
        Row(reasons=[], vente_id="a-b", client_id="C1", produit_id="P1",
            event_ts=dt.datetime(2024, 12, 12, 10, 15, 25), jour=dt.date(2024, 12, 12), quantite=10,
            montant=Decimal("1799.90"), prix_unitaire=Decimal("179.99"), segment="B2B", ville="Liège",
            canal="web", contract_version=1, raw_text=values[1].decode()),
    ], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)


def test_quarantine_keeps_raw_bytes_and_every_reason(spark) -> None:
    values = [b"\xff\xfebad", b"", b'{"quantite": 0}']
    checked = kafka_rows(spark, values).transform(lambda df: with_contract_check(df, limits(), NOW))
    actual_df = to_quarantine_rows(checked, None, "q", 4).select("kafka_offset", "reason", "raw_value", "raw_text",
                                                           "bronze_query_id", "bronze_batch_id")
    expected_df = spark.createDataFrame([
        (0, "non_utf8", bytearray(b"\xff\xfebad"), None, "q", 4),
        (1, "empty", bytearray(b""), None, "q", 4),
        (2, "missing_field", bytearray(b'{"quantite": 0}'), '{"quantite": 0}', "q", 4),
    ], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)
    assert to_quarantine_rows(checked, None, "q", 4).columns == QUARANTINE_COLUMNS
    reasons = {r.kafka_offset: r.reasons for r in to_quarantine_rows(checked, None, "q", 4).collect()}
    assert reasons[2][:4] == ["missing_field:vente_id", "missing_field:client_id", "missing_field:produit_id",
                             "missing_field:timestamp"]
    assert reasons[2][4] == "bad_quantity" and reasons[2][-1] == "missing_field:segment"


MIN_US = 60_000_000
DELAY_US = 10 * MIN_US
T0 = 1_734_000_000_000_000


def key(vente_id: str, event_us: int, partition: int, offset: int, content: int = 1) -> SaleKey:
    return SaleKey(vente_id, event_us, content, partition, offset)


def test_duplicates_and_conflicts_within_batch_and_against_earlier_batches() -> None:
    keys = [
        key("A", T0, 0, 10),                     # A again, same content: duplicate of offset 9
        key("A", T0, 1, 3),                      # same again in another partition: duplicate
        key("A", T0, 0, 9),                      # the first A (lowest offset of partition 0)
        key("B", T0 + 5 * MIN_US, 0, 11, 2),     # B kept by an earlier batch, same content: duplicate
        key("C", T0 + 2 * MIN_US, 0, 12, 7),     # C kept before, other content, 2 minutes away: conflict
        key("C", T0 + 30 * MIN_US, 0, 13, 8),    # C again, 30 minutes away: another sale, kept
        key("D", T0 - 120 * MIN_US, 0, 14),      # new, old event time (late): kept
    ]
    earlier_b, earlier_c = Kept(T0 + 5 * MIN_US, 2, 2, 1), Kept(T0, 5, 2, 2)
    seen = {"B": [earlier_b], "C": [earlier_c]}
    decisions, kept = find_duplicates(keys, seen, DELAY_US)
    first_a = Kept(T0, 1, 0, 9)
    assert decisions == [Decision(keys[0], "duplicate", first_a), Decision(keys[3], "duplicate", earlier_b),
                         Decision(keys[4], "conflicting_id", earlier_c), Decision(keys[1], "duplicate", first_a)]
    assert kept == {"A": [first_a], "C": [Kept(T0 + 30 * MIN_US, 8, 0, 13)], "D": [Kept(T0 - 120 * MIN_US, 1, 0, 14)]}
    assert seen == {"B": [earlier_b], "C": [earlier_c]}  # unchanged until the batch commits


def test_an_id_reused_by_a_restarted_producer_is_a_conflict_not_a_duplicate() -> None:
    # An older producer restarts its counter: ids 1..3 again, other sales, a minute later.
    first = [key(str(i), T0, 0, i, content=100 + i) for i in range(1, 4)]
    _, kept = find_duplicates(first, {}, DELAY_US)
    again = [key(str(i), T0 + MIN_US, 0, 10 + i, content=200 + i) for i in range(1, 4)]
    decisions, kept_again = find_duplicates(again, kept, DELAY_US)
    assert [d.kind for d in decisions] == ["conflicting_id"] * 3 and kept_again == {}
    assert [(d.kept.partition, d.kept.offset) for d in decisions] == [(0, 1), (0, 2), (0, 3)]


def test_the_decisions_are_those_of_comparing_every_record_in_kafka_order() -> None:
    # find_duplicates compares only the records whose id is met twice or was kept before; the result
    # must be that of comparing every record, in Kafka order, with the sales kept before it.
    def every_record(keys, seen):
        decisions, kept = [], {}
        for k in sorted(keys, key=lambda k: (k.partition, k.offset)):
            earlier = [*seen.get(k.vente_id, ()), *kept.get(k.vente_id, ())]
            same = [s for s in earlier if (s.content, s.event_us) == (k.content, k.event_us)]
            near = [s for s in earlier if abs(k.event_us - s.event_us) <= DELAY_US]
            if same or near:
                decisions.append(Decision(k, "duplicate" if same else "conflicting_id", (same or near)[0]))
            else:
                kept.setdefault(k.vente_id, []).append(Kept(k.event_us, k.content, k.partition, k.offset))
        return decisions, kept

    rng = random.Random(7)
    for _ in range(200):
        seen = {str(i): [Kept(T0 + rng.randrange(4) * 6 * MIN_US, rng.randrange(3), 9, i)]
                for i in rng.sample(range(12), 4)}
        keys = [key(str(rng.randrange(12)), T0 + rng.randrange(4) * 6 * MIN_US, rng.randrange(3), offset,
                    rng.randrange(3)) for offset in rng.sample(range(100), rng.randrange(1, 25))]
        assert find_duplicates(keys, seen, DELAY_US) == every_record(keys, seen)


def test_state_watermark_pruning_and_lookups() -> None:
    state = DedupState(DELAY_US)
    assert state.watermark_us is None and not state.needs_lookup(key("X", 0, 0, 0))
    a, b, c = Kept(T0, 1, 0, 0), Kept(T0 + 5 * MIN_US, 1, 0, 1), Kept(T0 + 40 * MIN_US, 1, 0, 2)
    state.add({"A": [a], "B": [b]})
    assert state.watermark_us == T0 + 5 * MIN_US - DELAY_US
    state.add({"C": [c]})
    # The floor is the latest event time minus twice the delay: A and B can no longer match an on-time sale.
    assert state.floor_us == T0 + 20 * MIN_US and state.seen == {"C": [c]}
    assert state.watermark_us == T0 + 30 * MIN_US
    on_time, late = key("Y", T0 + 31 * MIN_US, 0, 0), key("A", T0 + 2 * MIN_US, 0, 1)
    assert not state.needs_lookup(on_time) and state.needs_lookup(late)
    state.remember("A", a)
    state.remember("A", a)
    assert state.seen["A"] == [a]


def sale(vente_id, timestamp, montant=1):
    return json.dumps({"vente_id": vente_id, "client_id": 2, "produit_id": 3, "timestamp": timestamp,
                       "quantite": 1, "montant": montant, "client_nom": "a", "produit_nom": "b",
                       "categorie": "c", "pays": "d", "segment": "B2C"}).encode()


def test_bronze_quarantine_and_duplicate_rows_follow_the_decisions(spark) -> None:
    checked = kafka_rows(spark, [sale(1, "2024-12-12T10:00:00Z"), sale(1, "2024-12-12T10:00:00Z"),
                                 sale(2, "2024-12-12T08:00:00Z"), b"{}", sale(1, "2024-12-12T10:00:00Z", 5)]) \
        .transform(lambda df: with_contract_check(df, limits(), NOW))
    # The checked rows themselves, as the writer reads its cached batch: the three tables' plans over the
    # contract check's own take Spark's optimizer seconds each.
    checked = spark.createDataFrame(checked.collect(), checked.schema)
    decisions_df = spark.createDataFrame([(0, 1, "duplicate", 0, 0), (0, 4, "conflicting_id", 0, 0)],
                                         DECISIONS_SCHEMA)
    watermark_us = int(dt.datetime(2024, 12, 12, 9, 50, tzinfo=dt.timezone.utc).timestamp() * 1_000_000)
    bronze = to_bronze_rows(checked, decisions_df, watermark_us, "q", 5)
    assert bronze.columns == BRONZE_COLUMNS
    actual_df = bronze.select("vente_id", "kafka_offset", "is_late", "bronze_query_id", "bronze_batch_id")
    expected_df = spark.createDataFrame([("1", 0, False, "q", 5), ("2", 2, True, "q", 5)], actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)

    quarantine = to_quarantine_rows(checked, decisions_df, "q", 5)
    assert quarantine.columns == QUARANTINE_COLUMNS
    actual_df = quarantine.select("kafka_offset", "reason", "kept_partition", "kept_offset", "raw_text")
    expected_df = spark.createDataFrame([(3, "missing_field", None, None, "{}"),
                                         (4, "conflicting_id", 0, 0, sale(1, "2024-12-12T10:00:00Z", 5).decode())],
                                        actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)

    duplicates = to_duplicate_rows(checked, decisions_df, "q", 5)
    assert duplicates.columns == DUPLICATES_COLUMNS
    actual_df = duplicates.select("vente_id", "kafka_offset", "kept_partition", "kept_offset", "raw_value")
    expected_df = spark.createDataFrame([("1", 1, 0, 0, bytearray(sale(1, "2024-12-12T10:00:00Z")))],
                                        actual_df.schema)
    assertDataFrameEqual(actual_df, expected_df)

    no_watermark = to_bronze_rows(checked, None, None, "q", 5).select("kafka_offset", "is_late")
    assertDataFrameEqual(no_watermark, spark.createDataFrame(
        [(0, False), (1, False), (2, False), (4, False)], no_watermark.schema))


def test_a_producer_set_kafka_timestamp_cannot_open_the_calendar(spark) -> None:
    # Kafka accepts record timestamps as old as year 1: the reference is kept within [now - age, now].
    def dated(timestamp):
        return sale(9, timestamp)
    cases = [  # (event time, Kafka timestamp, reasons)
        ("0001-01-01T00:00:00+14:00", dt.datetime(1, 1, 1), ["stale_event"]),
        ("1970-01-01T00:00:00Z", dt.datetime(1970, 1, 1), ["stale_event"]),
        ("2023-12-13T10:16:00Z", dt.datetime(1970, 1, 1), []),  # at the bound: now minus 365 days
        ("2024-12-12T10:00:00Z", dt.datetime(1970, 1, 1), ["future_event"]),
        ("2024-12-12T10:22:00Z", dt.datetime(2030, 1, 1), ["future_event"]),
    ]
    df = spark.createDataFrame([(b"k", bytearray(dated(e)), "t", 0, i, k) for i, (e, k, _) in enumerate(cases)],
                               KAFKA_SCHEMA)
    checked = with_contract_check(df, limits(), NOW).select("kafka_offset", "reasons")
    actual = [list(r.reasons) for r in checked.orderBy("kafka_offset").collect()]
    python = [violations(dated(e), limits(), int(k.replace(tzinfo=dt.timezone.utc).timestamp() * 1_000_000),
                         KAFKA_TS_US) for e, k, _ in cases]
    assert actual == python == [r for _, _, r in cases]


def test_pruning_by_minute_keeps_exactly_the_sales_at_or_after_the_floor() -> None:
    state = DedupState(DELAY_US)
    minute = 60_000_000
    start = (T0 // minute) * minute + 30_000_000  # mid-minute: the floor will fall inside a minute
    early, late = Kept(start - 1, 1, 0, 0), Kept(start + 1, 1, 0, 1)
    state.remember("early", early)
    state.remember("both", early)
    state.remember("both", late)
    state.add({"top": [Kept(start + 2 * DELAY_US, 1, 0, 2)]})  # floor = start
    assert state.floor_us == start
    assert state.seen == {"both": [late], "top": [Kept(start + 2 * DELAY_US, 1, 0, 2)]}
    state.add({"later": [Kept(start + 3 * DELAY_US, 1, 0, 3)]})
    assert set(state.seen) == {"top", "later"}
