"""Returns and cancellations in Bronze: kept in their own table with their lineage; a correction sent twice is a
duplicate, another one re-using its retour_id a conflicting id; nothing vanishes, across a restart too."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakehouse.bronze import writer as writer_module
from lakehouse.bronze.columns import CORRECTIONS_COLUMNS
from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.paths import Paths
from tests.conftest import make_config
from tests.integration.test_bronze_commits import NOW, Feed, load, sale, writer


@pytest.fixture
def lake(tmp_path: Path):
    cfg = make_config(tmp_path / "data")
    paths = Paths.from_config(cfg)
    paths.bronze_checkpoint.mkdir(parents=True)
    (paths.bronze_checkpoint / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}))
    return cfg, paths, paths.bronze_checkpoint


def correction(retour_id: str, vente_id: str, at: dt.datetime, kind: str = "retour", quantite: int = 1,
               montant: str = "5.00", client_id: str = "C1") -> bytes:
    event = {"type_evenement": kind, "retour_id": retour_id, "vente_id": vente_id, "client_id": client_id,
             "timestamp": at.isoformat()}
    if kind == "retour":
        event.update(quantite=quantite, montant=json.loads(montant))
    return json.dumps(event).encode()


def test_corrections_duplicates_and_conflicts_reconcile_across_a_restart(spark, lake) -> None:
    _, paths, _ = lake
    at = NOW - dt.timedelta(minutes=5)
    feed = Feed(spark)
    first = [(sale("v1", at), at), (correction("r1", "v1", at), at),
             (correction("r1", "v1", at), at),  # sent twice: a duplicate
             (correction("r1", "v1", at, quantite=2), at),  # another correction with r1's id: a conflict
             (correction("a1", "v9", at, kind="annulation"), at),  # before its sale: kept all the same
             (correction("r2", "v1", at, quantite=0), at)]  # broken: quarantined by the contract
    before_restart = writer(spark, lake)
    before_restart(feed.batch(first), 0)
    # After a restart (a new writer reads its state back from the tables), r1 is still known.
    second = [(correction("r1", "v1", at), at), (sale("v9", at), at), (correction("r3", "v1", at), at)]
    after_restart = writer(spark, lake)
    after_restart(feed.batch(second), 1)

    corrections, bronze = load(spark, paths.corrections), load(spark, paths.bronze)
    quarantine, duplicates = load(spark, paths.quarantine), load(spark, paths.duplicates)
    assert corrections.columns == CORRECTIONS_COLUMNS
    kept = {(r.retour_id, r.type_evenement, r.vente_id, r.kafka_offset) for r in corrections.collect()}
    assert kept == {("r1", "retour", "v1", 1), ("a1", "annulation", "v9", 4), ("r3", "retour", "v1", 8)}
    assert sorted(r.vente_id for r in bronze.collect()) == ["v1", "v9"]
    assert sorted((r.retour_id, r.kept_offset) for r in duplicates.collect()) == [("r1", 1), ("r1", 1)]
    assert sorted((r.reason, r.kafka_offset, r.kept_offset) for r in quarantine.collect()) == [
        ("bad_quantity", 5, None), ("conflicting_id", 3, 1)]
    # Nothing vanishes: every record is in exactly one of the four tables.
    positions = [r.kafka_offset for t in (corrections, bronze, quarantine, duplicates)
                 for r in t.select("kafka_offset").collect()]
    assert sorted(positions) == list(range(len(first) + len(second)))
    figures = [before_restart.last_counts[0], after_restart.last_counts[1]]
    assert [(f["input_rows"], f["bronze_rows"], f["correction_rows"], f["duplicate_rows"], f["quarantined_rows"])
            for f in figures] == [(6, 1, 2, 1, 2), (3, 1, 1, 1, 0)]
    row = corrections.filter(F.col("retour_id") == "r1").first()
    assert json.loads(row.raw_json)["quantite"] == 1 and row.montant == 5 and row.kafka_topic == "t"


@pytest.mark.parametrize("lost", ["sales", "corrections"])
def test_a_batch_whose_commits_landed_in_part_is_completed_once(spark, lake, monkeypatch, lost: str) -> None:
    """A batch's commits to the sales and the corrections tables run side by side, so a crash can leave either
    one made, the commit carrying the batch's figures included. The replay writes only the missing one, and
    the batch's metrics row is written once, with its figures."""
    _, paths, _ = lake
    at = NOW - dt.timedelta(minutes=5)
    batch = Feed(spark).batch([(sale("v1", at), at), (sale("v2", at), at), (correction("r1", "v1", at), at)])
    lost_path = paths.bronze if lost == "sales" else paths.corrections
    append = writer_module.append_delta

    def killed_before(df, path, *args, **kwargs):
        if path == lost_path:
            raise RuntimeError("killed before this commit")
        append(df, path, *args, **kwargs)

    monkeypatch.setattr(writer_module, "append_delta", killed_before)
    with pytest.raises(RuntimeError, match="killed before this commit"):
        writer(spark, lake)(batch, 0)
    made = paths.corrections if lost == "sales" else paths.bronze
    assert delta_table_exists(made) and not delta_table_exists(lost_path)  # the other commit was made
    monkeypatch.setattr(writer_module, "append_delta", append)
    replay = writer(spark, lake)
    replay(batch, 0)
    replay.sink.close()

    assert sorted(r.vente_id for r in load(spark, paths.bronze).collect()) == ["v1", "v2"]
    assert [r.retour_id for r in load(spark, paths.corrections).collect()] == ["r1"]
    metrics = load(spark, paths.bronze_metrics).collect()
    assert [(m.batch_id, m.input_rows, m.bronze_rows, m.correction_rows) for m in metrics] == [(0, 3, 2, 1)]
    for path in (paths.bronze, paths.corrections):
        commits = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").filter("userMetadata IS NOT NULL").count()
        assert commits == 1, path
