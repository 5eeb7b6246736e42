"""The web dashboard (streamlit_dashboard.py): its figures are the Silver tables' own, live and as of an
earlier run; the stream, quarantine and latest sales come from the tables without scanning Bronze; empty,
missing and unreadable tables are said, by path, never as a traceback. Logic through Streamlit's AppTest
(in this process); tests/system/test_web_dashboard_browser.py drives the served page in a real headless Chromium.

The lake is written by the real Bronze writer (contract check, duplicates, quarantine, metrics, returns and
cancellations) and the real Silver job, in three rounds: sales, more sales, then corrections (a return, a
cancellation, one waiting for a sale that never came, one refused), three Silver runs to travel between.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import streamlit
from pyspark.sql import functions as F
from pyspark.sql import types as T
from streamlit.testing.v1 import AppTest

from lakehouse.bronze.contract_check import check_contract
from lakehouse.bronze.metrics_sink import MetricsSink
from lakehouse.bronze.tables import ensure_corrections_table
from lakehouse.bronze.writer import BronzeBatchWriter
from lakehouse.ingest.contract import ContractLimits
from lakehouse.platform.paths import Paths
from lakehouse.serve import web_page, web_server
from lakehouse.serve import web_tables as wt
from lakehouse.serve.numbers import euros, rate, share
from lakehouse.serve.safe_text import for_web
from lakehouse.silver.freshness import SilverStatusWriter
from lakehouse.silver.job import SilverBatchWriter, bronze_events
from lakehouse.silver.tables import SILVER_TABLES, TIERS, silver_tag, tagged_batch
from lakehouse.silver.transforms import ClientRules
from tests.conftest import PROJECT_DIR, make_config, write_config
from tests.support.corrections_lake import HOSTILE_MOTIF, HOSTILE_RETOUR_ID

SCRIPT = str(PROJECT_DIR / "streamlit_dashboard.py")
KAFKA_SCHEMA = T.StructType([
    T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
])
CLIENTS = [("C1", "Alice Martin", "France", "B2C"), ("C2", "Bob & Co", "Belgique", "B2B"),
           ("C3", "山田太郎", "Japon", "B2C"), ("C4", "Zoé", "France", "B2B")]
BINARY_RECORD = b"\xff\xfe\x00vente\x01" + bytes(range(60))  # not UTF-8, longer than the hex shown
# Text the contract lets through (no control character) that would be markup if a reader rendered it.
MARKUP_MOTIF = "<img src=x onerror=alert(1)> | **abîmé** [x](javascript:alert(1))"
MARKUP_RETOUR_ID = "<b>R4</b>|[x](javascript:alert(1))"


def sale(vente_id: str, client: int, at: dt.datetime, montant: str) -> bytes:
    client_id, nom, pays, segment = CLIENTS[client]
    return json.dumps({"vente_id": vente_id, "client_id": client_id, "produit_id": f"P{client}",
                       "timestamp": at.isoformat(), "quantite": 1, "montant": float(montant), "client_nom": nom,
                       "produit_nom": "Lampe", "categorie": "Maison", "pays": pays, "segment": segment}).encode()


def correction(kind: str, retour_id: str, vente_id: str, client: int, at: dt.datetime, quantite: int | None = None,
               montant: str | None = None, motif: str | None = None) -> bytes:
    """A return (``retour``) or cancellation (``annulation``) as the producer sends it."""
    event = {"type_evenement": kind, "retour_id": retour_id, "vente_id": vente_id, "client_id": CLIENTS[client][0],
             "timestamp": at.isoformat()}
    if quantite is not None:
        event.update(quantite=quantite, montant=float(montant))
    if motif is not None:
        event["motif"] = motif
    return json.dumps(event).encode()


class Lake:
    """A small lake written by the real Bronze writer and Silver job."""

    def __init__(self, spark, root: Path):
        # Orphans after a second: the correction waiting for a sale that never comes is one on the page.
        self.spark, self.cfg = spark, make_config(root / "data", monitoring__dashboard_refresh="1 second",
                                                  analytics__orphan_timeout="1 second")
        self.paths = Paths.from_config(self.cfg)
        self.config_file = write_config(root / "config.ini", self.cfg, monitoring={"dashboard_refresh": "1 second"},
                                        analytics={"orphan_timeout": "1 second"})
        checkpoint = self.paths.bronze_checkpoint
        checkpoint.mkdir(parents=True)
        (checkpoint / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}))
        self.writer = BronzeBatchWriter(spark, self.cfg, self.paths, checkpoint,
                                        MetricsSink(spark, self.paths.bronze_metrics, 0))
        self.offset, self.batch = 0, 0
        silver_checkpoint = self.paths.silver_checkpoint
        silver_checkpoint.mkdir(parents=True)
        (silver_checkpoint / "metadata").write_text(json.dumps({"id": str(uuid.uuid4())}))
        self.silver_writer = SilverBatchWriter(spark, ClientRules.from_config(self.cfg), self.paths, silver_checkpoint)

    def send(self, values: list[bytes]) -> None:
        """One Bronze batch of these Kafka values, received now."""
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        rows = []
        for value in values:
            rows.append((b"k", bytearray(value), "ventes", 0, self.offset, now))
            self.offset += 1
        self.writer(check_contract(self.spark.createDataFrame(rows, KAFKA_SCHEMA), ContractLimits()), self.batch)
        self.batch += 1

    def silver(self) -> None:
        """A Silver run over the last Bronze batch (its sales and corrections): the Silver job's own batch
        function, called directly (the available-now stream around it, which run_silver adds, is tested in
        test_silver_incremental)."""
        batch = self.batch - 1
        ensure_corrections_table(self.spark, self.paths)  # as the Silver job does before its stream

        def rows(path: Path):
            return self.spark.read.format("delta").load(str(path)).filter(F.col("bronze_batch_id") == batch)
        self.silver_writer(bronze_events(rows(self.paths.bronze), rows(self.paths.corrections)), batch)

    def read(self, table: str, version: int | None = None):
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(str(self.paths.silver(table)))


@pytest.fixture(autouse=True, scope="module")
def _page_log_removed():
    """The page logs to its data folder's log file; the package's logger is left as it was found."""
    package = logging.getLogger("lakehouse")
    level = package.level
    yield
    if web_page._log_handler is not None:
        package.removeHandler(web_page._log_handler)
        web_page._log_handler.close()
        web_page._log_handler = None
    package.setLevel(level)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Lake:
    lake = Lake(spark, tmp_path_factory.mktemp("web"))
    at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    lake.send([sale("V1", 0, at, "10.10"), sale("V2", 1, at, "250.00"), sale("V3", 2, at, "99.99"),
               b"{not json", BINARY_RECORD])
    lake.silver()  # run 0
    lake.send([sale("V4", 0, at, "120.00"), sale("V5", 3, at, "600.00"), sale("V6", 2, at, "0.01"),
               sale("V1", 0, at, "10.10"),  # a duplicate of V1
               sale("V2", 1, at, "999.00")])  # V2 again with other content: quarantined (conflicting_id)
    lake.silver()  # run 1
    later = at + dt.timedelta(minutes=1)
    lake.send([correction("retour", "R1", "V2", 1, later, 1, "50.00", MARKUP_MOTIF),  # applied: 50.00 refunded
               correction("annulation", "R2", "V3", 2, later, motif="changement d'avis"),  # applied: 99.99 voided
               correction("retour", "R3", "V9", 0, later, 1, "5.00"),  # no such sale: waits, an orphan after 1 s
               correction("retour", MARKUP_RETOUR_ID, "V4", 0, later, 2, "1.00", "a | b")])  # V4 has 1 unit: refused
    lake.silver()  # run 2
    return lake


def app(lake_or_config: Lake | Path, monkeypatch) -> AppTest:
    """The page, run once in this process with the given configuration."""
    config = lake_or_config.config_file if isinstance(lake_or_config, Lake) else lake_or_config
    monkeypatch.setenv("LAKEHOUSE_CONFIG", str(config))
    for name in [n for n in os.environ if n.startswith("LAKEHOUSE_") and n != "LAKEHOUSE_CONFIG"]:
        monkeypatch.delenv(name)
    streamlit.cache_resource.clear()  # the configuration is read once per server: a new one per test
    at = AppTest.from_file(SCRIPT, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def table(at: AppTest, *first: str):
    """The page's table whose first columns are these (a pandas DataFrame)."""
    found = [d.value for d in at.dataframe if tuple(d.value.columns[:len(first)]) == first]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def expected_headline(lake: Lake, versions: dict[str, int] | None = None) -> dict[str, str]:
    """The headline as the Silver tables (read by Spark) hold it, formatted as the page formats it (the
    orphans, which depend on the time, aside)."""
    v = versions or {}
    sums = ("nb_ventes", "chiffre_affaires", "chiffre_affaires_brut", "remboursements", "montant_annule", "nb_retours",
            "nb_annulations", "quantite_vendue", "quantite_retournee")
    pays = lake.read("pays", v.get("pays")).agg(*[F.sum(c).alias(c) for c in sums]).first()
    clients = lake.read("clients", v.get("clients"))
    n = clients.count()
    loyal = clients.filter("est_client_fidele").count()
    sales, revenue = pays["nb_ventes"], pays["chiffre_affaires"]
    tiers = {r.segment_depense: r["count"] for r in clients.groupBy("segment_depense").count().collect()}
    shown = {"Sales": f"{sales:,}", "Revenue": euros(revenue), "Clients": f"{n:,}",
             "Loyal clients": f"{loyal:,} ({share(loyal, n)})",
             "Average basket": euros((revenue / (sales - pays["nb_annulations"])).quantize(Decimal("0.01"))),
             "Gross sales": euros(pays["chiffre_affaires_brut"]), "Refunds": euros(pays["remboursements"]),
             "Cancelled": euros(pays["montant_annule"]), "Returns": f"{pays['nb_retours']:,}",
             "Cancellations": f"{pays['nb_annulations']:,}",
             "Return rate": share(pays["quantite_retournee"], pays["quantite_vendue"]),
             "Corrections waiting": f"{lake.read('corrections_en_attente', v.get('corrections_en_attente')).count():,}",
             "Rejected events": f"{lake.read('rejets', v.get('rejets')).count():,}"}
    shown.update({f"{t} clients": f"{tiers.get(t, 0):,} ({share(tiers.get(t, 0), n)})" for t in TIERS})
    return shown


