"""Returns and cancellations applied to sales, in plain Python: each sale's current state, and the bookings
that Silver's figures add up.

A correction is applied to its sale in the order Bronze received the corrections (``arrival_key``), never
revisited: a refused correction stays refused, and a later one is judged against what remained when it
arrived, as a till would. A correction whose sale Silver has not seen waits, and is applied when the sale
arrives (still in arrival order among that sale's corrections).

Every figure Silver shows is a sum of bookings: a sale books what was sold on its own day; an applied return
books its refund, and a cancellation what it voided, on the correction's day, with the sale's client,
country, segment and product. The net figure is gross minus refunds minus what cancellations voided.

Rows are plain dicts (column → value), as delta-rs and ``Row.asDict(recursive=True)`` give them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping

Row = Mapping[str, Any]
ZERO = Decimal("0.00")

SALE, RETURN, CANCEL = "vente", "retour", "annulation"
# statut of a sale in silver/ventes
SOLD, PARTLY_RETURNED, RETURNED, CANCELLED = "vendue", "retour_partiel", "retournee", "annulee"
# Why a correction cannot apply (silver/rejets.raison); a sale re-using a counted vente_id is refused too.
MORE_UNITS = "more_units_than_remain"
MORE_MONEY = "more_money_than_remains"
AFTER_CANCELLATION = "after_cancellation"
CLIENT_MISMATCH = "client_mismatch"
RETOUR_ID_REUSED = "retour_id_reused"
VENTE_ID_REUSED = "vente_id_reused"
REJECTION_REASONS = (MORE_UNITS, MORE_MONEY, AFTER_CANCELLATION, CLIENT_MISMATCH, RETOUR_ID_REUSED,
                     VENTE_ID_REUSED)

# The additive measures every booking carries (counts and units as int, money as Decimal).
COUNTS = ("nb_ventes", "nb_retours", "nb_annulations", "quantite_vendue", "quantite_retournee", "quantite_annulee")
AMOUNTS = ("chiffre_affaires_brut", "remboursements", "montant_annule")
MEASURES = COUNTS + AMOUNTS
# The sale's dimensions a booking carries (the day is the booking's own).
DIMENSIONS = ("client_id", "pays", "segment", "produit_id", "categorie")

VENTES_COLUMNS = ["vente_id", "client_id", "produit_id", "produit_nom", "categorie", "pays", "segment", "jour",
                  "event_ts", "quantite", "montant", "quantite_retournee", "montant_rembourse", "quantite_annulee",
                  "montant_annule", "quantite_nette", "montant_net", "statut", "corrections", "derniere_correction",
                  "updated_at"]
# Corrections waiting for their sale, and refused events: the Bronze event, when Bronze received it, why.
WAITING_COLUMNS = ["retour_id", "type_evenement", "vente_id", "client_id", "event_ts", "jour", "quantite", "montant",
                   "motif", "recu_le", "kafka_partition", "kafka_offset"]
REJETS_COLUMNS = ["retour_id", "type_evenement", "vente_id", "client_id", "event_ts", "jour", "quantite", "montant",
                  "motif", "recu_le", "kafka_partition", "kafka_offset", "raison"]


def arrival_key(event: Row) -> tuple:
    """The order Bronze received events in: its batch's time, then the Kafka position."""
    return event["recu_le"], event["kafka_partition"], event["kafka_offset"]


def empty_booking(day: Any, sale: Row) -> dict:
    return {"jour": day, **{d: sale[d] for d in DIMENSIONS}, **dict.fromkeys(COUNTS, 0),
            **dict.fromkeys(AMOUNTS, ZERO)}


def sale_booking(sale: Row) -> dict:
    booking = empty_booking(sale["jour"], sale)
    booking.update(nb_ventes=1, quantite_vendue=sale["quantite"], chiffre_affaires_brut=sale["montant"])
    return booking


def new_sale_row(sale: Row) -> dict:
    """A sale's row in silver/ventes before any correction."""
    return {"vente_id": sale["vente_id"], "client_id": sale["client_id"], "produit_id": sale["produit_id"],
            "produit_nom": sale["produit_nom"], "categorie": sale["categorie"], "pays": sale["pays"],
            "segment": sale["segment"], "jour": sale["jour"], "event_ts": sale["event_ts"],
            "quantite": sale["quantite"], "montant": sale["montant"], "quantite_retournee": 0,
            "montant_rembourse": ZERO, "quantite_annulee": 0, "montant_annule": ZERO,
            "quantite_nette": sale["quantite"], "montant_net": sale["montant"], "statut": SOLD, "corrections": [],
            "derniere_correction": None, "updated_at": None}


def rejection(event: Row, reason: str) -> dict:
    return {**{c: event.get(c) for c in REJETS_COLUMNS if c != "raison"}, "raison": reason}


