"""Incremental Silver equals a full recompute from Bronze, over random histories and crashes; with returns and
cancellations, a crash in the middle of a batch ends in the oracle's tables and an uninterrupted run's."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual
from pyspark.util import inheritable_thread_target

from lakehouse.bronze.tables import CORRECTIONS_SCHEMA
from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.paths import Paths
from lakehouse.silver import job as silver
from lakehouse.silver.corrections import SALE, apply_batch
from lakehouse.silver.job import SilverInputError, bronze_events, open_delta_rs, run_silver
from lakehouse.silver.transforms import (
    BOOKING_SCHEMA,
    ClientRules,
    clients_from_bronze,
    pays_from_bronze,
    produits_from_bronze,
    sale_bookings,
    segments_from_bronze,
    ventes_jour_from_bronze,
    ventes_rows,
)
from tests.conftest import make_config
from tests.integration.test_silver_random_histories import read_silver
from tests.unit.test_silver_corrections import (
    CLIENTS,
    PRODUCTS,
    Ev,
    Expected,
    assert_matches,
    oracle,
    random_history,
)
from tests.unit.test_silver_corrections import RULES as CORRECTION_RULES
from tests.unit.test_silver_transforms import BRONZE_SCHEMA

RULES = ClientRules(2, Decimal("500"), Decimal("100"))
# Silver's tables that a full recompute from Bronze gives (the corrections waiting and refused: the oracle's).
RECOMPUTED = ("clients", "pays", "segments", "ventes_jour", "produits", "ventes")
CENT = Decimal("0.01")
UTC = dt.timezone.utc
# Each Bronze append gets the next offsets: unique in the process, so in every lake.
_OFFSETS = itertools.count()


def random_sales(rng: random.Random, start: int, n: int) -> list[tuple]:
    """Sales ``v<start>``… as ``SALE_SCHEMA`` tuples: 12 clients renamed at random, 6 products named two ways."""
    rows = []
    for i in range(start, start + n):
        client, product = rng.randrange(12), rng.randrange(6)
        day = dt.date(2024, 12, 1) + dt.timedelta(days=rng.randrange(4))
        event = dt.datetime(day.year, day.month, day.day, rng.randrange(24), rng.choice((0, 30)))
        rows.append((f"v{i:05d}", f"C{client}", f"P{product}", f"Produit {product} v{rng.randrange(2)}",
                     ("Maison", "Bureau", "Jardin")[product % 3], event, day, rng.randint(1, 5),
                     Decimal(rng.randint(1, 40000)) / 100, f"Client {client} v{rng.randrange(2)}",
                     rng.choice(("France", "Belgique", "Suisse")), rng.choice(("B2B", "B2C"))))
    return rows


def append_bronze(spark, paths: Paths, rows: list[tuple], received: dt.datetime | None = None) -> None:
    """Append sales to Bronze as one Bronze batch: received at ``received`` (default: now, later than any
    earlier append), each at the next offset of partition 0. ``rows``: ``SALE_SCHEMA`` tuples, or the 10
    fields of a sale without its product's name and category (then "Produit <id>", "Divers")."""
    received = received or dt.datetime.now(UTC)
    sales = [row if len(row) == 12 else (*row[:3], f"Produit {row[2]}", "Divers", *row[3:]) for row in rows]
    spark.createDataFrame([(*sale, received, 0, next(_OFFSETS)) for sale in sales], BRONZE_SCHEMA) \
        .write.format("delta").mode("append").partitionBy("jour").save(str(paths.bronze))


# --- the full recompute --------------------------------------------------------------------------------------

def full_recompute(spark, paths: Paths, rules: ClientRules) -> dict[str, DataFrame]:
    """Silver's tables computed at once from the whole of Bronze by Spark's transforms; the corrections, if
    any, applied to their sales in one go (``corrections.apply_batch``) and their bookings added."""
    sales = spark.read.format("delta").load(str(paths.bronze))
    bookings, ventes = sale_bookings(sales), ventes_rows(sales, F.lit(None))
    if delta_table_exists(paths.corrections):
        events = bronze_events(sales, spark.read.format("delta").load(str(paths.corrections)))
        corrections = [r.asDict() for r in events.filter(F.col("type_evenement") != SALE).collect()]
        if corrections:
            named = events.filter(F.col("type_evenement") == SALE) \
                .filter(F.col("vente_id").isin(*sorted({c["vente_id"] for c in corrections})))
            outcome = apply_batch([r.asDict() for r in named.collect()] + corrections, {}, [])
            booked = [b for b in outcome.bookings if b["nb_ventes"] == 0]  # the sales' own are in ``bookings``
            if booked:
                bookings = bookings.unionByName(spark.createDataFrame(booked, BOOKING_SCHEMA))
            if outcome.ventes:
                changed = spark.createDataFrame(list(outcome.ventes.values()), ventes.schema)
                ventes = ventes.join(changed.select("vente_id"), "vente_id", "left_anti").unionByName(changed)
    return {"clients": clients_from_bronze(sales, rules, bookings_df=bookings),
            "pays": pays_from_bronze(sales, bookings), "segments": segments_from_bronze(sales, bookings),
            "ventes_jour": ventes_jour_from_bronze(sales, bookings), "produits": produits_from_bronze(sales, bookings),
            "ventes": ventes}


