"""Returns and cancellations in the readers (issue 31): the report, the terminal dashboard and the menu show
net revenue beside gross sales, refunds and the return rate (by country, segment and product), the orphan
corrections and the events Silver refused; the menu shows one sale with its corrections; hostile retour_id
and motif stay text everywhere. On the small lake of ``tests.support.corrections_lake`` (real Silver job), which
the web page's tests read too."""

from __future__ import annotations

import datetime as dt
import io
import re
from decimal import Decimal

import pytest

from lakehouse.serve.dashboard import dashboard_text
from lakehouse.serve.menu import Console, Menu
from lakehouse.serve.queries import (
    APPLIED,
    NOT_YET,
    ORPHAN,
    REFUSED,
    WAITING,
    Lakehouse,
    QueryInputError,
    correction_outcomes,
    sale_id,
)
from lakehouse.serve.report import ORPHANS, PRODUCTS, REJECTED_SAMPLES, build_report, write_report_files
from lakehouse.serve.safe_text import for_markdown, for_terminal
from tests.support.corrections_lake import HOSTILE_MOTIF, HOSTILE_RETOUR_ID, NOW, ORPHAN_TIMEOUT_S


@pytest.fixture(scope="module")
def lake(spark, corrections_lake) -> Lakehouse:
    paths, _ = corrections_lake
    return Lakehouse(spark, paths)


def no_control(text: str) -> bool:
    return not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", text)


# --- pure parts ------------------------------------------------------------------------------------------

def test_a_sale_id_is_checked_as_the_contract_checks_it() -> None:
    assert sale_id("V-000042") == "V-000042" and sale_id("<b>|x") == "<b>|x" and sale_id("V" * 64) == "V" * 64
    for bad, message in [("", r"^Type a sale id \(vente_id\), e\.g\. V000042\.$"),
                         ("V" * 65, r"^Not a sale id: 'V{64}'… has 65 characters; a sale id has at most 64\.$"),
                         ("x" * 10_000, r"^Not a sale id: 'x{64}'… has 10,000 characters"),
                         ("V1\x1b[2J",
                          r"^Not a sale id: 'V1\\x1b\[2J' holds a control character; a sale id holds none\.$"),
                         ("V1\r", r"holds a control character"), ("a\u202eb", r"holds a control character"),
                         ("a\x00", r"holds a control character")]:
        with pytest.raises(QueryInputError, match=message) as refused:
            sale_id(bad)
        assert "\n" not in str(refused.value)


def test_each_correction_gets_its_outcome() -> None:
    at = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)

    def bronze(retour_id: str, offset: int, minutes: int) -> dict:
        return {"retour_id": retour_id, "type_evenement": "retour", "event_ts": at, "quantite": 1,
                "montant": Decimal("1.00"), "motif": None, "ingestion_ts": at + dt.timedelta(minutes=minutes),
                "kafka_partition": 0, "kafka_offset": offset}

    corrections = [bronze("r5", 5, 50), bronze("r1", 1, 0), bronze("r2", 2, 0), bronze("r3", 3, 0), bronze("r4", 4, 50),
                   bronze("r1", 6, 55)]  # r1 again: refused as a re-used retour_id, r1 itself applied
    sale = {"vente_id": "V1", "corrections": ["r1"]}
    waiting = [{"retour_id": "r3", "kafka_partition": 0, "kafka_offset": 3},
               {"retour_id": "r4", "kafka_partition": 0, "kafka_offset": 4}]
    refused = [{"retour_id": "r2", "kafka_partition": 0, "kafka_offset": 2, "raison": "client_mismatch"},
               {"retour_id": "r1", "kafka_partition": 0, "kafka_offset": 6, "raison": "retour_id_reused"}]
    rows = correction_outcomes(sale, corrections, waiting, refused, at + dt.timedelta(minutes=90), 3600)
    assert [(r["retour_id"], r["outcome"], r["raison"]) for r in rows] == [
        ("r1", APPLIED, None), ("r2", REFUSED, "client_mismatch"), ("r3", ORPHAN, None), ("r4", WAITING, None),
        ("r5", NOT_YET, None), ("r1", REFUSED, "retour_id_reused")]
    # No sale in Silver: nothing applied.
    assert [r["outcome"] for r in correction_outcomes(None, corrections[1:2], [], [], at, 3600)] == [NOT_YET]


