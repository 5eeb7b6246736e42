"""The hostile corpus through both contract engines: Python and Spark give the same reasons, in the same
order, for every record, and both give the verdict the corpus intends."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.bronze.contract_check import with_contract_check
from lakehouse.ingest.contract import (FIELD_REASONS, RECORD_REASONS, ContractLimits, is_naive_timestamp,
                                       timestamp_micros, violations)
from tests.hostile_corpus import NAIVE_LIMITS, NAIVE_ZONE, hostile_corpus, naive_corpus

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
    corpus = hostile_corpus(reference)

    assert len(corpus) >= 300, len(corpus)
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
