"""Silver's incremental step for a small batch, in plain Python: the rows of the touched clients, countries,
segments and days after the batch's sales, from the rows they had before.

A continuous Silver stream sees a few to a few thousand sales a batch. Computed by Spark, such a batch costs
dozens of small jobs (joins, broadcasts, generated code); here it is a loop over the batch in the driver.
The result is the same, to the cent, as Spark's transforms (``lakehouse.silver.transforms``), which still
compute the first batch and any large one (a catch-up after Silver was stopped): the property tests run
both paths against a full recompute.

Rows are plain dicts, as ``Row.asDict(recursive=True)`` gives them (``historique`` a dict of lists).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Iterable, Mapping

from lakehouse.silver.transforms import HISTORIQUE, TOTALS, ClientRules

Row = Mapping[str, Any]
CENT = Decimal("0.01")
# Spark divides a decimal(24,2) sum by a count into a decimal(38,16), rounded half-up, and then rounds that
# to the cent: the same two steps here, so that both paths agree to the cent in every case.
SPARK_QUOTIENT = Decimal("1e-16")
_EXACT = Context(prec=80)


def average(total: Decimal, count: int) -> Decimal:
    """``transforms.average``: total / count rounded half-up to the cent, as Spark computes it."""
    quotient = _EXACT.divide(total, Decimal(count)).quantize(SPARK_QUOTIENT, rounding=ROUND_HALF_UP)
    return quotient.quantize(CENT, rounding=ROUND_HALF_UP)


def tier(total: Decimal, rules: ClientRules) -> str:
    if total >= rules.premium_threshold:
        return "Premium"
    return "Standard" if total >= rules.standard_threshold else "Economy"


def _latest_key(sale: Row) -> tuple:
    return sale["event_ts"], sale["vente_id"]


def client_rows_after(before: Mapping[str, Row], sales: Iterable[Row], rules: ClientRules,
                      updated_at: datetime) -> list[dict]:
    """The rows (``CLIENTS_COLUMNS``) of the clients that ``sales`` touch, after them; ``before`` maps each
    client id to the row it had (absent: a new client)."""
    touched: dict[str, dict] = {}
    for sale in sales:
        cid = sale["client_id"]
        row = touched.get(cid)
        if row is None:
            old = before.get(cid)
            row = touched[cid] = dict(old) if old is not None else {
                "client_id": cid, "nb_achats": 0, "total_quantite": 0, "total_depense": Decimal("0.00"),
                "achat_min": None, "achat_max": None, "premier_achat": None, "dernier_achat": None,
                "dernier_vente_id": None, "client_nom": None, "pays": None, "segment": None}
            sets = (old or {}).get("historique") or {}
            row["_sets"] = {name: set(sets.get(name) or ()) for name in HISTORIQUE}
            row["_latest"] = (row["dernier_achat"], row["dernier_vente_id"]) if old is not None else None
        row["nb_achats"] += 1
        row["total_quantite"] += sale["quantite"]
        row["total_depense"] += sale["montant"]
        row["achat_min"] = sale["montant"] if row["achat_min"] is None else min(row["achat_min"], sale["montant"])
        row["achat_max"] = sale["montant"] if row["achat_max"] is None else max(row["achat_max"], sale["montant"])
        row["premier_achat"] = sale["event_ts"] if row["premier_achat"] is None else \
            min(row["premier_achat"], sale["event_ts"])
        row["dernier_achat"] = sale["event_ts"] if row["dernier_achat"] is None else \
            max(row["dernier_achat"], sale["event_ts"])
        if row["_latest"] is None or _latest_key(sale) > row["_latest"]:
            row["_latest"] = _latest_key(sale)
            row.update(client_nom=sale["client_nom"], pays=sale["pays"], segment=sale["segment"],
                       dernier_vente_id=sale["vente_id"])
        for name, column in HISTORIQUE.items():
            if sale[column] is not None:
                row["_sets"][name].add(sale[column])
    rows = []
    for row in touched.values():
        sets = row.pop("_sets")
        row.pop("_latest")
        row["historique"] = {name: sorted(sets[name]) for name in HISTORIQUE}
        row["nb_produits_distincts"] = len(sets["produits"])
        row["panier_moyen"] = average(row["total_depense"], row["nb_achats"])
        row["est_client_fidele"] = row["nb_achats"] >= rules.loyalty_threshold
        row["segment_depense"] = tier(row["total_depense"], rules)
        row["updated_at"] = updated_at
        rows.append(row)
    return rows


def gained(before: Mapping[str, Row], after: Iterable[Row], field: str) -> Counter:
    """For each value of ``historique.<field>`` (a country, segment or day): how many touched clients have it
    after the batch and did not before — the clients that value gains."""
    counts: Counter = Counter()
    for row in after:
        old = before.get(row["client_id"])
        had = set((old.get("historique") or {}).get(field) or ()) if old is not None else set()
        counts.update(v for v in row["historique"][field] if v not in had)
    return counts


# table → the sale column summed into each of its measures (besides nb_ventes, a count)
SUMS = {
    "pays": {"chiffre_affaires": "montant", "quantite_vendue": "quantite"},
    "segments": {"chiffre_affaires": "montant"},
    "ventes_jour": {"chiffre_affaires": "montant"},
}


def totals_after(table: str, existing: Mapping[Any, Row], sales: Iterable[Row], gained_clients: Counter
                 ) -> list[dict]:
    """The rows of ``pays``, ``segments`` or ``ventes_jour`` that ``sales`` touch, after them; ``existing``
    maps each key to the row it had."""
    key, sums = TOTALS[table][0], SUMS[table]
    touched: dict[Any, dict] = {}
    for sale in sales:
        k = sale[key]
        row = touched.get(k)
        if row is None:
            old = existing.get(k)
            row = touched[k] = dict(old) if old is not None else {
                key: k, "nb_ventes": 0, "nb_clients": 0, **{m: Decimal("0.00") if c == "montant" else 0
                                                             for m, c in sums.items()}}
            if table == "segments":
                row["_pays"] = set(row.get("liste_pays") or ())
        row["nb_ventes"] += 1
        for measure, column in sums.items():
            row[measure] += sale[column]
        if table == "segments" and sale["pays"] is not None:
            row["_pays"].add(sale["pays"])
    for k, row in touched.items():
        row["nb_clients"] += gained_clients.get(k, 0)
        row["panier_moyen"] = average(row["chiffre_affaires"], row["nb_ventes"])
        if table == "segments":
            row["liste_pays"] = sorted(row.pop("_pays"))
            row["nb_pays"] = len(row["liste_pays"])
    return list(touched.values())