def test_headline_and_breakdowns_are_the_silver_tables(lake, monkeypatch) -> None:
    at = app(lake, monkeypatch)
    assert not at.error, [e.value for e in at.error]
    shown = metrics(at)
    expected = expected_headline(lake)
    assert {k: shown[k] for k in expected} == expected
    # V1..V6 (V2 at 250.00) less R1's refund of V2 (50.00) and R2's cancellation of V3 (99.99): net of gross.
    assert shown["Sales"] == "6" and shown["Revenue"] == euros(Decimal("930.11"))
    assert (shown["Gross sales"], shown["Refunds"], shown["Cancelled"]) == \
        (euros(Decimal("1080.10")), euros(Decimal("50.00")), euros(Decimal("99.99")))
    assert (shown["Returns"], shown["Cancellations"], shown["Return rate"]) == ("1", "1", "16.7 %")
    assert shown["Average basket"] == euros(Decimal("186.02"))  # over the 5 sales not cancelled
    assert (shown["Corrections waiting"], shown["Orphans"], shown["Rejected events"]) == ("1", "1", "1")
    pays = table(at, "Country", "Sales")
    silver_pays = {r.pays: r for r in lake.read("pays").collect()}
    assert list(pays["Country"]) == sorted(silver_pays, key=lambda p: (-silver_pays[p].chiffre_affaires, p))
    for row in pays.to_dict("records"):
        silver = silver_pays[row["Country"]]
        assert row["Sales"] == silver.nb_ventes and row["Clients"] == silver.nb_clients
        assert (row["Net revenue"], row["Gross"], row["Refunds"], row["Cancelled"]) == \
            (euros(silver.chiffre_affaires), euros(silver.chiffre_affaires_brut), euros(silver.remboursements),
             euros(silver.montant_annule))
        assert (row["Returns"], row["Cancellations"], row["Return rate"]) == \
            (silver.nb_retours, silver.nb_annulations, rate(silver.taux_retour))
    belgique = pays[pays["Country"] == "Belgique"].to_dict("records")[0]
    assert (belgique["Net revenue"], belgique["Refunds"], belgique["Return rate"]) == \
        ("200.00 €", "50.00 €", "100.0 %")
    segments = {r["Segment"]: r for r in table(at, "Segment").to_dict("records")}
    assert {s: (r["Sales"], r["Net revenue"], r["Refunds"], r["Cancelled"], r["Return rate"])
            for s, r in segments.items()} == \
        {r.segment: (r.nb_ventes, euros(r.chiffre_affaires), euros(r.remboursements), euros(r.montant_annule),
                     rate(r.taux_retour)) for r in lake.read("segments").collect()}
    products = table(at, "Product", "Id")
    silver_products = lake.read("produits").orderBy(F.desc("chiffre_affaires"), "produit_id").collect()
    assert list(products["Id"]) == [p.produit_id for p in silver_products]
    assert list(products["Net revenue"]) == [euros(p.chiffre_affaires) for p in silver_products]
    assert list(products["Refunds"]) == [euros(p.remboursements) for p in silver_products]
    assert list(products["Return rate"]) == [rate(p.taux_retour) for p in silver_products]
    assert products[products["Id"] == "P2"]["Cancelled"].tolist() == [euros(Decimal("99.99"))]
    top = table(at, "#")
    silver_top = lake.read("clients").orderBy(F.desc("total_depense"), "client_id").limit(10).collect()
    assert list(top["Id"]) == [c.client_id for c in silver_top]
    assert list(top["Net revenue"]) == [euros(c.total_depense) for c in silver_top]
    assert list(top["Refunds"]) == [euros(c.total_rembourse) for c in silver_top]
    assert list(top["Client"]) == [c.client_nom for c in silver_top]  # 山田太郎 as written


