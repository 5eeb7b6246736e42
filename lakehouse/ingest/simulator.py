"""Realistic sales, generated fast from pre-built pools, their returns and cancellations, plus named
kinds of bad records for tests.

Faker runs once, at start, to build the client pool (names and cities localized to each client's
country); every event afterwards is drawn from the pools with one seeded ``random.Random``, so the same
seed (and the same clock) gives the same pool, catalog and event sequence.

Corrections: a share of the sales is followed by a return (``retour``: some of its units, refunded) or a
cancellation (``annulation``); a sale gets one of them at most, so never a return after its cancellation.
A correction is held back, then sent after a random delay: a number of later records drawn log-uniformly
from 3 to 300 (most come soon, a few much later), or ``CORRECTION_DELAY_MAX`` (60 s) on the clock if that
comes first, so that a slow paced run still sends it within about a minute. A share ``early_corrections``
of them is sent *before* their sale instead, which follows 1 to 20 records (or at most 5 s) later, as when
a store's sale is delayed on its way. What is still held when the consumer stops pulling records (the end
of a ``--count`` or ``--duration`` run) is never sent: nothing counts it as sent either.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import random
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any, Iterator, Sequence, TypeVar

from faker import Faker

from lakehouse.ingest.contract import CANALS, CONTRACT_VERSION, REQUIRED_FIELDS


@dataclass(frozen=True)
class Product:
    produit_id: str
    produit_nom: str
    categorie: str
    prix: Decimal


@dataclass(frozen=True)
class Client:
    client_id: str
    client_nom: str
    pays: str
    ville: str
    segment: str


# (name, category, EUR price): the catalog is data, kept here so that tests and benchmarks are stable.
_CATALOG = [
    ("Ordinateur portable", "Informatique", "899.99"), ("Écran 27 pouces", "Informatique", "279.00"),
    ("Clavier mécanique", "Informatique", "75.00"), ("Souris sans fil", "Informatique", "29.90"),
    ("Disque SSD 1 To", "Informatique", "89.99"), ("Imprimante laser", "Informatique", "199.00"),
    ("Smartphone", "Téléphonie", "649.00"), ("Écouteurs Bluetooth", "Téléphonie", "59.99"),
    ("Chargeur rapide", "Téléphonie", "19.99"), ("Tablette", "Téléphonie", "399.00"),
    ("Bureau assis-debout", "Mobilier", "459.00"), ("Chaise ergonomique", "Mobilier", "329.00"),
    ("Lampe de bureau", "Mobilier", "39.90"), ("Étagère", "Mobilier", "89.00"),
    ("Ramette papier A4", "Fournitures", "5.49"), ("Stylos (lot de 10)", "Fournitures", "7.90"),
    ("Classeurs (lot de 5)", "Fournitures", "12.50"), ("Cartouche d'encre", "Fournitures", "34.99"),
    ("Machine à café", "Électroménager", "149.00"), ("Bouilloire", "Électroménager", "34.90"),
    ("Purificateur d'air", "Électroménager", "229.00"), ("Webcam HD", "Informatique", "69.00"),
    ("Casque audio", "Téléphonie", "179.00"), ("Sac pour ordinateur", "Accessoires", "49.90"),
]

# Country (as users name it) → Faker locale and share of clients.
COUNTRIES = {
    "France": ("fr_FR", 30), "Espagne": ("es_ES", 14), "Allemagne": ("de_DE", 16), "Italie": ("it_IT", 12),
    "Belgique": ("fr_BE", 8), "UK": ("en_GB", 10), "Pays-Bas": ("nl_NL", 5), "Portugal": ("pt_PT", 5),
}
B2B_SHARE = 0.2
# Purchase frequency follows a Zipf-like law over clients: a few frequent buyers, a long tail.
ZIPF_EXPONENT = 1.1

BAD_KINDS = ("not_json", "truncated_json", "non_utf8", "empty", "missing_field", "wrong_type",
             "bad_quantity", "negative_amount", "unknown_segment", "bad_timestamp", "oversized")
# The quarantine reason each injected kind must produce (contract.violations / the Bronze parser).
EXPECTED_REASON = {"not_json": "not_json", "truncated_json": "not_json", "non_utf8": "non_utf8",
                   "empty": "empty", "missing_field": "missing_field", "wrong_type": "wrong_type",
                   "bad_quantity": "bad_quantity", "negative_amount": "negative_amount",
                   "unknown_segment": "unknown_segment", "bad_timestamp": "bad_timestamp",
                   "oversized": "oversized"}


# Kinds of the records that carry a correction (Record.kind), and their type_evenement on the wire.
CORRECTION_KINDS = {"return": "retour", "cancel": "annulation"}
RETURN_MOTIFS = ("défectueux", "erreur de commande", "ne convient pas", "arrivé endommagé",
                 "changement d'avis", "article non conforme à la description")
CANCEL_MOTIFS = ("erreur de commande", "changement d'avis", "délai de livraison trop long", "paiement refusé",
                 "commande en double")
# Share of the corrections that say why; the others have no motif field.
MOTIF_SHARE = 0.8
# Share of the returns that send every unit of their sale back; the others send 1..quantite units.
WHOLE_RETURN_SHARE = 0.5
# A correction follows its sale after this many later records (log-uniform) or this long, whichever first.
CORRECTION_DELAY_RECORDS = (3, 300)
CORRECTION_DELAY_MAX = timedelta(seconds=60)
# An early correction's sale follows it after this many records (uniform) or this long, whichever first.
EARLY_SALE_DELAY_RECORDS = (1, 20)
EARLY_SALE_DELAY_MAX = timedelta(seconds=5)
# Each queue of held records stays below this size (each record adds one entry at most and entries come
# due within the delays above, so it is never reached in practice); a full queue sends its first-due
# entry at once rather than drop it.
MAX_HELD = 1000

_CENT = Decimal("0.01")
_B2C_QUANTITIES = (1, 2, 3, 4)
_B2C_QUANTITY_CUM = list(itertools.accumulate((70, 20, 7, 3)))
_CANAL_CUM = list(itertools.accumulate((55, 30, 15)))


_T = TypeVar("_T")


def _pick(items: Sequence[_T], cum_weights: Sequence[float], rng: random.Random) -> _T:
    # random.choices does the same bisection but rebuilds its arguments on every call; this is the
    # hot path of generation.
    return items[bisect.bisect(cum_weights, rng.random() * cum_weights[-1])]


def build_catalog() -> list[Product]:
    """The product catalog: at least 20 products in several categories with EUR prices."""
    return [Product(f"P{i:03d}", name, cat, Decimal(price)) for i, (name, cat, price) in
            enumerate(_CATALOG, start=1)]


def build_clients(count: int, seed: int) -> list[Client]:
    """``count`` clients, each with a fixed country, city (localized) and segment."""
    rng = random.Random(seed)
    fakers = {}
    for offset, (pays, (locale, _)) in enumerate(COUNTRIES.items()):
        fake = Faker(locale)
        fake.seed_instance(seed * 1000 + offset)
        fakers[pays] = fake
    countries = list(COUNTRIES)
    weights = [share for _, share in COUNTRIES.values()]
    clients = []
    for i in range(1, count + 1):
        pays = rng.choices(countries, weights)[0]
        fake = fakers[pays]
        segment = "B2B" if rng.random() < B2B_SHARE else "B2C"
        nom = fake.company() if segment == "B2B" else fake.name()
        clients.append(Client(f"C{i:06d}", nom, pays, fake.city(), segment))
    return clients


@dataclass
class Record:
    """One Kafka record to send: key, value bytes, and what it is (``sale``, ``duplicate``, ``late``,
    ``return``, ``cancel`` or one of ``BAD_KINDS``) with the event it was made from (for a correction, the
    correction itself). ``early``: a correction sent before its sale."""

    key: bytes
    value: bytes
    kind: str
    event: dict[str, Any]
    early: bool = False


class _Held:
    """Records held back until a number of records has been sent or a time on the clock has come,
    whichever first. Entries are ``[record, due_time, released]``; the time queue is in due-time order
    because every entry of one queue waits the same longest time."""

    def __init__(self, max_wait: timedelta):
        self.max_wait = max_wait
        self._by_count: list = []  # heap of (due_count, seq, entry)
        self._by_time: deque = deque()
        self._seq = 0
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def add(self, record: Record, due_count: int, now: datetime) -> None:
        entry = [record, now + self.max_wait, False]
        heapq.heappush(self._by_count, (due_count, self._seq, entry))
        self._by_time.append(entry)
        self._seq += 1
        self._live += 1

    def pop_due(self, sent: int, now: datetime) -> Record | None:
        """The first record due after ``sent`` records at ``now`` (or the first due at all when the
        queue is full), else None."""
        by_count, by_time = self._by_count, self._by_time
        while by_count and by_count[0][2][2]:
            heapq.heappop(by_count)
        while by_time and by_time[0][2]:
            by_time.popleft()
        if by_count and (by_count[0][0] <= sent or self._live >= MAX_HELD):
            entry = heapq.heappop(by_count)[2]
        elif by_time and by_time[0][1] <= now:
            entry = by_time.popleft()
        else:
            return None
        entry[2] = True
        self._live -= 1
        return entry[0]


class SalesSimulator:
    """Draws sales, their returns and cancellations (and, on demand, faulty records) from pre-built pools."""

    def __init__(self, seed: int, clients: int, bad_ratio: float = 0.0, duplicate_ratio: float = 0.0,
                 late_ratio: float = 0.0, late_by: timedelta = timedelta(hours=1),
                 max_event_bytes: int = 65536, bad_kinds: tuple[str, ...] = BAD_KINDS,
                 clock=lambda: datetime.now(timezone.utc), pool_seed: int | None = None,
                 return_ratio: float = 0.0, cancel_ratio: float = 0.0, early_corrections: float = 0.0):
        """``seed`` draws the events; ``pool_seed`` (default: ``seed``) builds the client pool, so that
        runs with different event seeds and one pool seed share the same clients. ``return_ratio`` and
        ``cancel_ratio``: shares of the sent sales that a return or a cancellation follows;
        ``early_corrections``: share of those sent before their sale (see the module's docstring)."""
        if bad_ratio + duplicate_ratio + late_ratio > 1:
            raise ValueError("bad, duplicate and late ratios add up to more than 1")
        for name, ratio in (("return", return_ratio), ("cancel", cancel_ratio),
                            ("early corrections", early_corrections)):
            if not 0 <= ratio <= 1:
                raise ValueError(f"{name} ratio {ratio!r} is not between 0 and 1")
        if return_ratio + cancel_ratio > 1:
            raise ValueError(f"return and cancel ratios ({return_ratio:g} + {cancel_ratio:g}) add up to more "
                             "than 1: a sale gets one return or cancellation at most")
        unknown = set(bad_kinds) - set(BAD_KINDS)
        if unknown:
            raise ValueError(f"unknown bad kinds {sorted(unknown)}; allowed: {', '.join(BAD_KINDS)}")
        self.rng = random.Random(seed)
        self.catalog = build_catalog()
        self.clients = build_clients(clients, seed if pool_seed is None else pool_seed)
        # Clients are ranked in a seeded random order so that frequent buyers are spread over countries.
        ranks = list(range(len(self.clients)))
        self.rng.shuffle(ranks)
        weights = [1.0 / (rank + 1) ** ZIPF_EXPONENT for rank in ranks]
        self._client_cum = list(itertools.accumulate(weights))
        # Cheap items sell more often than expensive ones.
        self._product_cum = list(itertools.accumulate(1.0 / float(p.prix) ** 0.5 for p in self.catalog))
        self.bad_ratio, self.duplicate_ratio, self.late_ratio = bad_ratio, duplicate_ratio, late_ratio
        self.late_by = late_by
        self.max_event_bytes = max_event_bytes
        self.bad_kinds = tuple(bad_kinds)
        self.clock = clock
        self.return_ratio, self.cancel_ratio = return_ratio, cancel_ratio
        self.early_corrections = early_corrections
        self._recent: deque[dict] = deque(maxlen=1000)
        self._sent = 0  # records handed out by records()
        self._corrections = _Held(CORRECTION_DELAY_MAX)  # corrections waiting for their time
        self._early_sales = _Held(EARLY_SALE_DELAY_MAX)  # sales whose correction went first

    def sale(self, timestamp: datetime | None = None) -> dict:
        """One valid sale event."""
        rng = self.rng
        client = _pick(self.clients, self._client_cum, rng)
        product = _pick(self.catalog, self._product_cum, rng)
        if client.segment == "B2B":
            quantite = rng.randint(5, 50)
        else:
            quantite = _pick(_B2C_QUANTITIES, _B2C_QUANTITY_CUM, rng)
        montant = (product.prix * quantite).quantize(_CENT)
        ts = timestamp or self.clock()
        return {
            "vente_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "client_id": client.client_id, "produit_id": product.produit_id,
            "timestamp": ts.isoformat(timespec="milliseconds"),
            "quantite": quantite, "montant": float(montant), "prix_unitaire": float(product.prix),
            "client_nom": client.client_nom, "produit_nom": product.produit_nom,
            "categorie": product.categorie, "pays": client.pays, "ville": client.ville,
            "segment": client.segment, "canal": _pick(CANALS, _CANAL_CUM, rng), "devise": "EUR",
            "contract_version": CONTRACT_VERSION,
        }

    def correction(self, kind: str, sale: dict, timestamp: datetime | None = None) -> dict:
        """A return (``kind`` "return": 1 to all of the sale's units, refunded pro rata, rounded down to the
        cent) or a cancellation ("cancel") of ``sale``, dated ``timestamp`` (default: now)."""
        rng = self.rng
        event = {"type_evenement": CORRECTION_KINDS[kind],
                 "retour_id": "R" + str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                 "vente_id": sale["vente_id"], "client_id": sale["client_id"],
                 "timestamp": (timestamp or self.clock()).isoformat(timespec="milliseconds")}
        if kind == "return":
            sold = sale["quantite"]
            units = sold if sold == 1 or rng.random() < WHOLE_RETURN_SHARE else rng.randint(1, sold)
            # repr gives back the sale's exact cents (it was a Decimal made a float).
            refund = (Decimal(repr(sale["montant"])) * units / sold).quantize(_CENT, rounding=ROUND_DOWN)
            event["quantite"], event["montant"] = units, float(refund)
        if rng.random() < MOTIF_SHARE:
            event["motif"] = rng.choice(RETURN_MOTIFS if kind == "return" else CANCEL_MOTIFS)
        event["contract_version"] = CONTRACT_VERSION
        return event

    def records(self) -> Iterator[Record]:
        """An endless stream of records: sales, with bad, duplicate and late ones mixed in, and the returns
        and cancellations of some sales (sent later, or a few before their sale: see the module's docstring).

        A correction is keyed like its sale, by client_id: both go to one partition, where Kafka keeps
        the order they were sent in, so a correction is read after its sale and an early one really is
        read before it (keyed by vente_id or retour_id, it would land on another partition and be read
        before or after its sale depending on how far each partition's consumer has got)."""
        rng = self.rng
        corrections = self.return_ratio + self.cancel_ratio
        while True:
            if self._early_sales or self._corrections:
                now = self.clock()
                record = (self._early_sales.pop_due(self._sent, now)
                          or self._corrections.pop_due(self._sent, now))
                if record is not None:
                    if record.kind in CORRECTION_KINDS:  # dated when it is sent
                        record.event["timestamp"] = now.isoformat(timespec="milliseconds")
                        record.value = encode(record.event)
                    yield self._handed_out(record)
                    continue
            draw = rng.random()
            if draw < self.bad_ratio:
                kind = rng.choice(self.bad_kinds)
                event = self.sale()
                record = Record(event["client_id"].encode(), self.bad_value(kind, event), kind, event)
            elif draw < self.bad_ratio + self.duplicate_ratio and self._recent:
                event = rng.choice(self._recent)
                record = Record(event["client_id"].encode(), encode(event), "duplicate", event)
            else:
                if draw < self.bad_ratio + self.duplicate_ratio + self.late_ratio:
                    event, kind = self.sale(self.clock() - self.late_by), "late"
                else:
                    event, kind = self.sale(), "sale"
                record = Record(event["client_id"].encode(), encode(event), kind, event)
                # No draw at all without corrections: the event sequence of a seed stays what it was.
                if corrections:
                    record = self._with_correction(record)
            yield self._handed_out(record)

    def _with_correction(self, sale: Record) -> Record:
        """Perhaps schedule a correction of ``sale``; the record to send now (the sale, or its early
        correction while the sale waits)."""
        rng = self.rng
        draw = rng.random()
        if draw < self.return_ratio:
            kind = "return"
        elif draw < self.return_ratio + self.cancel_ratio:
            kind = "cancel"
        else:
            return sale
        now = self.clock()
        event = self.correction(kind, sale.event, now)
        correction = Record(sale.key, encode(event), kind, event)
        if self.early_corrections and rng.random() < self.early_corrections:
            correction.early = True
            low, high = EARLY_SALE_DELAY_RECORDS
            self._early_sales.add(sale, self._sent + rng.randint(low, high), now)
            return correction
        low, high = CORRECTION_DELAY_RECORDS
        delay = int(low * (high / low) ** rng.random())  # log-uniform in [low, high)
        self._corrections.add(correction, self._sent + delay, now)
        return sale

    def _handed_out(self, record: Record) -> Record:
        if record.kind in ("sale", "late"):  # what a duplicate may re-send
            self._recent.append(record.event)
        self._sent += 1
        return record

    def bad_value(self, kind: str, event: dict) -> bytes:
        """A value of the named bad ``kind``, made from a real sale so that it looks plausible."""
        rng = self.rng
        if kind == "not_json":
            return f"vente {event['vente_id']} client={event['client_id']} montant={event['montant']}".encode()
        if kind == "truncated_json":
            text = encode(event)
            return text[: rng.randint(1, len(text) - 2)]
        if kind == "non_utf8":
            return b"\xff\xfe" + json.dumps(event).encode("utf-16-le")
        if kind == "empty":
            return b""
        broken = dict(event)
        if kind == "missing_field":
            del broken[rng.choice(REQUIRED_FIELDS)]
        elif kind == "wrong_type":
            field = rng.choice(("quantite", "montant", "client_nom"))
            broken[field] = {"quantite": "deux", "montant": "cent euros", "client_nom": 12345}[field]
        elif kind == "bad_quantity":
            broken["quantite"] = rng.choice((0, -1, -5))
        elif kind == "negative_amount":
            broken["montant"] = -abs(broken["montant"]) or -1.0
        elif kind == "unknown_segment":
            broken["segment"] = rng.choice(("B2G", "Gouvernement", "b2c", ""))
        elif kind == "bad_timestamp":
            broken["timestamp"] = rng.choice(("hier à midi", "2024-13-45T25:61:00", "1733998525"))
        elif kind == "oversized":
            broken["commentaire"] = "x" * (self.max_event_bytes + 1)
        else:
            raise ValueError(f"unknown bad kind {kind!r}; allowed: {', '.join(BAD_KINDS)}")
        return encode(broken)


def encode(event: dict) -> bytes:
    """The wire form of an event: compact UTF-8 JSON."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
