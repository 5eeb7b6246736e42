"""Silver's incremental step for a small batch, in plain Python: the rows of the touched clients, countries,
segments, days and products after the batch's sales and corrections, from the rows they had before.

The measures are sums of bookings (``lakehouse.silver.corrections``); the attributes (latest name, first
and last purchase, the sets in ``historique``) come from the sales alone.

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

from lakehouse.silver.corrections import AMOUNTS, COUNTS, ZERO
from lakehouse.silver.transforms import CLIENT_MONEY, CLIENT_SUMS, HISTORIQUE, TOTALS, ClientRules

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


def basket(total: Decimal, purchases: int) -> Decimal | None:
    """The average net basket: None when every sale was cancelled (no purchase left)."""
    return average(total, purchases) if purchases > 0 else None




def client_rows_after(before: Mapping[str, Row], sales: Iterable[Row], bookings: Iterable[Row],
                      rules: ClientRules, updated_at: datetime) -> list[dict]:
    """The rows (``CLIENTS_COLUMNS``) of the clients that ``sales`` and ``bookings`` touch, after them;
    ``before`` maps each client id to the row it had (absent: a new client)."""
    touched: dict[str, dict] = {}

    def row_of(cid: str) -> dict:
        row = touched.get(cid)
        if row is None:
            old = before.get(cid)
            row = touched[cid] = dict(old) if old is not None else {
                "client_id": cid, **{c: ZERO if c in CLIENT_MONEY else 0 for c in CLIENT_SUMS},
                "achat_min": None, "achat_max": None, "premier_achat": None, "dernier_achat": None,
                "dernier_vente_id": None, "client_nom": None, "pays": None, "segment": None}
            sets = (old or {}).get("historique") or {}
            row["_sets"] = {name: set(sets.get(name) or ()) for name in HISTORIQUE}
            row["_latest"] = (row["dernier_achat"], row["dernier_vente_id"]) if old is not None else None
        return row

    for sale in sales:
        row = row_of(sale["client_id"])
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
    for booking in bookings:
        row = row_of(booking["client_id"])
        for column, terms in CLIENT_SUMS.items():
            for measure, sign in terms.items():
                if booking[measure]:
                    row[column] += sign * booking[measure]
    rows = []
    for row in touched.values():
        sets = row.pop("_sets")
        row.pop("_latest")
        row["historique"] = {name: sorted(sets[name]) for name in HISTORIQUE}
        row["nb_produits_distincts"] = len(sets["produits"])
        row["panier_moyen"] = basket(row["total_depense"], row["nb_achats"])
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


def net(row: Row) -> Decimal:
    return row["chiffre_affaires_brut"] - row["remboursements"] - row["montant_annule"]


def return_rate(row: Row) -> float | None:
    """Units returned per unit sold (None before any unit was sold)."""
    return row["quantite_retournee"] / row["quantite_vendue"] if row["quantite_vendue"] else None


def table_key(table: str, row: Row) -> Any:
    key = TOTALS[table].key
    return tuple(row[k] for k in key) if isinstance(key, tuple) else row[key]


def totals_after(table: str, existing: Mapping[Any, Row], sales: Iterable[Row], bookings: Iterable[Row],
                 gained_clients: Counter) -> list[dict]:
    """The rows of ``pays``, ``segments``, ``ventes_jour`` or ``produits`` that ``bookings`` touch, after them;
    ``existing`` maps each key (``table_key``) to the row it had. ``sales`` bring a segment's countries and a
    product's latest name."""
    key, columns = TOTALS[table].key, TOTALS[table].columns
    names = key if isinstance(key, tuple) else (key,)
    touched: dict[Any, dict] = {}

    def row_of(source: Row) -> dict:
        k = table_key(table, source)
        row = touched.get(k)
        if row is None:
            # What a new row starts from; a table's row lacks the columns another table has.
            row = touched[k] = {**{n: source[n] for n in names}, "nb_clients": 0, **dict.fromkeys(COUNTS, 0),
                                **dict.fromkeys(AMOUNTS, ZERO), "liste_pays": [], "produit_nom": None,
                                "derniere_vente": None, "derniere_vente_id": None, **(existing.get(k) or {})}
            row["_pays"] = set(row.get("liste_pays") or ())
        return row

    for booking in bookings:
        row = row_of(booking)
        for measure in (*COUNTS, *AMOUNTS):
            row[measure] += booking[measure]
    for sale in sales:
        row = row_of(sale)
        if sale["pays"] is not None:
            row["_pays"].add(sale["pays"])
        if row["derniere_vente"] is None or _latest_key(sale) > (row["derniere_vente"], row["derniere_vente_id"]):
            row.update(derniere_vente=sale["event_ts"], derniere_vente_id=sale["vente_id"],
                       produit_nom=sale.get("produit_nom"))
    result = []
    for k, row in touched.items():
        row["nb_clients"] += gained_clients.get(k, 0)
        row["chiffre_affaires"] = net(row)
        row["panier_moyen"] = basket(row["chiffre_affaires"], row["nb_ventes"] - row["nb_annulations"])
        row["taux_retour"] = return_rate(row)
        row["liste_pays"] = sorted(row.pop("_pays"))
        row["nb_pays"] = len(row["liste_pays"])
        result.append({c: row[c] for c in columns})
    return result