def test_orphans_and_refused_events_are_shown_as_text(lake, monkeypatch) -> None:
    at = app(lake, monkeypatch)
    orphans = table(at, "Received", "Waiting for").to_dict("records")
    assert [(o["Type"], o["Correction"], o["Sale"], o["Client"], o["Amount"]) for o in orphans] == \
        [("retour", "R3", "V9", "C1", "5.00 €")]
    assert any("1 correction(s) waiting for their sale; 1 of them for longer than 1 second" in c.value
               for c in at.caption)
    assert table(at, "Why refused", "Events").to_dict("records") == [{"Why refused": "more_units_than_remain",
                                                                      "Events": 1}]
    refused = table(at, "Received", "Why").to_dict("records")
    # Markup and Markdown pipes from the data: the page's tables show them as they are (Streamlit escapes them).
    assert [(r["Why"], r["Correction"], r["Sale"], r["Quantity"], r["Motif"]) for r in refused] == \
        [("more_units_than_remain", MARKUP_RETOUR_ID, "V4", 2, "a | b")]
    assert all(MARKUP_RETOUR_ID not in m.value and "<img" not in m.value for m in [*at.markdown, *at.caption])


def test_stream_quarantine_and_latest_sales_come_from_the_tables(lake, monkeypatch) -> None:
    at = app(lake, monkeypatch)
    shown = metrics(at)
    count = {name: lake.spark.read.format("delta").load(str(path)).count() for name, path in
             (("bronze", lake.paths.bronze), ("quarantine", lake.paths.quarantine),
              ("duplicates", lake.paths.duplicates))}
    assert shown["Rows in Bronze"] == f"{count['bronze']:,}" == "6"
    assert shown["Quarantined"] == f"{count['quarantine']:,}" == "3"
    assert shown["Duplicates"] == f"{count['duplicates']:,}" == "1"
    reasons = table(at, "Reason", "Records")
    assert dict(zip(reasons["Reason"], reasons["Records"])) == \
        {r.reason: r["count"] for r in lake.spark.read.format("delta").load(str(lake.paths.quarantine))
         .groupBy("reason").count().collect()}
    samples = table(at, "Received", "Reason")
    hexes = list(samples["Value (hex)"])
    assert BINARY_RECORD[:wt.HEX_BYTES].hex(" ") + f" … ({len(BINARY_RECORD):,} bytes)" in hexes
    assert b"{not json".hex(" ") in hexes
    latest = table(at, "Received", "Sale time")
    assert sorted(latest["Sale"]) == ["V1", "V2", "V3", "V4", "V5", "V6"]
    assert list(latest["Sale"][:3]) == ["V6", "V5", "V4"]  # the newest batch first, newest offset first


