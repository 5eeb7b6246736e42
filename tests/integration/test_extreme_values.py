"""Readers never crash on stored values: a real Kafka → Bronze → Silver run over sales holding the extreme
but valid values of the sale contract (oldest and furthest-ahead event times, largest and smallest amounts
and quantities, longest ids and texts in any Unicode), then every reader in-process on the same tables:
the Silver dashboard, the batch report (text, Markdown, charts), every menu choice, streaming_silver.py."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import signal
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from kafka import KafkaProducer

from lakehouse.bronze.stream import start_bronze_stream
from lakehouse.ingest.contract import MAX_ID_CHARS, MAX_TEXT_CHARS, MONEY_MAX, ContractLimits, violations
from lakehouse.platform.paths import Paths
from lakehouse.platform.topics import ensure_topic
from lakehouse.serve.dashboard import dashboard_text
from lakehouse.serve.menu import Console, Menu
from lakehouse.serve.numbers import euros
from lakehouse.serve.queries import Lakehouse
from lakehouse.serve.report import DAILY, build_report, write_report_files
from lakehouse.serve.safe_text import for_markdown, for_terminal
from lakehouse.silver.job import run_silver
from lakehouse.silver.transforms import ClientRules
from tests.conftest import make_config, write_config

UTC = dt.timezone.utc
DAY_US = 86400 * 1_000_000
MINUTE_US = 60 * 1_000_000
LIMITS = ContractLimits()


class Raw(str):
    """A JSON number written exactly as given (amounts are decimals, never floats)."""


def to_json(fields: dict, ascii_only: bool = False) -> bytes:
    parts = [json.dumps(k) + ":" + (str(v) if isinstance(v, Raw) else json.dumps(v, ensure_ascii=ascii_only))
             for k, v in fields.items()]
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def exactly(text: str, n: int) -> str:
    """``text`` repeated and cut to exactly ``n`` code points."""
    out = (text * (n // max(len(text), 1) + 1))[:n]
    assert len(out) == n
    return out


def iso(micros: int, offset_minutes: int = 0) -> str:
    """A contract timestamp for ``micros`` (UTC) written in the given offset, with microseconds."""
    zone = dt.timezone(dt.timedelta(minutes=offset_minutes))
    local = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=micros)
    text = local.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S.%f")
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    return f"{text}{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"


def utc_day(micros: int) -> dt.date:
    return (dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=micros)).date()


# --- the extreme values --------------------------------------------------------------------------------

# Each 200 code points (emoji ZWJ sequences and flags count several code points each: counted with len).
EMOJI_NAME = exactly("👨‍👩‍👧‍👦🇫🇷🏳️‍🌈😀💶", MAX_TEXT_CHARS)
# Right-to-left script, without the bidirectional controls the contract refuses (issue #32; the corpus has them).
ARABIC_NAME = exactly("شركة النور للتجارة والتوزيع محدودة ", MAX_TEXT_CHARS)
COMBINING_NAME = exactly("Z\u0351\u0344\u0309a\u0301\u0300\u0302l\u0327\u0328g\u0303o\u0308 ", MAX_TEXT_CHARS)
CJK_NAME = exactly("北京市朝阳区株式会社ＡＢＣ１２３한국어　", MAX_TEXT_CHARS)
NASTY_NAME = "Client | %s %d %(x)s {} {0} {x!r} \\ \\\\ \\| C:\\new\\table $x$ *b* <i> `c` \u2028 \ufeff\u200b end"
NASTY_COUNTRY = "Pays $\\nope{$ | %s {} \\ 🇫🇷 مصر 日本"  # a chart label matplotlib would read as maths
ID_EMOJI = exactly("🧾", MAX_ID_CHARS)
ID_CJK = exactly("顧客", MAX_ID_CHARS)
ID_ASCII = exactly("C0123456789-", MAX_ID_CHARS)
BIG = Decimal("999999999999.99")
MANY = 120  # sales of one client at the largest amount


@dataclass
class Sale:
    fields: dict
    kafka_ts_ms: int
    ascii_only: bool = False

    @property
    def value(self) -> bytes:
        return to_json(self.fields, self.ascii_only)

    @property
    def reference_us(self) -> int:
        return self.kafka_ts_ms * 1000


def sale(vente_id, client_id, event_us, montant: str, kafka_ts_ms: int, *, offset=0, quantite=1,
         client_nom="Alice", produit_id="P1", produit_nom="Lampe", categorie="Maison", pays="France",
         segment="B2C", ascii_only=False, **optional) -> Sale:
    fields = {"vente_id": vente_id, "client_id": client_id, "produit_id": produit_id,
              "timestamp": iso(event_us, offset), "quantite": quantite, "montant": Raw(montant),
              "client_nom": client_nom, "produit_nom": produit_nom, "categorie": categorie, "pays": pays,
              "segment": segment, **optional}
    return Sale(fields, kafka_ts_ms, ascii_only)


def build_sales(kafka_ts_ms: int) -> list[Sale]:
    ref = kafka_ts_ms * 1000
    oldest, old = ref - LIMITS.max_event_age_us, ref - 364 * DAY_US  # the exact bound, and the brief's
    furthest, ahead = ref + LIMITS.max_future_skew_us, ref + 4 * MINUTE_US
    k = kafka_ts_ms
    sales = [
        # Event time at the exact bounds, written with extreme offsets (+14:00, -12:00) and microseconds.
        sale("V-OLDEST", "C-OLD", oldest, "0.01", k, offset=14 * 60, client_nom="Oldest"),
        sale("V-OLD", "C-OLD", old, "0.00", k, offset=-12 * 60, client_nom="Old"),
        sale("V-FURTHEST", "C-FUT", furthest, "12.34", k, offset=-(11 * 60 + 59), client_nom="Future"),
        sale("V-AHEAD", "C-FUT", ahead, "999999999999.99", k, client_nom="Ahead"),
        # Largest quantity and prices, every optional field, the alias segments.
        sale("V-MAXQ", ID_ASCII, ref, "999999999999.99", k, quantite=LIMITS.max_quantite,
             prix_unitaire=Raw("999999999999.99"), ville=CJK_NAME, canal="mobile", devise="EUR",
             contract_version=1, segment="Entreprise", client_nom="Max quantity"),
        sale("V-ZERO", ID_ASCII, ref - 1, "0.00", k, prix_unitaire=Raw("0.00"), segment="Particulier",
             client_nom="Max quantity"),
        # Longest ids and texts in any Unicode; one written with \uXXXX escapes (surrogate pairs).
        sale(exactly("V", MAX_ID_CHARS), ID_EMOJI, old + 1, "0.01", k, client_nom=EMOJI_NAME,
             produit_id=ID_CJK, produit_nom=ARABIC_NAME, categorie=COMBINING_NAME, pays=EMOJI_NAME),
        sale(exactly("W", MAX_ID_CHARS), ID_EMOJI, ahead - 1, "999999999999.99", k, client_nom=EMOJI_NAME,
             produit_id=ID_EMOJI, produit_nom=EMOJI_NAME, categorie=EMOJI_NAME, pays=EMOJI_NAME,
             ville=EMOJI_NAME, canal=EMOJI_NAME, devise=EMOJI_NAME, ascii_only=True),
        sale("V-AR", "C-AR", ref - 2, "1.00", k, client_nom=ARABIC_NAME, pays=ARABIC_NAME, segment="B2B"),
        sale("V-ZALGO", "C-ZALGO", ref - 3, "2.00", k, client_nom=COMBINING_NAME, pays=COMBINING_NAME),
        sale("V-CJK", ID_CJK, ref - 4, "3.00", k, client_nom=CJK_NAME, pays=CJK_NAME, produit_nom=CJK_NAME),
        sale("V-NASTY", "C|%s{}\\", ref - 5, "4.00", k, client_nom=NASTY_NAME, pays=NASTY_COUNTRY,
             produit_nom=NASTY_NAME, categorie="%s {} | \\"),
        # Integer ids at the ends of 64 bits.
        sale(9223372036854775807, -9223372036854775808, ref - 6, "5.00", k, produit_id=0,
             client_nom="Integer ids"),
    ]
    # One client buying at the largest amount, again and again (old and new days), so sums grow large.
    sales += [sale(f"V-BIG-{i:04d}", "C-BIG", (old if i % 2 else ref) + i, "999999999999.99", k,
                   quantite=LIMITS.max_quantite, client_nom="Big spender", pays="Luxembourg", segment="B2B")
              for i in range(MANY)]
    return sales


def expected_totals(sales: list[Sale]) -> dict:
    from lakehouse.ingest.contract import timestamp_micros

    by_client, by_day, by_country = defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal)
    for s in sales:
        f, amount = s.fields, Decimal(str(s.fields["montant"]))
        by_client[str(f["client_id"])] += amount
        by_day[utc_day(timestamp_micros(f["timestamp"]))] += amount
        by_country[f["pays"]] += amount
    return {"revenue": sum(by_client.values(), Decimal("0.00")), "clients": by_client, "days": by_day,
            "countries": by_country}


def produce_at(bootstrap: str, topic: str, sales: list[Sale]) -> None:
    """Send each sale with its own Kafka timestamp and wait until every one is acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [producer.send(topic, key=str(s.fields["client_id"]).encode("utf-8"), value=s.value,
                                 timestamp_ms=s.kafka_ts_ms) for s in sales]
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()


