"""The Silver dashboard: figures, euros with two decimals, aligned columns; revenue net of refunds and
cancellations, with the returns, orphans and refused events beside it (the script itself runs in
test_spark_submit)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from lakehouse.serve.dashboard import ClientCounts, CorrectionCounts, SilverSnapshot, format_dashboard
from lakehouse.serve.numbers import euros


def client(cid, nom, total, nb, tier, loyal):
    return {"client_id": cid, "client_nom": nom, "pays": "France", "segment": "B2C", "nb_achats": nb,
            "total_depense": Decimal(total), "segment_depense": tier, "est_client_fidele": loyal}


def test_format_dashboard_figures_and_alignment() -> None:
    clients = [client("C1", "Alice", "1234.50", 3, "Premium", True),
               client("C2", "Bob", "99.99", 1, "Economy", False)]
    snap = SilverSnapshot(
        clients=clients,
        pays=[{"pays": "France", "nb_ventes": 4, "chiffre_affaires": Decimal("1334.49"), "nb_clients": 2}],
        segments=[{"segment": "B2C", "nb_ventes": 4, "chiffre_affaires": Decimal("1334.49"), "nb_clients": 2,
                   "nb_pays": 1}],
        ventes_jour=[], counts=ClientCounts.of(clients))
    text = format_dashboard(snap, datetime(2026, 11, 26, 10, 0))
    assert "Sales 4   Revenue 1,334.49 €   Clients 2   Average basket 333.62 €" in text
    assert "Loyal clients: 1 of 2 (50.0 %)" in text
    assert "Premium 1 (50.0 %)   Standard 0 (0.0 %)   Economy 1 (50.0 %)" in text
    lines = text.splitlines()
    alice = next(line for line in lines if "Alice" in line)
    bob = next(line for line in lines if "Bob" in line)
    # Right-aligned revenue: both amounts end at the same column.
    assert alice.index("1,234.50 €") + len("1,234.50 €") == bob.index("99.99 €") + len("99.99 €")
    assert euros(Decimal("0.5")) == "0.50 €"


def totals(key: str, value: str, sales: int, gross: str, refunds: str, cancelled: str, returns: int,
           cancellations: int, sold: int, returned: int) -> dict:
    net = Decimal(gross) - Decimal(refunds) - Decimal(cancelled)
    return {key: value, "nb_ventes": sales, "chiffre_affaires": net, "nb_clients": 1, "nb_pays": 1,
            "chiffre_affaires_brut": Decimal(gross), "remboursements": Decimal(refunds),
            "montant_annule": Decimal(cancelled), "nb_retours": returns, "nb_annulations": cancellations,
            "quantite_vendue": sold, "quantite_retournee": returned,
            "taux_retour": returned / sold if sold else None}


def test_format_dashboard_with_returns_cancellations_orphans_and_rejections() -> None:
    clients = [{**client("C1", "Alice", "60.00", 1, "Economy", False), "total_rembourse": Decimal("40.00")}]
    france = totals("pays", "France", 3, "150.00", "40.00", "50.00", 1, 1, 4, 1)
    product = {**totals("produit_id", "P1", 3, "150.00", "40.00", "50.00", 1, 1, 4, 1), "produit_nom": "Lampe",
               "categorie": "Maison"}
    snap = SilverSnapshot(clients=clients, pays=[france], segments=[{**france, "segment": "B2C"}], ventes_jour=[],
                          counts=ClientCounts.of(clients), produits=[product],
                          corrections=CorrectionCounts(waiting=3, orphans=2, orphan_timeout_s=3600,
                                                       rejected_by_reason={"client_mismatch": 1,
                                                                           "more_units_than_remain": 4}))
    lines = format_dashboard(snap, datetime(2026, 11, 26, 10, 0)).splitlines()
    # The basket is over the sales not cancelled: 60.00 / 2.
    assert lines[1:4] == [
        "Sales 3   Revenue 60.00 €   Clients 1   Average basket 30.00 €",
        "Revenue is net: Gross sales 150.00 €   Refunds 40.00 €   Cancelled 50.00 €   Returns 1   Cancellations 1   "
        "Return rate 25.0 %",
        "Corrections waiting for their sale 3 (orphans, waiting over 1 h: 2)   Rejected events 5 "
        "(more_units_than_remain 4, client_mismatch 1)"]
    text = "\n".join(lines)
    assert "\nFrance       3  60.00 €  100.0 %  40.00 €    50.00 €       25.0 %        1\n" in text
    assert "\nLampe    Maison        3           4         1       25.0 %  60.00 €  40.00 €\n" in text
    # Every sale cancelled: no basket, no return rate before a unit is sold.
    empty = totals("pays", "Belgique", 1, "10.00", "0.00", "10.00", 0, 1, 0, 0)
    text = format_dashboard(SilverSnapshot([], [empty], [], [], ClientCounts.of([])), datetime(2026, 11, 26))
    assert "Sales 1   Revenue 0.00 €   Clients 0   Average basket —" in text
    assert "Return rate —" in text