def test_stream_health_per_minute_from_the_metrics_table(lake) -> None:
    rows = lake.spark.read.format("delta").load(str(lake.paths.bronze_metrics)).collect()
    last = max(rows, key=lambda r: r.committed_at)
    now = last.committed_at.replace(tzinfo=dt.timezone.utc) + dt.timedelta(seconds=1)
    health = wt.stream_health(lake.paths, now)
    assert health.events_per_s == pytest.approx(sum(r.input_rows for r in rows) / 60)  # both within the minute
    assert health.kafka_lag == last.kafka_lag and health.last_latency_ms == last.latency_p50_ms
    assert sum(s["events"] for s in health.series) == sum(r.input_rows for r in rows) == 14
    later = wt.stream_health(lake.paths, now + dt.timedelta(hours=1))  # nothing in the window: the last is named
    assert later.series == [] and later.events_per_s is None
    # From the files' statistics (milliseconds), without reading them.
    assert abs(later.last_batch_at - last.committed_at.replace(tzinfo=dt.timezone.utc)) < dt.timedelta(milliseconds=1)


def test_only_a_silver_tag_names_a_run() -> None:
    assert tagged_batch(silver_tag(7)) == 7
    for other in (None, "", "{", "[]", '{"kind": "silver"}', '{"kind": "silver", "batch_id": "7"}',
                  '{"kind": "silver", "batch_id": true}', '{"kind": "bronze", "batch_id": 7}', '"silver"'):
        assert tagged_batch(other) is None, other


