"""Returns and cancellations: Silver equals a plain-Python oracle written here, whatever the order of arrival
and however the events are split into batches.

The oracle below is written from the rules (docs/CONTRACT.md, "How Silver applies them"), not from Silver's
code: it keeps each sale's final state and derives every figure from those states, where Silver adds up bookings
batch by batch. Three levels:
- the rules one by one (``apply_corrections``);
- many random histories through Silver's driver computation, in random batch splits (no Spark);
- a few random histories end to end (tests/integration/test_silver_random_histories.py): Kafka-like records →
  the Bronze writer (duplicates, conflicting ids, several partitions and batches) → Silver run after random
  Bronze batches, then rebuilt in one batch by the driver path and by Spark's: all equal to the oracle.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from decimal import Decimal

from lakehouse.silver.corrections import (
    AFTER_CANCELLATION,
    CANCELLED,
    CLIENT_MISMATCH,
    MORE_MONEY,
    MORE_UNITS,
    PARTLY_RETURNED,
    RETOUR_ID_REUSED,
    RETURNED,
    apply_batch,
    apply_corrections,
    new_sale_row,
)
from lakehouse.silver.small_batch import client_rows_after, gained, table_key, totals_after
from lakehouse.silver.transforms import TOTALS, ClientRules

RULES = ClientRules(2, Decimal("150"), Decimal("50"))
CENT = Decimal("0.01")
UTC = dt.timezone.utc


# --- the rules one by one ---------------------------------------------------------------------------------

def _event(kind: str, retour_id: str, vente_id: str = "v1", client_id: str = "C1", quantite: int | None = None,
           montant: str | None = None, at: int = 0) -> dict:
    when = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(hours=at)
    return {"type_evenement": kind, "retour_id": retour_id, "vente_id": vente_id, "client_id": client_id,
            "quantite": quantite, "montant": None if montant is None else Decimal(montant), "event_ts": when,
            "jour": when.date(), "motif": None, "recu_le": when, "kafka_partition": 0, "kafka_offset": at}


SALE_ROW = new_sale_row({"vente_id": "v1", "client_id": "C1", "produit_id": "P1", "produit_nom": "p",
                         "categorie": "c", "pays": "France", "segment": "B2C", "jour": dt.date(2026, 1, 1),
                         "event_ts": dt.datetime(2026, 1, 1, tzinfo=UTC), "quantite": 5,
                         "montant": Decimal("100.00")})


def test_a_partial_then_a_full_return_and_the_refusals() -> None:
    row, bookings, rejected = apply_corrections(SALE_ROW, [
        _event("retour", "r1", quantite=2, montant="30.00", at=1),
        _event("retour", "r2", quantite=4, montant="10.00", at=2),  # 3 units remain
        _event("retour", "r3", quantite=1, montant="70.01", at=3),  # 70.00 remains
        _event("retour", "r4", client_id="C2", quantite=1, montant="1.00", at=4),
        _event("retour", "r1", quantite=1, montant="1.00", at=5),  # its id was applied already
        _event("retour", "r5", quantite=3, montant="70.00", at=6),
    ])
    assert [(r["retour_id"], r["raison"]) for r in rejected] == [
        ("r2", MORE_UNITS), ("r3", MORE_MONEY), ("r4", CLIENT_MISMATCH), ("r1", RETOUR_ID_REUSED)]
    assert (row["statut"], row["quantite_nette"], row["montant_net"], row["corrections"]) == (
        RETURNED, 0, Decimal("0.00"), ["r1", "r5"])
    assert [(b["nb_retours"], b["quantite_retournee"], b["remboursements"], b["jour"]) for b in bookings] == [
        (1, 2, Decimal("30.00"), dt.date(2026, 1, 1)), (1, 3, Decimal("70.00"), dt.date(2026, 1, 1))]


def test_a_cancellation_voids_what_remains_and_nothing_applies_after_it() -> None:
    row, bookings, rejected = apply_corrections(SALE_ROW, [
        _event("retour", "r1", quantite=1, montant="20.00", at=1),
        _event("annulation", "a1", at=30),
        _event("annulation", "a2", at=31),
        _event("retour", "r2", quantite=1, montant="1.00", at=32),
    ])
    assert [r["raison"] for r in rejected] == [AFTER_CANCELLATION, AFTER_CANCELLATION]
    assert (row["statut"], row["quantite_annulee"], row["montant_annule"], row["montant_net"]) == (
        CANCELLED, 4, Decimal("80.00"), Decimal("0.00"))
    # The cancellation is booked on its own day.
    assert (bookings[1]["nb_annulations"], bookings[1]["montant_annule"], bookings[1]["jour"]) == (
        1, Decimal("80.00"), dt.date(2026, 1, 2))


def test_corrections_apply_in_arrival_order_not_in_the_order_given() -> None:
    late, early = _event("retour", "r1", quantite=5, montant="100.00", at=9), \
        _event("retour", "r2", quantite=1, montant="1.00", at=1)
    row, _, rejected = apply_corrections(SALE_ROW, [late, early])
    assert row["corrections"] == ["r2"] and rejected[0]["retour_id"] == "r1"
    assert row["statut"] == PARTLY_RETURNED


def test_a_correction_waits_for_its_sale_and_a_reused_sale_id_is_refused() -> None:
    sale = {**SALE_ROW, "type_evenement": "vente", "client_nom": "n", "recu_le": SALE_ROW["event_ts"],
            "kafka_partition": 0, "kafka_offset": 0}
    first = apply_batch([_event("retour", "r1", quantite=1, montant="5.00", at=1)], {}, [])
    assert [w["retour_id"] for w in first.waiting] == ["r1"] and not first.bookings
    second = apply_batch([sale], {}, first.waiting)
    assert not second.waiting and second.ventes["v1"]["corrections"] == ["r1"]
    assert [b["nb_ventes"] + b["nb_retours"] for b in second.bookings] == [1, 1]
    third = apply_batch([{**sale, "kafka_offset": 7}], {"v1": second.ventes["v1"]}, [])
    assert [r["raison"] for r in third.rejections] == ["vente_id_reused"] and not third.bookings


# --- random histories and the oracle ------------------------------------------------------------------------

PRODUCTS = [("P1", "Écran", "Informatique"), ("P2", "Chaise", "Mobilier"), ("P3", "Stylos", "Fournitures")]
CLIENTS = {f"C{i}": (f"Client {i}", pays, segment) for i, (pays, segment) in
           enumerate([("France", "B2C"), ("Belgique", "B2B"), ("France", "B2B"), ("UK", "B2C"), ("UK", "B2C")])}


@dataclass(frozen=True)
class Ev:
    """One event as a producer sends it."""

    kind: str  # vente, retour, annulation
    vente_id: str
    client_id: str
    at: dt.datetime
    retour_id: str | None = None
    quantite: int | None = None
    montant: Decimal | None = None
    produit: tuple | None = None
    motif: str | None = None

    @property
    def bronze_key(self) -> tuple:
        return ("vente", self.vente_id) if self.kind == "vente" else ("correction", self.retour_id)

    def value(self) -> bytes:
        event = {"vente_id": self.vente_id, "client_id": self.client_id, "timestamp": self.at.isoformat()}
        if self.kind == "vente":
            nom, pays, segment = CLIENTS[self.client_id]
            event.update(produit_id=self.produit[0], produit_nom=self.produit[1], categorie=self.produit[2],
                         quantite=self.quantite, montant=float(self.montant), client_nom=nom, pays=pays,
                         segment=segment)
        else:
            event.update(type_evenement=self.kind, retour_id=self.retour_id)
            if self.kind == "retour":
                event.update(quantite=self.quantite, montant=float(self.montant))
            if self.motif is not None:
                event["motif"] = self.motif
        return json.dumps(event).encode()


def random_history(rng: random.Random, base: dt.datetime, sales: int) -> list[Ev]:
    """Sales, then returns, cancellations and mistakes in random order: too many units or too much money,
    another client, a second cancellation, corrections of sales never sent, duplicates, conflicting ids."""
    events, sold = [], []
    for i in range(sales):
        at = base + dt.timedelta(seconds=rng.randrange(180))
        sale = Ev("vente", f"v{i}", rng.choice(list(CLIENTS)), at, produit=rng.choice(PRODUCTS),
                  quantite=rng.randint(1, 4), montant=Decimal(rng.randint(100, 30000)) / 100)
        events.append(sale)
        sold.append(sale)
    for j in range(rng.randint(sales // 2, sales * 2)):
        target = rng.choice(sold) if rng.random() < 0.9 else replace(sold[0], vente_id=f"ghost{j % 3}")
        at = base + dt.timedelta(seconds=rng.randrange(180))
        client = target.client_id if rng.random() < 0.92 else rng.choice(list(CLIENTS))
        if rng.random() < 0.25:
            events.append(Ev("annulation", target.vente_id, client, at, retour_id=f"r{j}",
                             motif=rng.choice((None, "erreur", ""))))
        else:
            units = rng.randint(1, target.quantite + 1)
            refund = min(target.montant * 2, (target.montant * units / target.quantite).quantize(CENT)
                         + Decimal(rng.choice((0, 0, 0, 0, 1, 500))) / 100)
            events.append(Ev("retour", target.vente_id, client, at, retour_id=f"r{j}", quantite=units,
                             montant=refund, motif=rng.choice((None, "défectueux"))))
    for _ in range(max(1, len(events) // 10)):  # exact re-sends and other events re-using an id
        original = rng.choice(events)
        events.append(original if rng.random() < 0.6 else replace(
            original, at=original.at + dt.timedelta(seconds=1)))
    rng.shuffle(events)
    return events


def _money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT)


def bronze_order(events: list[Ev]) -> list[Ev]:
    """What Bronze keeps, in the order it received it: the first record of each sale id and of each
    correction id (a later identical one is a duplicate, a different one a conflicting id)."""
    seen, kept = set(), []
    for e in events:
        if e.bronze_key not in seen:
            seen.add(e.bronze_key)
            kept.append(e)
    return kept


@dataclass
class Expected:
    ventes: dict = field(default_factory=dict)
    clients: dict = field(default_factory=dict)
    totals: dict = field(default_factory=dict)  # table -> key -> measures
    waiting: set = field(default_factory=set)
    rejected: Counter = field(default_factory=Counter)  # (retour_id, reason)


def oracle(arrived: list[Ev]) -> Expected:
    """Silver's tables from the events Bronze kept, in arrival order, computed from each sale's final state."""
    sales = {e.vente_id: e for e in arrived if e.kind == "vente"}
    state = {v: {"returned": 0, "refunded": Decimal("0.00"), "cancelled": None, "applied": [], "events": []}
             for v in sales}
    out = Expected()
    for e in arrived:
        if e.kind == "vente":
            continue
        if e.vente_id not in sales:
            out.waiting.add(e.retour_id)
            continue
        sale, s = sales[e.vente_id], state[e.vente_id]
        units_left, money_left = sale.quantite - s["returned"], _money(sale.montant) - s["refunded"]
        if e.retour_id in s["applied"]:
            reason = "retour_id_reused"
        elif s["cancelled"] is not None:
            reason = "after_cancellation"
        elif e.client_id != sale.client_id:
            reason = "client_mismatch"
        elif e.kind == "retour" and e.quantite > units_left:
            reason = "more_units_than_remain"
        elif e.kind == "retour" and _money(e.montant) > money_left:
            reason = "more_money_than_remains"
        else:
            reason = None
        if reason:
            out.rejected[(e.retour_id, reason)] += 1
            continue
        s["applied"].append(e.retour_id)
        s["events"].append(e)
        if e.kind == "retour":
            s["returned"] += e.quantite
            s["refunded"] += _money(e.montant)
        else:
            s["cancelled"] = (units_left, money_left)
    zero = Decimal("0.00")
    for v, sale in sales.items():
        s = state[v]
        cancelled_units, cancelled_money = s["cancelled"] or (0, zero)
        net_units = sale.quantite - s["returned"] - cancelled_units
        net = _money(sale.montant) - s["refunded"] - cancelled_money
        status = ("annulee" if s["cancelled"] else "retournee" if net_units == 0 and s["returned"] else
                  "retour_partiel" if s["returned"] else "vendue")
        out.ventes[v] = {"quantite_retournee": s["returned"], "montant_rembourse": s["refunded"],
                         "quantite_annulee": cancelled_units, "montant_annule": cancelled_money,
                         "quantite_nette": net_units, "montant_net": net, "statut": status,
                         "corrections": s["applied"]}
    # Clients: net of everything, purchases without the cancelled sales.
    for client in {sale.client_id for sale in sales.values()}:
        mine = [v for v, sale in sales.items() if sale.client_id == client]
        rows = [out.ventes[v] for v in mine]
        purchases = sum(r["statut"] != "annulee" for r in rows)
        total = sum((r["montant_net"] for r in rows), zero)
        out.clients[client] = {
            "nb_achats": purchases, "total_depense": total, "total_quantite": sum(r["quantite_nette"] for r in rows),
            "total_brut": sum((_money(sales[v].montant) for v in mine), zero),
            "total_rembourse": sum((r["montant_rembourse"] for r in rows), zero),
            "total_annule": sum((r["montant_annule"] for r in rows), zero),
            "quantite_retournee": sum(r["quantite_retournee"] for r in rows),
            "nb_retours": sum(1 for v in mine for e in state[v]["events"] if e.kind == "retour"),
            "nb_annulations": sum(r["statut"] == "annulee" for r in rows),
            "panier_moyen": (total / purchases).quantize(CENT, rounding="ROUND_HALF_UP") if purchases else None,
            "est_client_fidele": purchases >= RULES.loyalty_threshold,
            "segment_depense": "Premium" if total >= RULES.premium_threshold else
            "Standard" if total >= RULES.standard_threshold else "Economy"}
    # Countries, segments, products: the sales' figures, grouped by the sale's attribute.
    dims = {"pays": lambda s: CLIENTS[s.client_id][1], "segments": lambda s: CLIENTS[s.client_id][2],
            "produits": lambda s: (s.produit[0], s.produit[2])}
    for table, dim in dims.items():
        groups = defaultdict(list)
        for v, sale in sales.items():
            groups[dim(sale)].append(v)
        out.totals[table] = {key: _group(sales, out.ventes, state, vs) for key, vs in groups.items()}
    # Days: a sale on its day, a refund or cancellation on the correction's day.
    days = defaultdict(lambda: Counter())
    for v, sale in sales.items():
        day = days[sale.at.date()]
        day["nb_ventes"] += 1
        day["quantite_vendue"] += sale.quantite
        day["chiffre_affaires_brut"] += _money(sale.montant)
        for e in state[v]["events"]:
            day = days[e.at.date()]
            if e.kind == "retour":
                day["nb_retours"] += 1
                day["remboursements"] += _money(e.montant)
                day["quantite_retournee"] += e.quantite
            else:
                day["nb_annulations"] += 1
                day["montant_annule"] += out.ventes[v]["montant_annule"]
                day["quantite_annulee"] += out.ventes[v]["quantite_annulee"]
    out.totals["ventes_jour"] = {
        d: {"nb_ventes": c["nb_ventes"], "nb_retours": c["nb_retours"], "nb_annulations": c["nb_annulations"],
            "quantite_vendue": c["quantite_vendue"], "remboursements": _money(c["remboursements"]),
            "chiffre_affaires": _money(c["chiffre_affaires_brut"] - c["remboursements"] - c["montant_annule"])}
        for d, c in days.items()}
    return out


def _group(sales: dict, ventes: dict, state: dict, ids: list[str]) -> dict:
    rows = [ventes[v] for v in ids]
    zero = Decimal("0.00")
    sold = sum(sales[v].quantite for v in ids)
    returned = sum(r["quantite_retournee"] for r in rows)
    return {"nb_ventes": len(ids), "nb_annulations": sum(r["statut"] == "annulee" for r in rows),
            "nb_retours": sum(1 for v in ids for e in state[v]["events"] if e.kind == "retour"),
            "quantite_vendue": sold, "quantite_retournee": returned,
            "quantite_annulee": sum(r["quantite_annulee"] for r in rows),
            "chiffre_affaires_brut": sum((_money(sales[v].montant) for v in ids), zero),
            "remboursements": sum((r["montant_rembourse"] for r in rows), zero),
            "montant_annule": sum((r["montant_annule"] for r in rows), zero),
            "chiffre_affaires": sum((r["montant_net"] for r in rows), zero),
            "taux_retour": returned / sold}


def assert_matches(expected: Expected, ventes: list[dict], clients: list[dict], totals: dict[str, list[dict]],
                   waiting: list[dict], rejected: list[dict]) -> None:
    actual_ventes = {r["vente_id"]: {k: r[k] for k in expected.ventes.get(r["vente_id"], {})} for r in ventes}
    assert actual_ventes == expected.ventes
    actual_clients = {r["client_id"]: {k: r[k] for k in expected.clients.get(r["client_id"], {})} for r in clients}
    assert actual_clients == expected.clients
    for table, rows in totals.items():
        want = expected.totals[table]
        got = {table_key(table, r): {k: r[k] for k in next(iter(want.values()))} for r in rows}
        assert got == want, table
    assert {r["retour_id"] for r in waiting} == expected.waiting
    assert Counter((r["retour_id"], r["raison"]) for r in rejected) == expected.rejected


# --- Silver's driver computation over random splits (no Spark) ----------------------------------------------

def _bronze_row(e: Ev, position: int) -> dict:
    row = {"type_evenement": e.kind, "vente_id": e.vente_id, "retour_id": e.retour_id, "client_id": e.client_id,
           "event_ts": e.at, "jour": e.at.date(), "quantite": e.quantite,
           "montant": None if e.montant is None else _money(e.montant), "motif": e.motif,
           "recu_le": dt.datetime(2026, 1, 1, tzinfo=UTC), "kafka_partition": 0, "kafka_offset": position,
           "produit_id": None, "produit_nom": None, "categorie": None, "client_nom": None, "pays": None,
           "segment": None}
    if e.kind == "vente":
        nom, pays, segment = CLIENTS[e.client_id]
        row.update(produit_id=e.produit[0], produit_nom=e.produit[1], categorie=e.produit[2], client_nom=nom,
                   pays=pays, segment=segment)
    return row


def run_driver(batches: list[list[dict]]) -> tuple:
    """Silver's driver path without its reads and writes: each batch against the rows it would read."""
    ventes, clients, waiting, rejected = {}, {}, [], []
    totals = {table: {} for table in TOTALS}
    now = dt.datetime(2026, 2, 1, tzinfo=UTC)
    for events in batches:
        named = {e["vente_id"] for e in events}
        outcome = apply_batch(events, {v: ventes[v] for v in named if v in ventes}, waiting)
        ventes.update(outcome.ventes)
        waiting = outcome.waiting
        rejected += outcome.rejections
        touched = {s["client_id"] for s in outcome.sales} | {b["client_id"] for b in outcome.bookings}
        before = {c: clients[c] for c in touched if c in clients}
        after = client_rows_after(before, outcome.sales, outcome.bookings, RULES, now)
        for table in TOTALS:
            counts = gained(before, after, TOTALS[table][1]) if TOTALS[table][1] else Counter()
            for row in totals_after(table, totals[table], outcome.sales, outcome.bookings, counts):
                totals[table][table_key(table, row)] = row
        clients.update({row["client_id"]: row for row in after})
    return (list(ventes.values()), list(clients.values()), {t: list(rows.values()) for t, rows in totals.items()},
            waiting, rejected)


def _split(rng: random.Random, items: list) -> list[list]:
    cuts = sorted(rng.sample(range(1, len(items)), min(len(items) - 1, rng.randint(0, 6))))
    return [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)])]


HISTORIES = 300


def test_random_histories_through_the_driver_path_in_any_split_equal_the_oracle() -> None:
    base = dt.datetime(2026, 1, 1, 23, 58, 30, tzinfo=UTC)  # the events straddle midnight
    events_seen = 0
    for seed in range(HISTORIES):
        rng = random.Random(seed)
        arrived = bronze_order(random_history(rng, base, rng.randint(3, 20)))
        rows = [_bronze_row(e, i) for i, e in enumerate(arrived)]
        events_seen += len(rows)
        expected = oracle(arrived)
        for _ in range(3):  # three splits of the same arrival order
            assert_matches(expected, *run_driver(_split(rng, rows)))
    assert events_seen > HISTORIES * 20  # sizes of the histories (reported in the closing note)


# --- end to end: Kafka-like records → Bronze → Silver ---------------------------------------------------------