def assert_silver_equals_full_recompute(spark, paths: Paths, rules: ClientRules = RULES,
                                        tables: tuple[str, ...] = RECOMPUTED) -> None:
    expected = full_recompute(spark, paths, rules)

    def compare(table: str) -> None:
        actual = spark.read.format("delta").load(str(paths.silver(table))).drop("updated_at")
        assertDataFrameEqual(actual, expected[table].drop("updated_at"))

    # The comparisons at once: their small jobs overlap (an assertion error still reaches the test).
    with ThreadPoolExecutor(len(tables)) as pool:
        list(pool.map(inheritable_thread_target(spark)(compare), tables))


def versions(paths: Paths) -> dict[str, int]:
    return {t: open_delta_rs(paths.silver(t)).version() for t in silver.SILVER_TABLES}


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
    # Silver made the Bronze corrections table it streams from (empty: no return or cancellation yet).
    assert spark.read.format("delta").load(str(paths.corrections)).isEmpty()
    # Nothing new: nothing read, no table touched.
    before = versions(paths)
    assert run_silver(spark, RULES, paths) == 0
    assert versions(paths) == before
    # Full refresh rebuilds the same tables.
    assert run_silver(spark, RULES, paths, full_refresh=True) == start
    assert_silver_equals_full_recompute(spark, paths)


# --- crashes in the middle of a batch -------------------------------------------------------------------------

# Silver's table writers: delta-rs's (a table's path first), Spark's ``_save`` (the path second) and the writer's
# Spark MERGE (clients and ventes: the table's name after the writer).
WRITERS = ("write_rows", "merge_rows", "append_rows", "_save", "_write_merge")


def _writer_owner(name: str):
    return silver.SilverBatchWriter if name == "_write_merge" else silver


def _table_written(name: str, args: tuple) -> str:
    return Path(str(args[1] if name in ("_save", "_write_merge") else args[0])).name


def crash_on(monkeypatch, name: str, table: str, after_writing: bool) -> None:
    """Make the writer ``name`` (one of ``WRITERS``) fail for ``table``, before or after its commit."""
    owner = _writer_owner(name)
    real = getattr(owner, name)

    def crashing(*args, **kwargs):
        if _table_written(name, args) != table:
            return real(*args, **kwargs)
        if after_writing:
            real(*args, **kwargs)
        raise RuntimeError("simulated crash")
    monkeypatch.setattr(owner, name, crashing)


def kill_in_writes(monkeypatch, commits: Callable[[str], bool]) -> list[str]:
    """Make a batch end as a kill -9 in the middle of its writes would: the write of a table for which
    ``commits(table)`` holds commits, the others do not happen, and the batch fails once they are done (a failing
    write would cancel those not started). The list it returns fills with the tables written."""
    written = []
    for name in WRITERS:
        owner = _writer_owner(name)

        def killed(*args, _name=name, _real=getattr(owner, name), **kwargs):
            table = _table_written(_name, args)
            if commits(table):
                _real(*args, **kwargs)
                written.append(table)
        monkeypatch.setattr(owner, name, killed)
    write_all = silver.SilverBatchWriter._write_all

    def killed_after(*args, **kwargs):
        write_all(*args, **kwargs)
        raise RuntimeError("simulated crash")
    monkeypatch.setattr(silver.SilverBatchWriter, "_write_all", killed_after)
    return written


# A crash around the clients' commit, and kills that leave only some tables written: with corrections, below.
@pytest.mark.parametrize("name, table, after_writing", [
    ("write_rows", "pays", False),     # a small table not written: the others are, and are skipped next time
    ("_save", "ventes_jour", True),  # Spark's path: a small table written, then the crash
])
def test_a_batch_killed_midway_leaves_the_next_run_exact(spark, tmp_path, monkeypatch, name, table,
                                                          after_writing) -> None:
    if name in ("_save", "_write_merge"):
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


# --- with returns and cancellations -------------------------------------------------------------------------

PARTITIONS = 3