def test_an_earlier_run_shows_that_runs_tables(lake, monkeypatch) -> None:
    runs = wt.silver_runs(lake.paths)
    assert [r.batch_id for r in runs] == [2, 1, 0]
    assert all(set(r.versions) == set(SILVER_TABLES) for r in runs)
    # The tables only some batches write: the version of the run, or the newest before it (the empty table
    # Silver created with its first batch, before any correction waited or was refused).
    assert [r.versions["rejets"] for r in runs] == [1, 0, 0]
    assert [r.versions["corrections_en_attente"] for r in runs] == [1, 0, 0]
    assert [r.versions["ventes"] for r in runs] == [3, 2, 1]
    at = app(lake, monkeypatch)
    at.selectbox(key="silver_run").select(0).run()
    assert not at.exception and not at.error
    shown = metrics(at)
    then = expected_headline(lake, runs[2].versions)
    assert {k: shown[k] for k in then} == then
    assert shown["Sales"] == "3" and shown["Revenue"] == euros(Decimal("360.09"))
    assert any(f"run 0, written {runs[2].committed:%Y-%m-%d %H:%M:%S} UTC" in c.value for c in at.caption)
    # Run 1: the sales all counted, no correction yet: net is gross, nothing waits, nothing refused.
    at.selectbox(key="silver_run").select(1).run()
    shown = metrics(at)
    assert shown["Revenue"] == shown["Gross sales"] == euros(Decimal("1080.10"))
    assert (shown["Refunds"], shown["Corrections waiting"], shown["Orphans"], shown["Rejected events"]) == \
        (euros(Decimal("0.00")), "0", "0", "0")
    assert any(c.value == "No event refused by Silver." for c in at.caption)
    # Run 2: the corrections; its orphan as of that run (waiting for more than a second by then, or not).
    at.selectbox(key="silver_run").select(2).run()
    shown = metrics(at)
    then = expected_headline(lake, runs[0].versions)
    assert {k: shown[k] for k in then} == then and shown["Revenue"] == euros(Decimal("930.11"))
    assert table(at, "Received", "Why")["Correction"].tolist() == [MARKUP_RETOUR_ID]
    at.selectbox(key="silver_run").select("live").run()
    assert metrics(at)["Sales"] == "6" and metrics(at)["Orphans"] == "1"


