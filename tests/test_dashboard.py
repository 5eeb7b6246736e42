"""The Silver dashboard: figures, euros with two decimals, aligned columns (the script itself runs in
test_spark_submit)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from lakehouse.serve.dashboard import ClientCounts, SilverSnapshot, format_dashboard
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
