"""Random histories of sales, returns and cancellations end to end, against the plain-Python oracle of
tests/unit/test_silver_corrections.py: Kafka-like records → the real Bronze writer (duplicates, conflicting ids,
several partitions and batches) → Silver run after random Bronze batches by either path, then rebuilt in one
batch by the driver path and by Spark's. Each history makes a few dozen commits to real Delta tables. And one
history whose correction, waiting since a small batch (the driver path), applies in a large one (Spark's)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from lakehouse.bronze.metrics_sink import MetricsSink
from lakehouse.bronze.writer import BronzeBatchWriter
from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.paths import Paths
from lakehouse.silver import job as silver
from lakehouse.silver.job import run_silver
from lakehouse.silver.transforms import TOTALS
from tests.conftest import make_config
from tests.integration.test_bronze_commits import KAFKA_SCHEMA, Feed
from tests.unit.test_silver_corrections import (
    PRODUCTS,
    RULES,
    UTC,
    Ev,
    _split,
    assert_matches,
    bronze_order,
    oracle,
    random_history,
)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_histories_end_to_end_equal_the_oracle_incrementally_and_rebuilt(spark, tmp_path, monkeypatch,
                                                                                 seed) -> None:
    rng = random.Random(seed)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    base = (now - dt.timedelta(days=1)).replace(hour=23, minute=58, second=30)
    sent = [(rng.randrange(3), e) for e in random_history(rng, base, 25)]
    batches = _split(rng, sent)
    # Bronze's arrival order: batch by batch, and within a batch by partition then offset.
    arrived = [e for batch in batches for _, e in sorted(batch, key=lambda pe: pe[0])]  # a stable sort
    expected = oracle(bronze_order(arrived))
    cfg = make_config(tmp_path / "data")
    lake = Paths.from_config(cfg)
    checkpoint = lake.bronze_checkpoint
    checkpoint.mkdir(parents=True)
    (checkpoint / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}))
    # Silver after some Bronze batches, each run by one path or the other at random.
    runs = {i: rng.random() < 0.5 for i in range(len(batches)) if rng.random() < 0.6}
    feed_bronze(spark, lake, checkpoint, batches, runs, cfg, monkeypatch)
    run_silver(spark, RULES, lake)
    assert_matches(expected, *read_silver(spark, lake))
    # Rebuilt from Bronze in one batch: by the driver path, then by Spark's.
    run_silver(spark, RULES, lake, full_refresh=True)
    assert_matches(expected, *read_silver(spark, lake))
    monkeypatch.setattr(silver, "DRIVER_BATCH_ROWS", 0)
    run_silver(spark, RULES, lake, full_refresh=True)
    assert_matches(expected, *read_silver(spark, lake))


def feed_bronze(spark, lake: Paths, checkpoint: Path, batches: list[list[tuple[int, Ev]]],
                silver_after: dict[int, bool], cfg, monkeypatch) -> None:
    """Each batch through the Bronze writer (records on several partitions); Silver after the marked ones, by the
    driver path (True) or by Spark's (False)."""
    clock = itertools.count(int(dt.datetime.now(UTC).timestamp()))
    writer = BronzeBatchWriter(spark, cfg, lake, checkpoint, MetricsSink(spark, lake.bronze_metrics, 3600.0),
                               clock=lambda: float(next(clock)))
    feed = Feed(spark)
    offsets = Counter()
    for batch_id, batch in enumerate(batches):
        records = []
        for partition, e in batch:
            records.append((partition, offsets[partition], e))
            offsets[partition] += 1
        writer(feed_batch(feed, records), batch_id)
        if batch_id in silver_after and delta_table_exists(lake.bronze):
            with monkeypatch.context() as patched:
                if not silver_after[batch_id]:
                    patched.setattr(silver, "DRIVER_BATCH_ROWS", 0)
                run_silver(spark, RULES, lake)


def feed_batch(feed: Feed, records: list[tuple[int, int, Ev]]):
    from lakehouse.bronze.contract_check import check_contract
    from lakehouse.ingest.contract import ContractLimits
    now = dt.datetime.now(UTC).replace(tzinfo=None)
    rows = [(b"k", bytearray(e.value()), "t", partition, offset, now) for partition, offset, e in records]
    return check_contract(feed.spark.createDataFrame(rows, KAFKA_SCHEMA), ContractLimits())


def read_silver(spark, lake: Paths) -> tuple:
    def rows(table: str) -> list[dict]:
        return [r.asDict(recursive=True) for r in spark.read.format("delta").load(str(lake.silver(table))).collect()]
    return (rows("ventes"), rows("clients"), {t: rows(t) for t in TOTALS}, rows("corrections_en_attente"),
            rows("rejets"))


def test_a_correction_waiting_from_a_small_batch_applies_in_a_large_one(spark, tmp_path, monkeypatch) -> None:
    # The waiting correction is read back through delta-rs, the large batch's events through Spark: both paths
    # must agree on times (aware, UTC) to order them.
    now = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    sale = Ev("vente", "v1", "C0", now, produit=PRODUCTS[0], quantite=3, montant=Decimal("30.00"))
    early = Ev("retour", "v1", "C0", now + dt.timedelta(seconds=1), retour_id="r1", quantite=1,
               montant=Decimal("10.00"))
    later = Ev("retour", "v1", "C0", now + dt.timedelta(seconds=2), retour_id="r2", quantite=2,
               montant=Decimal("20.01"))
    other = Ev("vente", "v2", "C1", now, produit=PRODUCTS[1], quantite=1, montant=Decimal("5.00"))
    cfg = make_config(tmp_path / "data")
    lake = Paths.from_config(cfg)
    lake.bronze_checkpoint.mkdir(parents=True)
    (lake.bronze_checkpoint / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}))
    batches = [[(0, other), (1, early)], [(0, sale), (1, later)]]
    feed_bronze(spark, lake, lake.bronze_checkpoint, batches, {0: True, 1: False}, cfg, monkeypatch)
    expected = oracle([other, early, sale, later])
    assert expected.ventes["v1"]["corrections"] == ["r1"]  # r2 asks for more money than remains
    assert_matches(expected, *read_silver(spark, lake))
