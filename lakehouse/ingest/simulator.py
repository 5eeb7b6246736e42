"""Realistic sales, generated fast from pre-built pools, plus named kinds of bad records for tests.

Faker runs once, at start, to build the client pool (names and cities localized to each client's
country); every event afterwards is drawn from the pools with one seeded ``random.Random``, so the same
seed gives the same pool, catalog and event sequence.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterator

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


_CENT = Decimal("0.01")
_B2C_QUANTITIES = (1, 2, 3, 4)
_B2C_QUANTITY_CUM = list(itertools.accumulate((70, 20, 7, 3)))
_CANAL_CUM = list(itertools.accumulate((55, 30, 15)))


def _pick(items, cum_weights: list[float], rng: random.Random):
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
    """One Kafka record to send: key, value bytes, and what it is (``sale``, ``duplicate``, ``late``
    or one of ``BAD_KINDS``) with the sale it was made from."""

    key: bytes
    value: bytes
    kind: str
    event: dict | None = None


class SalesSimulator:
    """Draws sales (and, on demand, faulty records) from pre-built pools."""

    def __init__(self, seed: int, clients: int, bad_ratio: float = 0.0, duplicate_ratio: float = 0.0,
                 late_ratio: float = 0.0, late_by: timedelta = timedelta(hours=1),
                 max_event_bytes: int = 65536, bad_kinds: tuple[str, ...] = BAD_KINDS,
                 clock=lambda: datetime.now(timezone.utc), pool_seed: int | None = None):
        """``seed`` draws the events; ``pool_seed`` (default: ``seed``) builds the client pool, so that
        runs with different event seeds and one pool seed share the same clients."""
        if bad_ratio + duplicate_ratio + late_ratio > 1:
            raise ValueError("bad, duplicate and late ratios add up to more than 1")
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
        self._recent: deque[dict] = deque(maxlen=1000)

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

    def records(self) -> Iterator[Record]:
        """An endless stream of records: sales, with bad, duplicate and late ones mixed in."""
        rng = self.rng
        while True:
            draw = rng.random()
            if draw < self.bad_ratio:
                kind = rng.choice(self.bad_kinds)
                event = self.sale()
                yield Record(event["client_id"].encode(), self.bad_value(kind, event), kind, event)
            elif draw < self.bad_ratio + self.duplicate_ratio and self._recent:
                event = rng.choice(self._recent)
                yield Record(event["client_id"].encode(), encode(event), "duplicate", event)
            elif draw < self.bad_ratio + self.duplicate_ratio + self.late_ratio:
                event = self.sale(self.clock() - self.late_by)
                self._recent.append(event)
                yield Record(event["client_id"].encode(), encode(event), "late", event)
            else:
                event = self.sale()
                self._recent.append(event)
                yield Record(event["client_id"].encode(), encode(event), "sale", event)

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