def test_a_side_tables_version_for_a_run() -> None:
    # (version, commit ms, tagged batch) newest first: batch 5 wrote it, a compaction after, batch 2 before.
    commits = [(4, 5000, 5), (3, 2500, None), (2, 2000, 2), (1, 1000, None), (0, 900, None)]
    assert wt.side_version(commits, 5, 5100) == 4
    assert wt.side_version(commits, 4, 4000) == 3  # the compaction (same rows as batch 2's)
    assert wt.side_version(commits, 3, 2400) == 2  # the compaction came after the run
    assert wt.side_version(commits, 1, 1500) == 1  # before any tagged commit: the table as it was then
    assert wt.side_version(commits[:2], 1, 1500) is None  # history cut: the caller asks the log by time


def test_before_any_data_the_page_says_what_to_run(tmp_path, monkeypatch) -> None:
    cfg = make_config(tmp_path / "data")
    at = app(write_config(tmp_path / "config.ini", cfg), monkeypatch)
    assert not at.error
    assert any("make demo" in i.value and str(Paths.from_config(cfg).silver_dir) in i.value for i in at.info)
    assert not at.metric


def lake_copy(lake: Lake, tmp_path: Path) -> tuple[Path, Paths]:
    """A copy of the lake (to break, or to give a Silver status), and its configuration file."""
    shutil.copytree(lake.paths.data_dir / "delta", tmp_path / "data" / "delta")
    cfg = make_config(tmp_path / "data")
    return write_config(tmp_path / "config.ini", cfg), Paths.from_config(cfg)


def test_a_missing_or_unreadable_table_is_named_with_its_path(lake, tmp_path, monkeypatch) -> None:
    config, paths = lake_copy(lake, tmp_path)
    shutil.rmtree(paths.silver("segments"))
    at = app(config, monkeypatch)
    assert any(str(paths.silver("segments")) in e.value for e in [*at.error, *at.info])
    assert metrics(at)["Rows in Bronze"] == "6"  # the other sections still show
    # A data file gone from under the log (deleted by hand, or a bad copy): said, by path.
    for parquet in paths.bronze_metrics.glob("*.parquet"):
        parquet.unlink()
    log = sorted((paths.quarantine / "_delta_log").glob("*.json"))[-1]
    log.write_text("{not a delta log", encoding="utf-8")
    at = app(config, monkeypatch)
    errors = " ".join(e.value for e in at.error)
    assert str(paths.bronze_metrics) in errors and str(paths.quarantine) in errors
    assert "Traceback" not in errors


def silver_status(paths: Paths, heartbeat_s: float, newest_sale_s: float, last_batch_s: float,
                  stopped: bool = False, error: str | None = None) -> None:
    """Silver's status file as its job writes it, its moments so many seconds ago."""
    now = dt.datetime.now(dt.timezone.utc)
    writer = SilverStatusWriter(paths.silver_status, "continuous", 2.0)
    moments = {"heartbeat_at": heartbeat_s, "newest_sale": newest_sale_s, "last_batch_at": last_batch_s}
    writer.state.update({k: (now - dt.timedelta(seconds=v)).isoformat() for k, v in moments.items()})
    writer.state.update(stopped_at=writer.state["heartbeat_at"] if stopped else None, error=error)
    paths.status_dir.mkdir(parents=True, exist_ok=True)
    paths.silver_status.write_text(json.dumps(writer.state), encoding="utf-8")