@dataclass
class Lake:
    paths: Paths
    config: Path
    sales: list[Sale]
    expected: dict
    started: dt.datetime


@pytest.fixture(scope="module")
def lake(spark, kafka_bootstrap, tmp_path_factory) -> Lake:
    root = tmp_path_factory.mktemp("extreme")
    topic = f"test_extreme_{uuid.uuid4().hex[:12]}"
    ensure_topic(kafka_bootstrap, topic, partitions=3)
    cfg = make_config(root / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    paths = Paths.from_config(cfg)
    started = dt.datetime.now()
    # A Kafka timestamp a minute back: the read time (the other reference) is then always later.
    sales = build_sales(int(time.time() * 1000) - 60_000)
    for s in sales:
        assert violations(s.value, LIMITS, kafka_us=s.reference_us) == [], s.fields
    produce_at(kafka_bootstrap, topic, sales)
    start_bronze_stream(spark, cfg, paths, available_now=True).awaitTermination()
    assert run_silver(spark, ClientRules.from_config(cfg), paths) == len(sales)
    return Lake(paths, write_config(root / "config.ini", cfg), sales, expected_totals(sales), started)


def test_every_extreme_sale_reaches_bronze_unchanged(spark, lake) -> None:
    from lakehouse.serve.queries import Lakehouse as L

    lh = L(spark, lake.paths)
    assert not lh.exists("ventes_quarantine"), lh.table("ventes_quarantine").select("reasons").collect()
    rows = {r.vente_id: r for r in lh.table("ventes").collect()}
    assert len(rows) == len(lake.sales)
    for s in lake.sales:
        row = rows[str(s.fields["vente_id"])]
        assert row.client_id == str(s.fields["client_id"])
        assert row.client_nom == s.fields["client_nom"] and row.pays == s.fields["pays"]
        assert row.montant == Decimal(str(s.fields["montant"]))
        assert row.quantite == s.fields["quantite"]
    assert rows["V-MAXQ"].prix_unitaire == MONEY_MAX and rows["V-MAXQ"].segment == "B2B"
    assert rows["V-ZERO"].segment == "B2C" and rows["V-ZERO"].montant == Decimal("0.00")
    assert rows["W" * 64].ville == EMOJI_NAME and rows["W" * 64].devise == EMOJI_NAME


def test_silver_sums_are_exact(spark, lake) -> None:
    lh = Lakehouse(spark, lake.paths)
    clients = {r.client_id: r for r in lh.table("clients").collect()}
    assert {k: v.total_depense for k, v in clients.items()} == dict(lake.expected["clients"])
    big = clients["C-BIG"]
    assert big.total_depense == BIG * MANY and big.nb_achats == MANY
    assert big.total_quantite == LIMITS.max_quantite * MANY and big.panier_moyen == BIG
    assert clients["C-OLD"].achat_min == Decimal("0.00") and clients["C-OLD"].client_nom == "Old"
    assert clients[ID_EMOJI].client_nom == EMOJI_NAME
    days = {r.jour: r.chiffre_affaires for r in lh.table("ventes_jour").collect()}
    assert days == dict(lake.expected["days"])
    countries = {r.pays: r.chiffre_affaires for r in lh.table("pays").collect()}
    assert countries == dict(lake.expected["countries"])
    total = lh.table("segments").agg({"chiffre_affaires": "sum"}).first()[0]
    assert total == lake.expected["revenue"]


def test_silver_dashboard(spark, lake) -> None:
    text = dashboard_text(lake.paths, dt.datetime(2026, 11, 26, 10, 0))
    assert f"Revenue {euros(lake.expected['revenue'])}" in text
    assert f"Sales {len(lake.sales):,}" in text
    assert re.search(r"\n\s*1  Big spender\s+Luxembourg\s+B2B\s+120\s+" + re.escape(euros(BIG * MANY)), text)
    # As the terminal shows them: the ZWJ of the emoji, the BOM, zero-width space and U+2028 as <U+...> marks.
    assert all(for_terminal(name) in text for name in (EMOJI_NAME, ARABIC_NAME, CJK_NAME, NASTY_NAME))
    assert "<U+200D>" in for_terminal(EMOJI_NAME) and "<U+FEFF><U+200B>" in for_terminal(NASTY_NAME)


def test_report_text_markdown_and_charts(spark, lake, tmp_path) -> None:
    report = build_report(Lakehouse(spark, lake.paths), dt.datetime(2026, 11, 26, 12, 0))
    text = report.text()
    assert re.search(r"Revenue\s+" + re.escape(euros(lake.expected["revenue"])) + r"\n", text)
    assert re.search(rf"Sales\s+{len(lake.sales)}\n", text)
    days = sorted(lake.expected["days"])
    daily = report.section(DAILY)
    assert [r[0] for r in daily.rows] == days  # the oldest day included
    assert daily.rows[0][daily.columns.index("chiffre_affaires")] == lake.expected["days"][days[0]]
    assert days[0].isoformat() in text and days[-1].isoformat() in text
    assert NASTY_COUNTRY in text
    markdown = write_report_files(report, tmp_path / "out").read_text(encoding="utf-8")
    for name in ("revenue_by_country.png", "revenue_by_segment.png", "daily_revenue.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in markdown
    assert for_markdown(NASTY_COUNTRY) in markdown
    assert euros(lake.expected["revenue"]) in markdown


def run_menu(spark, paths: Paths, typed: str) -> list[str]:
    out = io.StringIO()
    Menu(Lakehouse(spark, paths), Console(io.StringIO(typed), out)).run()
    return out.getvalue().split("Choice: ")[1:]


def test_every_menu_choice(spark, lake) -> None:
    days = sorted(lake.expected["days"])
    lh = Lakehouse(spark, lake.paths)
    # The latest commit's time to the second (the session time zone is UTC): Delta accepts it.
    as_of = {t: lh.history(t, 1).first()["timestamp"].strftime("%Y-%m-%d %H:%M:%S") for t in ("ventes", "clients")}
    tables = ["ventes", "bronze_metrics", "clients", "pays", "segments", "ventes_jour"]
    session = [
        ("1\n\n", [r"Recent sales\n=+", r"V-FURTHEST"]),
        ("1\n1000\n", [r"Recent sales\n=+", r"V-OLDEST", re.escape(for_terminal(EMOJI_NAME))]),
        ("2\n1000\n", [r"Top clients by revenue", r"C-BIG\s+Big spender.*" + re.escape(euros(BIG * MANY))]),
        (f"3\n{ID_EMOJI}\n", [re.escape(for_terminal(EMOJI_NAME))]),
        ("3\nالنور\n", [r"C-AR"]),
        ("3\n%s %d\n", [r"C\|%s\{\}\\"]),
        ("3\n|\n", [r"C\|%s\{\}\\"]),
        (f"3\n{ID_CJK}\n", [re.escape(for_terminal(CJK_NAME))]),
        ("4\n", [r"Revenue by country", r"Luxembourg\s+120\s+" + re.escape(euros(BIG * MANY))]),
        ("5\n", [r"Revenue by segment", r"B2B\s+"]),
        ("6\n\n", [r"Daily revenue", days[0].isoformat(), days[-1].isoformat()]),
        ("6\n100000\n", [r"Daily revenue", days[0].isoformat()]),
        ("7\n", [r"No quarantined record"]),
        ("8\n1000\n", [r"Bronze stream: last batches"]),
        *[(f"9\n{t}\n", [rf"History of {t}", r"WRITE"]) for t in tables],
        *[(f"10\n{t}\n0\n", [rf"{t} as of 0: [\d,]+ rows"]) for t in tables],
        # A one-version table has no second-precision timestamp to travel to: a clear error is fine.
        *[(f"10\n{t}\n{when}\n", [rf"{t} as of {when}: [\d,]+ rows|Error: \[DELTA_TIMESTAMP_"])
          for t, when in as_of.items()],
        ("11\nSELECT * FROM ventes_jour ORDER BY jour\n", [r"Query result", days[0].isoformat()]),
        ("11\nSELECT min(jour), max(jour), sum(chiffre_affaires), sum(nb_ventes) FROM ventes_jour\n",
         [days[0].isoformat() + r"\s+" + days[-1].isoformat() + r"\s+"
          + re.escape(str(lake.expected["revenue"])) + rf"\s+{len(lake.sales)}"]),
        ("11\nSELECT * FROM clients ORDER BY total_depense DESC\n", [r"C-BIG", re.escape(for_terminal(EMOJI_NAME))]),
        ("11\nSELECT * FROM ventes\n", [r"Query result", r"first 100 rows shown: \[query\] sql_max_rows"]),
        ("11\nSELECT * FROM pays\n", [re.escape(NASTY_COUNTRY)]),
        ("11\nSELECT * FROM segments\n", [r"B2C"]),
        ("11\nSELECT * FROM bronze_metrics\n", [r"Query result"]),
        ("11\nSELECT sum(total_depense) * 100000000000000000 FROM clients\n", [r"Query result|Error: "]),
    ]
    answers = run_menu(spark, lake.paths, "".join(t for t, _ in session) + "q\n")
    assert len(answers) == len(session) + 1
    for (typed, patterns), answer in zip(session, answers):
        assert "Traceback" not in answer
        for pattern in patterns:
            assert re.search(pattern, answer), f"{typed!r}: {pattern!r} not in:\n{answer}"


def test_streaming_silver_writes_the_dashboard(spark, lake, capsys) -> None:
    import streaming_silver

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        assert streaming_silver.main(["--config", str(lake.config)]) == 0
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    written = lake.paths.silver_dashboard.read_text(encoding="utf-8")
    assert f"Revenue {euros(lake.expected['revenue'])}" in written and for_terminal(EMOJI_NAME) in written
    assert written.rstrip("\n") in capsys.readouterr().out