# --- the report --------------------------------------------------------------------------------------------

def test_the_report_shows_net_revenue_refunds_return_rates_orphans_and_rejections(lake, tmp_path) -> None:
    report = build_report(lake, NOW, orphan_timeout_s=ORPHAN_TIMEOUT_S)
    text = report.text()
    for pattern in [
            # Overview: net = gross - refunds - cancelled; basket over the sales not cancelled.
            r"\nSales\s+3\n", r"\nRevenue\s+90\.00 €\n", r"Gross sales\s+180\.00 €\n", r"Refunds\s+40\.00 €\n",
            r"Cancelled\s+50\.00 €\n", r"Returns\s+1\n", r"Cancellations\s+1\n", r"Units returned\s+1 of 4 sold\n",
            r"Return rate\s+25\.0 %\n", r"Average basket\s+45\.00 €\n", r"Corrections waiting for their sale\s+2\n",
            r"Orphans \(waiting over 1 h\)\s+1\n", r"Rejected events\s+2\n",
            # By country, segment (net, basket, units, clients, gross, refunds, cancelled, returns,
            # cancellations, return rate), product and day (a day of more refunds than sales is negative).
            r"France\s+2\s+90\.00 €\s+45\.00 €\s+3\s+1\s+130\.00 €\s+40\.00 €\s+0\.00 €\s+1\s+0\s+33\.3 %\n",
            r"Belgique\s+1\s+0\.00 €\s+—\s+1\s+1\s+50\.00 €\s+0\.00 €\s+50\.00 €\s+0\s+1\s+0\.0 %\n",
            r"B2C\s+2\s+90\.00 €\s+45\.00 €\s+1\s+1\s+3\s+130\.00 €\s+40\.00 €\s+0\.00 €\s+1\s+0\s+33\.3 %\n",
            r"Lampe\s+P1\s+Maison\s+1\s+60\.00 €\s+2\s+1\s+100\.00 €\s+40\.00 €\s+0\.00 €\s+1\s+0\s+50\.0 %\n",
            r"Chaise\s+P2\s+Mobilier\s+2\s+30\.00 €\s+2\s+0\s+80\.00 €\s+0\.00 €\s+50\.00 €\s+0\s+1\s+0\.0 %\n",
            r"2026-11-26\s+1\s+-60\.00 €\s+1\s+1\s+30\.00 €\s+40\.00 €\s+50\.00 €\s+1\s+1\n",
            # The orphan (r6 has waited 30 min only), and the events refused.
            r"2026-11-26 10:01:00\s+retour\s+r3\s+s9\s+C3\s+2026-11-26 12:00:00\s+1\s+5\.00 €\s+.*\s1 h 59 min\n",
            r"client_mismatch\s+1\s", r"more_units_than_remain\s+1\s"]:
        assert re.search(pattern, text), pattern
    assert [r[2] for r in report.section(ORPHANS).rows] == ["r3"]
    assert sorted(r[3] for r in report.section(REJECTED_SAMPLES).rows) == sorted([HOSTILE_RETOUR_ID, "r5"])
    assert [r[0] for r in report.section(PRODUCTS).rows] == ["Lampe", "Chaise"]
    # Hostile retour_id and motif: visible text on the terminal, literal text in report.md, each in its cell.
    assert no_control(text) and for_terminal(HOSTILE_MOTIF) in text and for_terminal(HOSTILE_RETOUR_ID) in text
    markdown = write_report_files(report, tmp_path / "out").read_text(encoding="utf-8")
    for raw in ("<img", "<b>", "](javascript", "**abîmé**", "# H1", "\x1b", "\x07"):
        assert not re.search(r"(?<!\\)" + re.escape(raw), markdown), raw
    assert for_markdown(HOSTILE_MOTIF) in markdown and for_markdown(HOSTILE_RETOUR_ID) in markdown
    assert "a \\| b" in markdown
    for title, marker in ((ORPHANS, "| 2026-11-26 10:01:00 |"),
                          (REJECTED_SAMPLES, "| more\\_units\\_than\\_remain | 2026-11-26 10:01:00 |")):
        line = next(line for line in markdown.split("\n") if line.startswith(marker))
        assert len(re.split(r"(?<!\\)\|", line)) == len(report.section(title).columns) + 2, line


