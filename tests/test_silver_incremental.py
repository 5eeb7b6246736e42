"""Incremental Silver equals a full recompute from Bronze, over random histories and crashes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
import random
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from pyspark.testing import assertDataFrameEqual
from pyspark.util import inheritable_thread_target

from lakehouse.silver import job as silver
from lakehouse.platform.paths import Paths
from lakehouse.silver.job import SilverInputError, run_silver
from lakehouse.silver.transforms import (ClientRules, clients_from_bronze, pays_from_bronze, segments_from_bronze,
                                         ventes_jour_from_bronze)
from tests.conftest import make_config
from tests.test_silver_transforms import BRONZE_SCHEMA

RULES = ClientRules(2, Decimal("500"), Decimal("100"))
ORACLES = {"clients": lambda df: clients_from_bronze(df, RULES), "pays": pays_from_bronze,
           "segments": segments_from_bronze, "ventes_jour": ventes_jour_from_bronze}


def random_sales(rng: random.Random, start: int, n: int) -> list[tuple]:
    rows = []
    for i in range(start, start + n):
        client = rng.randrange(12)
        day = dt.date(2024, 12, 1) + dt.timedelta(days=rng.randrange(4))
        event = dt.datetime(day.year, day.month, day.day, rng.randrange(24), rng.choice((0, 30)))
        rows.append((f"v{i:05d}", f"C{client}", f"P{rng.randrange(6)}", event, day, rng.randint(1, 5),
                     Decimal(rng.randint(1, 40000)) / 100, f"Client {client} v{rng.randrange(2)}",
                     rng.choice(("France", "Belgique", "Suisse")), rng.choice(("B2B", "B2C"))))
    return rows


def append_bronze(spark, paths: Paths, rows: list[tuple]) -> None:
    spark.createDataFrame(rows, BRONZE_SCHEMA).write.format("delta").mode("append").partitionBy("jour") \
        .save(str(paths.bronze))


def assert_silver_equals_full_recompute(spark, paths: Paths) -> None:
    bronze = spark.read.format("delta").load(str(paths.bronze))

    def compare(table: str) -> None:
        actual = spark.read.format("delta").load(str(paths.silver(table))).drop("updated_at")
        assertDataFrameEqual(actual, ORACLES[table](bronze).drop("updated_at"))

    # The four comparisons at once: their small jobs overlap (an assertion error still reaches the test).
    with ThreadPoolExecutor(len(ORACLES)) as pool:
        list(pool.map(inheritable_thread_target(spark)(compare), ORACLES))


def versions(spark, paths: Paths) -> dict[str, int]:
    return {t: spark.sql(f"DESCRIBE HISTORY delta.`{paths.silver(t)}`").agg({"version": "max"}).first()[0]
            for t in ORACLES}


@pytest.mark.parametrize("path", ["driver", "spark"])
def test_incremental_runs_equal_full_recompute(spark, tmp_path, monkeypatch, path) -> None:
    # Small batches are merged in the driver, large ones by Spark: each path on the same random history.
    if path == "spark":
        monkeypatch.setattr(silver, "DRIVER_BATCH_ROWS", 0)
    paths = Paths.from_config(make_config(tmp_path / "data"))
    rng = random.Random(7)
    start = 0
    for n in (40, 1, 30, 7):
        append_bronze(spark, paths, random_sales(rng, start, n))
        start += n
        assert run_silver(spark, RULES, paths) == n
        assert_silver_equals_full_recompute(spark, paths)
    # Nothing new: nothing read, no table touched.
    before = versions(spark, paths)
    assert run_silver(spark, RULES, paths) == 0
    assert versions(spark, paths) == before
    # Full refresh rebuilds the same tables.
    assert run_silver(spark, RULES, paths, full_refresh=True) == start
    assert_silver_equals_full_recompute(spark, paths)


def crash_on(monkeypatch, name: str, table: str, after_writing: bool) -> None:
    """Make the writer ``name`` (write_rows, merge_rows, _save, or the writer's MERGE of clients) fail for
    ``table``'s path, before or after its commit."""
    owner = silver.SilverBatchWriter if name == "_write_clients" else silver
    real = getattr(owner, name)

    def crashing(*args, **kwargs):
        path = {"_save": lambda: args[1], "_write_clients": lambda: "clients"}.get(name, lambda: args[0])()
        if Path(str(path)).name != table:
            return real(*args, **kwargs)
        if after_writing:
            real(*args, **kwargs)
        raise RuntimeError("simulated crash")
    monkeypatch.setattr(owner, name, crashing)


@pytest.mark.parametrize("name, table, after_writing", [
    ("write_rows", "pays", False),     # a small table not written: the others are, and are skipped next time
    ("merge_rows", "clients", True),   # clients written, then the crash: the re-run counts from before it
    ("_write_clients", "clients", True),  # the same on Spark's path
    ("_save", "ventes_jour", True),  # Spark's path: a small table written, then the crash
])
def test_a_batch_killed_midway_leaves_the_next_run_exact(spark, tmp_path, monkeypatch, name, table,
                                                          after_writing) -> None:
    if name in ("_save", "_write_clients"):
        monkeypatch.setattr(silver, "DRIVER_BATCH_ROWS", 0)
    paths = Paths.from_config(make_config(tmp_path / "data"))
    rng = random.Random(11)
    append_bronze(spark, paths, random_sales(rng, 0, 30))
    run_silver(spark, RULES, paths)
    append_bronze(spark, paths, random_sales(rng, 30, 30))
    with monkeypatch.context() as patched:
        crash_on(patched, name, table, after_writing)
        with pytest.raises(Exception, match="simulated crash"):
            run_silver(spark, RULES, paths)
    assert run_silver(spark, RULES, paths) == 30  # the same batch again
    assert_silver_equals_full_recompute(spark, paths)


def test_missing_bronze_is_a_clear_error(spark, tmp_path) -> None:
    paths = Paths.from_config(make_config(tmp_path / "data"))
    with pytest.raises(SilverInputError, match="Bronze table .* does not exist yet: run spark_streaming_delta.py"):
        run_silver(spark, RULES, paths)