def _refusal(row: Row, correction: Row) -> str | None:
    if correction["retour_id"] in row["corrections"]:
        return RETOUR_ID_REUSED
    if row["statut"] == CANCELLED:
        return AFTER_CANCELLATION
    if correction["client_id"] != row["client_id"]:
        return CLIENT_MISMATCH
    if correction["type_evenement"] == RETURN:
        if correction["quantite"] > row["quantite_nette"]:
            return MORE_UNITS
        if correction["montant"] > row["montant_net"]:
            return MORE_MONEY
    return None


def apply_corrections(row: Row, corrections: Iterable[Row]) -> tuple[dict, list[dict], list[dict]]:
    """A sale's row after ``corrections`` (taken in arrival order), the bookings of those applied, and the
    rejections of the others."""
    row = {**row, "corrections": list(row["corrections"])}
    bookings, rejections = [], []
    for correction in sorted(corrections, key=arrival_key):
        reason = _refusal(row, correction)
        if reason is not None:
            rejections.append(rejection(correction, reason))
            continue
        booking = empty_booking(correction["jour"], row)
        if correction["type_evenement"] == RETURN:
            units, money = correction["quantite"], correction["montant"]
            booking.update(nb_retours=1, quantite_retournee=units, remboursements=money)
            row["quantite_retournee"] += units
            row["montant_rembourse"] += money
            row["quantite_nette"] -= units
            row["montant_net"] -= money
            row["statut"] = RETURNED if row["quantite_nette"] == 0 else PARTLY_RETURNED
        else:  # a cancellation voids what remains
            booking.update(nb_annulations=1, quantite_annulee=row["quantite_nette"],
                           montant_annule=row["montant_net"])
            row["quantite_annulee"], row["montant_annule"] = row["quantite_nette"], row["montant_net"]
            row["quantite_nette"], row["montant_net"] = 0, ZERO
            row["statut"] = CANCELLED
        row["corrections"].append(correction["retour_id"])
        row["derniere_correction"] = correction["event_ts"] if row["derniere_correction"] is None else \
            max(row["derniere_correction"], correction["event_ts"])
        bookings.append(booking)
    return row, bookings, rejections


class BatchOutcome:
    """What one batch of Bronze events does to the sales: rows of silver/ventes to write, bookings, the
    corrections still waiting (all of them, the table is rewritten), and the events refused."""

    def __init__(self) -> None:
        self.ventes: dict[str, dict] = {}
        self.bookings: list[dict] = []
        self.sales: list[Row] = []  # the sales counted (their attributes feed clients and segments)
        self.waiting: list[dict] = []
        self.rejections: list[dict] = []


def apply_batch(events: Iterable[Row], known: Mapping[str, Row], waiting: Iterable[Row]) -> BatchOutcome:
    """Apply a batch of Bronze events (sales and corrections, with ``recu_le``, ``kafka_partition`` and
    ``kafka_offset``) to the sales they name.

    ``known`` maps each named vente_id that silver/ventes holds to its row; ``waiting`` is every correction
    waiting for its sale before the batch."""
    out = BatchOutcome()
    corrections: dict[str, list[Row]] = {}
    for event in sorted(events, key=arrival_key):
        if event["type_evenement"] != SALE:
            corrections.setdefault(event["vente_id"], []).append(event)
        elif event["vente_id"] in known or event["vente_id"] in out.ventes:
            out.rejections.append(rejection(event, VENTE_ID_REUSED))
        else:
            out.ventes[event["vente_id"]] = new_sale_row(event)
            out.bookings.append(sale_booking(event))
            out.sales.append(event)
    for old in waiting:
        if old["vente_id"] in out.ventes:
            corrections.setdefault(old["vente_id"], []).append(old)
        else:
            out.waiting.append(dict(old))
    for vente_id, named in corrections.items():
        row = out.ventes.get(vente_id) or known.get(vente_id)
        if row is None:
            out.waiting.extend(waiting_row(c) for c in named)
            continue
        row, bookings, rejections = apply_corrections(row, named)
        if bookings:
            out.ventes[vente_id] = row
        out.bookings.extend(bookings)
        out.rejections.extend(rejections)
    out.waiting.sort(key=arrival_key)
    return out


def waiting_row(event: Row) -> dict:
    return {c: event.get(c) for c in WAITING_COLUMNS}


@dataclass
class CorrectionFigures:
    """What one Silver batch did with returns and cancellations (for the job's metrics)."""

    applied: int
    rejected: Counter  # raison -> events refused (sales re-using a counted id included)
    waiting_since: list[float]  # when Bronze received each correction still waiting (epoch seconds), all of them

    @classmethod
    def of(cls, outcome: BatchOutcome, reused_sales: int = 0) -> "CorrectionFigures":
        rejected = Counter(r["raison"] for r in outcome.rejections)
        if reused_sales:
            rejected[VENTE_ID_REUSED] += reused_sales
        return cls(sum(b["nb_retours"] + b["nb_annulations"] for b in outcome.bookings), rejected,
                   [w["recu_le"].timestamp() for w in outcome.waiting])
