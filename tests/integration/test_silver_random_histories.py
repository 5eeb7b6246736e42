"""Random histories of sales, returns and cancellations end to end, against the plain-Python oracle of
tests/unit/test_silver_corrections.py: Kafka-like records → the real Bronze writer (duplicates, conflicting ids,
several partitions and batches) → Silver run after random Bronze batches by either path, then rebuilt in one
batch by the driver path and by Spark's. Each history makes a few dozen commits to real Delta tables."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid

import pytest

from lakehouse.platform.paths import Paths
from lakehouse.silver import job as silver
from lakehouse.silver.job import run_silver
from tests.conftest import make_config
from tests.unit.test_silver_corrections import (
    RULES,
    UTC,
    _split,
    assert_matches,
    bronze_order,
    feed_bronze,
    oracle,
    random_history,
    read_silver,
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