class BronzeLog:
    """Bronze's sales and corrections tables written directly, one Bronze batch per ``append``: what Bronze keeps
    of the events (the first of each vente_id and of each retour_id), each on a random partition at its next
    offset, all received at the batch's time, a minute after the previous batch; and those events in the order
    Bronze received them (``arrived``: the oracle's input)."""

    def __init__(self, spark, paths: Paths, rng: random.Random, received: dt.datetime):
        self.spark, self.paths, self.rng, self.received = spark, paths, rng, received
        self.offsets: Counter = Counter()
        self.arrived: list[Ev] = []
        self._keys: set = set()

    def append(self, events: list[Ev]) -> int:
        """Write one Bronze batch (its corrections first, then its sales); the number of events Bronze kept."""
        placed = []
        for e in events:
            partition = self.rng.randrange(PARTITIONS)
            placed.append((partition, self.offsets[partition], e))
            self.offsets[partition] += 1
        kept = []
        for partition, offset, e in sorted(placed, key=lambda p: p[:2]):
            if e.bronze_key not in self._keys:
                self._keys.add(e.bronze_key)
                kept.append((partition, offset, e))
        self.arrived += [e for _, _, e in kept]
        corrections = [self._correction_row(p, o, e) for p, o, e in kept if e.kind != SALE]
        sales = [self._sale_row(p, o, e) for p, o, e in kept if e.kind == SALE]
        # Corrections first: a Silver batch that sees this batch's sales sees its corrections too.
        if corrections:
            self.spark.createDataFrame(corrections, CORRECTIONS_SCHEMA).write.format("delta").mode("append") \
                .partitionBy("jour").save(str(self.paths.corrections))
        if sales:
            self.spark.createDataFrame(sales, BRONZE_SCHEMA).write.format("delta").mode("append") \
                .partitionBy("jour").save(str(self.paths.bronze))
        self.received += dt.timedelta(minutes=1)
        return len(kept)

    def _sale_row(self, partition: int, offset: int, e: Ev) -> tuple:
        nom, pays, segment = CLIENTS[e.client_id]
        return (e.vente_id, e.client_id, *e.produit, e.at, e.at.date(), e.quantite, e.montant.quantize(CENT), nom,
                pays, segment, self.received, partition, offset)

    def _correction_row(self, partition: int, offset: int, e: Ev) -> dict:
        row = dict.fromkeys(CORRECTIONS_SCHEMA.names)
        row.update(retour_id=e.retour_id, type_evenement=e.kind, vente_id=e.vente_id, client_id=e.client_id,
                   event_ts=e.at, jour=e.at.date(), quantite=e.quantite,
                   montant=None if e.montant is None else e.montant.quantize(CENT), motif=e.motif, is_late=False,
                   timestamp_naif=False, kafka_topic="ventes", kafka_partition=partition, kafka_offset=offset,
                   ingestion_ts=self.received)
        return row


def random_event_sales(rng: random.Random, start: int, n: int, base: dt.datetime) -> list[Ev]:
    """Sales ``v<start>``… over four days from ``base``, by the oracle's clients of its products."""
    return [Ev(SALE, f"v{i:05d}", rng.choice(sorted(CLIENTS)), base + dt.timedelta(minutes=rng.randrange(4 * 1440)),
               produit=rng.choice(PRODUCTS), quantite=rng.randint(1, 5), montant=Decimal(rng.randint(1, 40000)) / 100)
            for i in range(start, start + n)]


def random_corrections(rng: random.Random, sales: list[Ev], n: int, first: int, base: dt.datetime) -> list[Ev]:
    """``n`` returns and cancellations of ``sales`` (``r<first>``…) over four days from ``base``, a quarter of
    them cancellations; some refused: more units or money than remain, another client, after a cancellation."""
    events = []
    for j in range(first, first + n):
        target = rng.choice(sales)
        at = base + dt.timedelta(minutes=rng.randrange(4 * 1440))
        client = target.client_id if rng.random() < 0.9 else rng.choice(sorted(CLIENTS))
        if rng.random() < 0.25:
            events.append(Ev("annulation", target.vente_id, client, at, retour_id=f"r{j}",
                             motif=rng.choice((None, "erreur"))))
        else:
            units = rng.randint(1, target.quantite + 1)
            refund = (target.montant * units / target.quantite).quantize(CENT) + rng.choice((0, 0, 0, 1, 5)) * CENT
            events.append(Ev("retour", target.vente_id, client, at, retour_id=f"r{j}", quantite=units,
                             montant=min(refund, target.montant * 2), motif=rng.choice((None, "défectueux"))))
    return events


# The crash tests' history. Its second batch: 10 new sales, 11 corrections of known sales (3 of sales corrected
# in the first batch), the 7 corrections waiting applied (3 of their sales arrive with a new correction besides),
# 2 new ones left waiting, refusals of each kind: it writes every Silver table.
CRASH_SEED = 1
BASE = dt.datetime(2026, 1, 1, 23, 58, 30, tzinfo=UTC)  # the events straddle midnight
RECEIVED = dt.datetime(2026, 1, 2, 6, tzinfo=UTC)