def test_the_page_says_how_old_silver_is_and_plainly_when_it_stopped(lake, tmp_path, monkeypatch) -> None:
    config, paths = lake_copy(lake, tmp_path)
    # Ages in minutes: the same line whether the page takes one second or twenty.
    at = app(config, monkeypatch)  # no status file: Silver built without its job here
    assert [i.value for i in at.info] == \
        ["Silver freshness unknown: no status from the Silver job (streaming_silver.py) yet"]
    silver_status(paths, 1, 600, 540)
    at = app(config, monkeypatch)
    assert not at.error and not at.warning
    captions = [c.value for c in at.caption]
    line = captions.index("Silver continuous: newest sale counted 10 min ago, last batch committed 9 min ago")
    assert captions[line + 1].startswith("Silver, latest run, written ")  # right above the headline
    assert metrics(at)["Sales"] == "6"
    # Stopped: said plainly above figures that are not current (which stay, as the tables hold them).
    silver_status(paths, 300, 660, 300, stopped=True)
    at = app(config, monkeypatch)
    assert [e.value for e in at.error] == ["SILVER IS NOT RUNNING (last seen 5 min ago): figures are not current; "
                                           "newest sale counted 11 min ago, last batch committed 5 min ago"]
    assert not any("newest sale" in c.value for c in at.caption) and metrics(at)["Sales"] == "6"
    # Killed (no word from it since): its old heartbeat says it.
    silver_status(paths, 180, 240, 200)
    at = app(config, monkeypatch)
    assert [e.value for e in at.error] == ["SILVER IS NOT RUNNING (last seen 3 min ago): figures are not current; "
                                           "newest sale counted 4 min ago, last batch committed 3 min ago"]
    # An earlier run claims nothing about now, even while Silver is stopped.
    at.selectbox(key="silver_run").select(0).run()
    assert not at.exception and not at.error and not any("newest sale" in c.value for c in at.caption)
    # Running, its last batch failed: the job's message (it may quote the data) as plain text.
    silver_status(paths, 1, 600, 540, error="merge failed for *Zoé* \u202e[x](javascript:y)")
    at = app(config, monkeypatch)
    assert not at.error
    assert [w.value for w in at.warning] == ["Silver's last batch failed; the job's message:"]
    assert [t.value for t in at.text] == ["merge failed for *Zoé* <U+202E>[x](javascript:y)"]


def test_a_bad_setting_is_one_line_on_the_page(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "bad.ini"
    bad.write_text("[monitoring]\ndashboard_refresh = often\n", encoding="utf-8")
    at = app(bad, monkeypatch)
    assert len(at.error) == 1 and "dashboard_refresh" in at.error[0].value and not at.metric


def test_the_launcher_refuses_a_busy_port_and_a_bad_setting(tmp_path, capsys) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert web_server.launch(["--port", str(port)], Path(SCRIPT)) == web_server.EXIT_PORT_BUSY
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "--port" in err[0]
    with pytest.raises(SystemExit) as exit_:
        web_server.launch(["--port", "70000"], Path(SCRIPT))
    assert exit_.value.code == 2 and "port" in capsys.readouterr().err
    command = web_server.server_command(Path(SCRIPT), make_config(tmp_path))
    assert command[command.index("--server.address") + 1] == "127.0.0.1"  # this machine only by default
    assert command[command.index("--browser.gatherUsageStats") + 1] == "false"


def test_hostile_retour_id_and_motif_are_inert_on_the_page(corrections_lake, monkeypatch) -> None:
    # A lake whose corrections carry what the contract refuses (terminal escapes), written directly to Bronze.
    _, config = corrections_lake
    at = app(config, monkeypatch)
    assert not at.error, [e.value for e in at.error]
    shown = metrics(at)
    assert (shown["Revenue"], shown["Gross sales"], shown["Refunds"], shown["Cancelled"], shown["Return rate"]) == \
        ("90.00 €", "180.00 €", "40.00 €", "50.00 €", "25.0 %")
    assert (shown["Corrections waiting"], shown["Orphans"], shown["Rejected events"]) == ("2", "2", "2")
    assert for_web(HOSTILE_MOTIF) in table(at, "Received", "Waiting for")["Motif"].tolist()
    assert for_web(HOSTILE_RETOUR_ID) in table(at, "Received", "Why")["Correction"].tolist()
    assert "\\x1b[2J" in for_web(HOSTILE_MOTIF) and "\\x07" in for_web(HOSTILE_RETOUR_ID)
    # Nothing the page shows holds a control character; the data's markup is only ever in a table's cells.
    cells = [str(v) for d in at.dataframe for v in d.value.to_numpy().ravel()]
    texts = [e.value for e in [*at.markdown, *at.caption, *at.info, *at.warning, *at.text]]
    assert not any(ch in t for t in cells + texts for ch in "\x1b\x07")
    assert not any("<img" in t or "javascript" in t for t in texts)
