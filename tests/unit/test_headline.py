"""The headline figures (``serve.headline``), computed once for the terminal dashboard, the report and the web
page: on small inline rows, with nulls, missing columns and empty tables; then each reader's top from them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa

from lakehouse.serve import web_tables as wt
from lakehouse.serve.dashboard import CorrectionCounts, SilverSnapshot, format_dashboard
from lakehouse.serve.headline import ClientCounts, Headline, headline
from lakehouse.serve.report import overview

FRANCE = {"pays": "France", "nb_ventes": 5, "chiffre_affaires": Decimal("300.00"),
          "chiffre_affaires_brut": Decimal("400.00"), "remboursements": Decimal("60.00"),
          "montant_annule": Decimal("40.00"), "nb_retours": 2, "nb_annulations": 1, "quantite_vendue": 8,
          "quantite_retournee": 3, "taux_retour": 0.375, "nb_clients": 3}
# A country of nulls (a figure Silver had nothing for): it adds nothing.
BELGIQUE = {"pays": "Belgique", "nb_ventes": 2, "chiffre_affaires": Decimal("50.50"),
            "chiffre_affaires_brut": Decimal("50.50"), "remboursements": None, "montant_annule": None,
            "nb_retours": None, "nb_annulations": None, "quantite_vendue": 2, "quantite_retournee": None,
            "taux_retour": None, "nb_clients": 1}
CLIENTS = [{"client_id": "C1", "est_client_fidele": True, "segment_depense": "Premium"},
           {"client_id": "C2", "est_client_fidele": False, "segment_depense": "Economy"},
           {"client_id": "C3", "est_client_fidele": None, "segment_depense": None},
           {"client_id": "C4", "est_client_fidele": True, "segment_depense": "Economy"}]


def test_the_headline_adds_up_the_countries_and_counts_the_clients() -> None:
    figures = headline([FRANCE, BELGIQUE], ClientCounts.of(CLIENTS), waiting=4, orphans=1, rejected=2)
    assert figures == Headline(
        sales=7, revenue=Decimal("350.50"), clients=4, loyal=2,
        tiers={"Premium": 1, "Standard": 0, "Economy": 2}, gross=Decimal("450.50"), refunds=Decimal("60.00"),
        cancelled=Decimal("40.00"), returns=2, cancellations=1, units_sold=10, units_returned=3, waiting=4,
        orphans=1, rejected=2)
    assert list(figures.tiers) == ["Premium", "Standard", "Economy"]  # the readers show them in this order
    assert figures.purchases == 6
    assert figures.average_basket == Decimal("58.42")  # 350.50 / 6, to the cent
    assert figures.return_rate == 0.3


def test_an_empty_lake_has_zeros_and_no_basket_nor_return_rate() -> None:
    figures = headline([], ClientCounts.of([]))
    assert figures == Headline(sales=0, revenue=Decimal("0.00"), clients=0, loyal=0,
                               tiers={"Premium": 0, "Standard": 0, "Economy": 0})
    assert str(figures.revenue) == "0.00" and str(figures.gross) == "0.00"
    assert figures.average_basket is None and figures.return_rate is None


def test_rows_without_the_correction_columns_count_none() -> None:
    # Countries rows as Silver wrote them before returns and cancellations: only sales and revenue.
    old = [{"pays": "France", "nb_ventes": 4, "chiffre_affaires": Decimal("1334.49")}]
    figures = headline(old, ClientCounts.of([]))
    assert (figures.sales, figures.revenue, figures.gross, figures.cancellations, figures.units_sold) == \
        (4, Decimal("1334.49"), Decimal("0.00"), 0, 0)
    assert figures.average_basket == Decimal("333.62")
    # Every sale cancelled: no basket.
    cancelled = [{**FRANCE, "nb_ventes": 1, "nb_annulations": 1, "chiffre_affaires": Decimal("0.00")}]
    assert headline(cancelled, ClientCounts.of([])).average_basket is None


def test_the_web_page_s_tables_give_the_same_headline() -> None:
    now = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)
    waiting = pa.Table.from_pylist([
        {"retour_id": "R1", "recu_le": now - dt.timedelta(hours=2), "kafka_partition": 0, "kafka_offset": 1},
        {"retour_id": "R2", "recu_le": now - dt.timedelta(minutes=5), "kafka_partition": 0, "kafka_offset": 2}])
    empty = pa.table({})
    silver = wt.Silver(clients=pa.Table.from_pylist(CLIENTS), pays=pa.Table.from_pylist([FRANCE, BELGIQUE]),
                       segments=empty, ventes_jour=empty, produits=empty, corrections_en_attente=waiting,
                       rejets=empty, rejets_by_raison={"client_mismatch": 2, None: 1}, versions={}, committed=None)
    assert wt.headline(silver, now, orphan_timeout_s=3600) == headline(
        [FRANCE, BELGIQUE], ClientCounts.of(CLIENTS), waiting=2, orphans=1, rejected=3)


def test_the_dashboard_and_the_report_show_the_same_headline() -> None:
    corrections = CorrectionCounts(waiting=4, orphans=1, orphan_timeout_s=3600, rejected_by_reason={"x": 2})
    lines = format_dashboard(SilverSnapshot([], [FRANCE, BELGIQUE], [], [], ClientCounts.of(CLIENTS),
                                            corrections=corrections), dt.datetime(2026, 11, 26)).splitlines()
    assert lines[1:4] == [
        "Sales 7   Revenue 350.50 €   Clients 4   Average basket 58.42 €",
        "Revenue is net: Gross sales 450.50 €   Refunds 60.00 €   Cancelled 40.00 €   Returns 2   Cancellations 1   "
        "Return rate 30.0 %",
        "Corrections waiting for their sale 4 (orphans, waiting over 1 h: 1)   Rejected events 2 (x 2)"]
    assert "Loyal clients: 2 of 4 (50.0 %)" in lines
    assert "Clients per spending tier: Premium 1 (25.0 %)   Standard 0 (0.0 %)   Economy 2 (50.0 %)" in lines
    rows = {figure: str(value) for figure, value in overview(CLIENTS, [FRANCE, BELGIQUE]).rows}
    assert rows == {"Sales": "7", "Revenue": "350.50 €", "Gross sales": "450.50 €", "Refunds": "60.00 €",
                    "Cancelled": "40.00 €", "Returns": "2", "Cancellations": "1", "Units returned": "3 of 10 sold",
                    "Return rate": "30.0 %", "Average basket": "58.42 €", "Clients": "4",
                    "Loyal clients": "2 (50.0 %)", "Premium clients": "1 (25.0 %)", "Standard clients": "0 (0.0 %)",
                    "Economy clients": "2 (50.0 %)"}