def normalized(tables: tuple) -> tuple:
    """``read_silver``'s rows without ``updated_at``, in a fixed order (a row twice stays twice)."""
    def rows(table: list[dict]) -> list[dict]:
        kept = [{k: v for k, v in row.items() if k != "updated_at"} for row in table]
        return sorted(kept, key=lambda row: json.dumps(row, sort_keys=True, default=str))
    ventes, clients, totals, waiting, rejected = tables
    return rows(ventes), rows(clients), {t: rows(r) for t, r in totals.items()}, rows(waiting), rows(rejected)


@dataclass
class CorrectedLake:
    """A lake whose first Bronze batch (sales, returns and cancellations, some of sales not sent yet) Silver has
    merged, with a second Bronze batch waiting (new sales, corrections of known sales and of the new ones,
    refusals; the sales that some of the first batch's corrections wait for)."""

    path: str  # the path Silver takes: "driver" or "spark"
    template: Path  # the lake's data directory, to copy
    second: int  # events in the second Bronze batch
    expected: Expected  # the oracle's tables after both batches
    uninterrupted: tuple  # an uninterrupted run's tables after both batches (``normalized``)


@pytest.fixture(scope="module")
def corrected_lake(request, spark, tmp_path_factory) -> CorrectedLake:
    """The lake for the path in ``request.param``, made once per path (a failure too: pytest keeps it)."""
    path = request.param
    root = tmp_path_factory.mktemp(f"corrected_{path}")
    paths = Paths.from_config(make_config(root / "data"))
    rng = random.Random(CRASH_SEED)
    events = random_history(rng, BASE, 25)
    bronze = BronzeLog(spark, paths, rng, RECEIVED)
    with pytest.MonkeyPatch.context() as patched:
        if path == "spark":
            patched.setattr(silver, "DRIVER_BATCH_ROWS", 0)
        bronze.append(events[:len(events) // 2])
        run_silver(spark, CORRECTION_RULES, paths)
        second = bronze.append(events[len(events) // 2:])
        shutil.copytree(root / "data", root / "template")
        assert run_silver(spark, CORRECTION_RULES, paths) == second
    expected = oracle(bronze.arrived)
    tables = read_silver(spark, paths)
    assert_matches(expected, *tables)
    return CorrectedLake(path, root / "template", second, expected, normalized(tables))


# Where the kill lands among the batch's writes (made at once): which tables it leaves written.
KILLS = {"only ventes written": lambda table: table == "ventes",
         "only corrections_en_attente written": lambda table: table == "corrections_en_attente",
         "only rejets written": lambda table: table == "rejets",
         "all but clients written": lambda table: table != "clients",
         "all written": lambda table: True}  # the checkpoint not


# Every kill on the driver path (what a continuous Silver runs); two on Spark's (each case costs far more there).
CASES = [("driver", kill) for kill in KILLS] + [("spark", "only ventes written"), ("spark", "all but clients written")]


@pytest.mark.parametrize("corrected_lake, kill", CASES, indirect=["corrected_lake"])
def test_a_batch_of_corrections_killed_midway_ends_in_the_oracle_and_an_uninterrupted_run(
        spark, tmp_path, monkeypatch, corrected_lake: CorrectedLake, kill) -> None:
    if corrected_lake.path == "spark":
        monkeypatch.setattr(silver, "DRIVER_BATCH_ROWS", 0)
    shutil.copytree(corrected_lake.template, tmp_path / "data")
    paths = Paths.from_config(make_config(tmp_path / "data"))
    with monkeypatch.context() as patched:
        written = kill_in_writes(patched, KILLS[kill])
        with pytest.raises(Exception, match="simulated crash"):
            run_silver(spark, CORRECTION_RULES, paths)
    # The batch writes every Silver table: the kill left those it says.
    assert sorted(written) == sorted(t for t in silver.SILVER_TABLES if KILLS[kill](t))
    assert run_silver(spark, CORRECTION_RULES, paths) == corrected_lake.second  # the same batch again
    tables = read_silver(spark, paths)
    assert_matches(corrected_lake.expected, *tables)
    assert normalized(tables) == corrected_lake.uninterrupted


def test_missing_bronze_is_a_clear_error(spark, tmp_path) -> None:
    paths = Paths.from_config(make_config(tmp_path / "data"))
    with pytest.raises(SilverInputError, match="Bronze table .* does not exist yet: run spark_streaming_delta.py"):
        run_silver(spark, RULES, paths)