# --- the terminal dashboard -------------------------------------------------------------------------------

def test_the_terminal_dashboard_shows_net_refunds_return_rates_orphans_and_rejections(lake) -> None:
    text = dashboard_text(lake.paths, NOW, ORPHAN_TIMEOUT_S)
    lines = text.splitlines()
    assert lines[1:4] == [
        "Sales 3   Revenue 90.00 €   Clients 2   Average basket 45.00 €",
        "Revenue is net: Gross sales 180.00 €   Refunds 40.00 €   Cancelled 50.00 €   Returns 1   Cancellations 1   "
        "Return rate 25.0 %",
        "Corrections waiting for their sale 2 (orphans, waiting over 1 h: 1)   Rejected events 2 "
        "(client_mismatch 1, more_units_than_remain 1)"]
    for pattern in [r"\n1\s+Alice\s+France\s+B2C\s+2\s+90\.00 €\s+40\.00 €\s+Economy\s+yes\n",
                    r"\nFrance\s+2\s+90\.00 €\s+100\.0 %\s+40\.00 €\s+0\.00 €\s+33\.3 %\s+1\n",
                    r"\nBelgique\s+1\s+0\.00 €\s+0\.0 %\s+0\.00 €\s+50\.00 €\s+0\.0 %\s+1\n",
                    r"\nB2B\s+1\s+0\.00 €\s+0\.0 %\s+0\.00 €\s+50\.00 €\s+0\.0 %\s+1\s+1\n",
                    r"\nLampe\s+Maison\s+1\s+2\s+1\s+50\.0 %\s+60\.00 €\s+40\.00 €\n",
                    r"\nChaise\s+Mobilier\s+2\s+2\s+0\s+0\.0 %\s+30\.00 €\s+0\.00 €\n"]:
        assert re.search(pattern, text), pattern
    # An hour and a half later r6 is an orphan too.
    later = dashboard_text(lake.paths, NOW + dt.timedelta(minutes=31), ORPHAN_TIMEOUT_S)
    assert "(orphans, waiting over 1 h: 2)" in later


# --- the menu ----------------------------------------------------------------------------------------------

def run_menu(lake: Lakehouse, typed: str) -> list[str]:
    out = io.StringIO()
    Menu(lake, Console(io.StringIO(typed + "q\n"), out), orphan_timeout_s=ORPHAN_TIMEOUT_S).run()
    shown = out.getvalue()
    assert no_control(shown) and "\u202e" not in shown
    return shown.split("Choice: ")[1:-1]


def test_the_menu_shows_one_sale_with_its_corrections(lake) -> None:
    s1, s9, s3, unknown, hostile, long_id = run_menu(
        lake, "13\ns1\n13\ns9\n13\ns3\n13\nnobody\n13\ns1\x1b[2J\n13\n" + "s" * 100 + "\n")
    # A sale partly returned: its row in silver/ventes, then each correction naming it with its outcome.
    for pattern in [r"Sale 's1'\n=+\n", r"\nstatut\s+retour_partiel\n", r"\nquantite\s+2\n",
                    r"\nmontant\s+100\.00 €\n",
                    r"\nquantite_retournee\s+1\n", r"\nmontant_rembourse\s+40\.00 €\n", r"\nquantite_nette\s+1\n",
                    r"\nmontant_net\s+60\.00 €\n", r"\ncorrections\s+r1\n",
                    r"\nderniere_correction\s+2026-11-26 12:00:00\n",
                    r"Corrections naming sale 's1'\n=+\n",
                    r"\n2026-11-26 10:01:00\s+retour\s+r1\s+2026-11-26 12:00:00\s+1\s+40\.00 €\s+défectueux\s+"
                    r"applied\s+—\n",
                    r"\n2026-11-26 10:01:00\s+retour\s+r5\s+2026-11-26 12:00:00\s+1\s+1\.00 €\s+—\s+refused\s+"
                    r"client_mismatch\n"]:
        assert re.search(pattern, s1), pattern
    # A sale Silver never saw: its correction waits (an orphan by now), its hostile motif as text.
    assert "Sale 's9' is not in Silver (not received, or not counted yet); the events naming it:" in s9
    assert re.search(r"\n2026-11-26 10:01:00\s+retour\s+r3\s+.*" + re.escape(for_terminal(HOSTILE_MOTIF))
                     + r"\s+waiting \(orphan\)\s+—\n", s9)
    assert re.search(r"\nstatut\s+vendue\n", s3) and re.search(
        re.escape(for_terminal(HOSTILE_RETOUR_ID)) + r".*\s+a \| b\s+refused\s+more_units_than_remain\n", s3)
    assert re.search(r"^Sale id \(vente_id\): No sale 'nobody' in Silver, and no correction or refused event names "
                     r"it\.\n\n=== Sales", unknown)
    assert re.search(r"^Sale id \(vente_id\): Not a sale id: 's1\\x1b\[2J' holds a control character; a sale id "
                     r"holds none\.\n\n=== Sales", hostile)
    assert re.search(r"^Sale id \(vente_id\): Not a sale id: 's{64}'… has 100 characters; a sale id has at most "
                     r"64\.\n\n=== Sales", long_id)


