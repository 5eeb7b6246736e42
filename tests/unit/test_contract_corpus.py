"""The hostile corpus through both contract engines: Python and Spark give the same reasons, in the same
order, for every record (sales, returns and cancellations), and both give the verdict the corpus intends;
and the contract's per-type helpers."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.bronze.contract_check import with_contract_check
from lakehouse.ingest.contract import (
    EVENT_TYPES,
    FIELD_REASONS,
    FIELDS,
    OPTIONAL_FIELDS,
    REASONS,
    RECORD_REASONS,
    REQUIRED_FIELDS,
    ContractLimits,
    Field,
    event_type_of,
    fields_of,
    is_naive_timestamp,
    optional_fields,
    required_fields,
    timestamp_micros,
    violations,
)
from tests.support.hostile_corpus import NAIVE_LIMITS, NAIVE_ZONE, correction_corpus, hostile_corpus, naive_corpus

KAFKA_SCHEMA = T.StructType([
    T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
])


def _show(reasons: list[str] | None) -> str:
    return "None" if reasons is None else ",".join(reasons) or "-"


def test_python_and_spark_give_the_intended_verdict_on_every_hostile_record(spark) -> None:
    # A fixed time a few minutes in the past, so that least(Kafka timestamp, now) is the Kafka timestamp.
    reference = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=5)
    reference_us = int(reference.timestamp()) * 1_000_000
    limits = ContractLimits()
    corpus = hostile_corpus(reference) + correction_corpus(reference)

    assert len(corpus) >= 300, len(corpus)
    assert len({c.name for c in corpus}) == len(corpus)
    covered = {reason.split(":")[0] for case in corpus for reason in case.expected}
    assert set(RECORD_REASONS + FIELD_REASONS) <= covered, set(RECORD_REASONS + FIELD_REASONS) - covered

    rows = [(b"k", bytearray(c.value) if c.value is not None else None, "corpus", 0, i, reference)
            for i, c in enumerate(corpus)]
    checked = with_contract_check(spark.createDataFrame(rows, KAFKA_SCHEMA), limits)
    spark_reasons = {r.kafka_offset: list(r.reasons) for r in checked.select("kafka_offset", "reasons").collect()}

    mismatches = []
    for i, case in enumerate(corpus):
        python = violations(case.value, limits, reference_us)
        on_spark = spark_reasons.get(i)
        if not (python == on_spark == case.expected):
            mismatches.append((case.name, _show(python), _show(on_spark), _show(case.expected)))
    if mismatches:
        widths = [max(len(row[k]) for row in mismatches + [("case", "python", "spark", "expected")]) for k in range(4)]
        widths = [min(w, 60) for w in widths]
        lines = [" | ".join(h.ljust(w) for h, w in zip(("case", "python", "spark", "expected"), widths))]
        lines += [" | ".join(col[:60].ljust(w) for col, w in zip(row, widths)) for row in mismatches]
        print("\n".join(lines))
        print(f"per class: {dict(Counter(c.klass for c in corpus))}")
    assert not mismatches, f"{len(mismatches)} of {len(corpus)} records disagree:\n" + "\n".join(
        f"{name}: python={p} spark={s} expected={e}" for name, p, s, e in mismatches)


def test_timestamps_without_offset_read_in_the_configured_zone_agree(spark) -> None:
    # [streaming] naive_timezone (issue #32): both engines read a naive date-time as the zone's wall-clock
    # time, to the same instant (changes of the clocks included), flag it, and judge it like any sale.
    reference = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=5)
    reference_us = int(reference.timestamp()) * 1_000_000
    corpus = naive_corpus(reference)
    rows = [(None, bytearray(c.value), "corpus", 0, i, reference) for i, c in enumerate(corpus)]
    checked = with_contract_check(spark.createDataFrame(rows, KAFKA_SCHEMA), NAIVE_LIMITS)
    on_spark = {r.kafka_offset: r for r in checked.select(
        "kafka_offset", "reasons", F.unix_micros("event_ts").alias("event_us"), "timestamp_naif").collect()}
    actual, expected = [], []
    for i, case in enumerate(corpus):
        text = json.loads(case.value)["timestamp"]
        python_us = timestamp_micros(text, NAIVE_ZONE)
        expected.append((case.name, case.expected, case.expected, python_us, is_naive_timestamp(text)))
        actual.append((case.name, violations(case.value, NAIVE_LIMITS, reference_us), list(on_spark[i].reasons),
                       on_spark[i].event_us, on_spark[i].timestamp_naif))
    assert actual == expected
    assert timestamp_micros("2025-03-30T02:30:00", NAIVE_ZONE) == timestamp_micros("2025-03-30T01:30:00Z")
    assert timestamp_micros("2025-10-26T02:30:00", NAIVE_ZONE) == timestamp_micros("2025-10-26T00:30:00Z")
    # Refused when naive_timezone = reject (the ContractLimits default), as before.
    assert violations(corpus[0].value, ContractLimits(), reference_us) == ["bad_timestamp"]


def test_each_event_type_has_its_own_fields() -> None:
    # Issue 31: the order of FIELDS is the order of the reasons; a sale's keep their order.
    assert [f.name for f in FIELDS] == [
        "type_evenement", "vente_id", "retour_id", "client_id", "produit_id", "timestamp", "quantite", "montant",
        "client_nom", "produit_nom", "categorie", "pays", "segment", "prix_unitaire", "ville", "canal", "devise",
        "motif", "contract_version"]
    assert EVENT_TYPES == ("vente", "retour", "annulation")
    assert "unknown_event_type" in FIELD_REASONS and "unknown_event_type" in REASONS
    # For a sale, as before (the simulator and other code import these).
    assert REQUIRED_FIELDS == required_fields() == required_fields("vente") == (
        "vente_id", "client_id", "produit_id", "timestamp", "quantite", "montant", "client_nom", "produit_nom",
        "categorie", "pays", "segment")
    assert OPTIONAL_FIELDS == optional_fields("vente") == (
        "type_evenement", "prix_unitaire", "ville", "canal", "devise", "contract_version")
    assert required_fields("retour") == ("vente_id", "retour_id", "client_id", "timestamp", "quantite", "montant")
    assert required_fields("annulation") == ("vente_id", "retour_id", "client_id", "timestamp")
    assert optional_fields("retour") == optional_fields("annulation") == ("type_evenement", "motif", "contract_version")
    assert [f.name for f in fields_of("annulation")] == [
        "type_evenement", "vente_id", "retour_id", "client_id", "timestamp", "motif", "contract_version"]
    for unknown in ("refund", "Vente", ""):
        with pytest.raises(ValueError, match="unknown event type"):
            required_fields(unknown)


def test_a_record_is_judged_as_a_sale_unless_it_names_another_type() -> None:
    cases = [({}, "vente"), ({"type_evenement": None}, "vente"), ({"type_evenement": "vente"}, "vente"),
             ({"type_evenement": "retour"}, "retour"), ({"type_evenement": "annulation"}, "annulation"),
             ({"type_evenement": "Retour"}, "vente"), ({"type_evenement": "retour "}, "vente"),
             ({"type_evenement": ""}, "vente"), ({"type_evenement": 1}, "vente"), ({"type_evenement": True}, "vente"),
             ({"type": "retour"}, "vente")]
    assert [(event, event_type_of(event)) for event, _ in cases] == cases


def test_a_field_declaration_is_checked_where_it_is_made() -> None:
    assert Field("x", "id", ("vente", "retour"), ("retour",)).is_required("retour")
    assert not Field("x", "id", ("vente", "retour"), ("retour",)).is_required("vente")
    assert not Field("x", "text", ("retour",)).is_part_of("vente")
    for args, message in [(("x", "uuid", ("vente",)), "unknown kind 'uuid'"),
                          (("x", "id", ("refund",)), "types"), (("x", "id", ()), "types"),
                          (("x", "id", ("vente",), ("retour",)), "required for")]:
        with pytest.raises(ValueError, match=message):
            Field(*args)


def test_check_contract_types_each_event_s_own_columns(spark) -> None:
    # Fields that are not part of a record's type come out null; type_evenement is the value as sent ("vente"
    # when absent or null), after the sale's columns and just before raw_text.
    reference = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=5)
    at = reference - timedelta(minutes=1)
    ts, at_us = at.isoformat(), int(at.timestamp()) * 1_000_000
    sold = {"vente_id": "V1", "client_id": "C1", "produit_id": "P1", "timestamp": ts, "quantite": 2, "montant": 10.5,
            "client_nom": "Ana", "produit_nom": "Stylo", "categorie": "Bureau", "pays": "France",
            "segment": "Particulier"}
    retour = {"type_evenement": "retour", "retour_id": "R1", "vente_id": "V1", "client_id": "C1", "timestamp": ts,
              "quantite": 1, "montant": 5.25}
    annulation = {"type_evenement": "annulation", "retour_id": 42, "vente_id": "V1", "client_id": "C1",
                  "timestamp": ts}
    values = [
        sold,
        {**sold, "type_evenement": None},
        {**sold, "type_evenement": "vente", "retour_id": "R9", "motif": "erreur"},
        {**retour, "motif": "abîmé", "produit_id": "P1", "client_nom": "Ana", "segment": "B2C", "prix_unitaire": 5.25},
        {**annulation, "quantite": 3, "montant": -1, "motif": ""},
        {**retour, "type_evenement": "refund"},
        {**annulation, "type_evenement": 5},
    ]
    rows = [(b"k", bytearray(json.dumps(v, ensure_ascii=False).encode()), "t", 0, i, reference)
            for i, v in enumerate(values)] + [(b"k", bytearray(b"pas du json"), "t", 0, len(values), reference)]
    checked = with_contract_check(spark.createDataFrame(rows, KAFKA_SCHEMA), ContractLimits(), now=reference)

    columns = checked.columns
    at_raw_text = columns.index("raw_text")
    assert columns[at_raw_text - 4:at_raw_text] == ["contract_version", "type_evenement", "retour_id", "motif"]
    assert {name: kind for name, kind in checked.dtypes if name in ("type_evenement", "retour_id", "motif")} == {
        "type_evenement": "string", "retour_id": "string", "motif": "string"}
    actual = [tuple(r) for r in checked.orderBy("kafka_offset").select(
        "type_evenement", "vente_id", "retour_id", "client_id", "produit_id", F.unix_micros("event_ts"), "quantite",
        "montant", "prix_unitaire", "client_nom", "segment", "motif", "reasons").collect()]
    sale_only = ["produit_id", "client_nom", "produit_nom", "categorie", "pays", "segment"]
    expected = [
        ("vente", "V1", None, "C1", "P1", at_us, 2, Decimal("10.50"), None, "Ana", "B2C", None, []),
        ("vente", "V1", None, "C1", "P1", at_us, 2, Decimal("10.50"), None, "Ana", "B2C", None, []),
        ("vente", "V1", None, "C1", "P1", at_us, 2, Decimal("10.50"), None, "Ana", "B2C", None, []),
        ("retour", "V1", "R1", "C1", None, at_us, 1, Decimal("5.25"), None, None, None, "abîmé", []),
        ("annulation", "V1", "42", "C1", None, at_us, None, None, None, None, None, "", []),
        ("refund", "V1", None, "C1", None, at_us, 1, Decimal("5.25"), None, None, None, None,
         ["unknown_event_type", *[f"missing_field:{f}" for f in sale_only]]),
        ("5", "V1", None, "C1", None, at_us, None, None, None, None, None, None,
         ["wrong_type:type_evenement", "missing_field:produit_id", "missing_field:quantite", "missing_field:montant",
          *[f"missing_field:{f}" for f in sale_only[1:]]]),
        ("vente", None, None, None, None, None, None, None, None, None, None, None, ["not_json"]),
    ]
    assert actual == expected
    assert [violations(bytes(r[1]), ContractLimits(), int(reference.timestamp()) * 1_000_000) for r in rows] == [
        e[-1] for e in expected]