def test_the_menu_shows_net_figures_products_orphans_rejections_and_travels_in_time(lake) -> None:
    countries, products, waiting, rejected, rejets_then, waiting_then = run_menu(
        lake, "4\n12\n\n14\n15\n\n10\nrejets\n0\n10\ncorrections_en_attente\n1\n")
    assert re.search(r"France\s+2\s+90\.00 €\s+45\.00 €\s+3\s+1\s+130\.00 €\s+40\.00 €\s+0\.00 €\s+1\s+0\s+"
                     r"33\.3 %\n", countries)
    assert "(net revenue: gross sales - refunds - cancellations)" in countries
    assert re.search(r"Revenue by product\n=+\n.*\n.*\nLampe\s+P1\s+Maison\s+1\s+60\.00 €\s+2\s+1\s+100\.00 €\s+"
                     r"40\.00 €\s+0\.00 €\s+1\s+0\s+50\.0 %\nChaise\s+P2", products)
    # Both corrections waiting are orphans by now (received on 2026-11-26), oldest first, their motif as text.
    assert re.search(r"Corrections waiting for their sale \(oldest first\)\n=+\n.*\n.*\n"
                     r"2026-11-26 10:01:00\s+retour\s+r3\s+s9\s+C3\s+.*" + re.escape(for_terminal(HOSTILE_MOTIF))
                     + r".*\s+yes\n2026-11-26 11:30:00\s+retour\s+r6\s+s8\s+C4\s.*\s+yes\n", waiting)
    assert "2 waiting; 2 orphan(s): waiting for over 1 h ([analytics] orphan_timeout)" in waiting
    assert re.search(r"Events Silver refused, by reason\n=+\n.*\n.*\nclient_mismatch\s+1\s+2026-11-26 10:01:00\s+"
                     r"2026-11-26 10:01:00\nmore_units_than_remain\s+1\s", rejected)
    assert re.search(r"Events Silver refused \(latest first\)\n", rejected)
    assert re.search(r"more_units_than_remain\s+2026-11-26 10:01:00\s+retour\s+"
                     + re.escape(for_terminal(HOSTILE_RETOUR_ID)) + r"\s+s3\s+C1", rejected)
    # The new tables travel like the others: rejets was created empty, corrections_en_attente written at run 1.
    assert "rejets as of 0: 0 rows" in rejets_then
    assert "corrections_en_attente as of 1: 2 rows" in waiting_then


def test_a_cancelled_sale_and_its_cancellation(lake) -> None:
    story = lake.sale_story("s2", NOW, ORPHAN_TIMEOUT_S)
    assert story.sale["statut"] == "annulee" and story.sale["montant_net"] == Decimal("0.00")
    assert [(c["retour_id"], c["type_evenement"], c["outcome"]) for c in story.corrections] == \
        [("r2", "annulation", APPLIED)]
    assert story.other_refused == []
