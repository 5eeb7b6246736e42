"""The sales simulator and the contract validator, without Kafka."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from lakehouse.ingest.contract import REQUIRED_FIELDS, ContractLimits, violations
from lakehouse.ingest.simulator import BAD_KINDS, COUNTRIES, EXPECTED_REASON, SalesSimulator, encode

FIXED_NOW = datetime(2024, 12, 12, 10, 15, 25, tzinfo=timezone.utc)
FIXED_NOW_US = int(FIXED_NOW.timestamp()) * 1_000_000


def check(value: bytes | None, max_bytes: int = 65536) -> list[str]:
    """The contract's verdict with the simulator's clock as the reference time."""
    return violations(value, ContractLimits(max_event_bytes=max_bytes), FIXED_NOW_US, FIXED_NOW_US)


def make(seed: int = 7, clients: int = 200, **kwargs) -> SalesSimulator:
    return SalesSimulator(seed, clients, clock=lambda: FIXED_NOW, **kwargs)


def test_same_seed_gives_same_pool_catalog_and_events() -> None:
    a, b = make(7), make(7)
    assert a.clients == b.clients
    assert a.catalog == b.catalog
    assert [a.sale() for _ in range(50)] == [b.sale() for _ in range(50)]
    assert make(8).clients != a.clients


def test_the_pool_comes_from_its_own_seed_not_the_events_seed() -> None:
    a, b = make(7, pool_seed=1), make(8, pool_seed=1)
    assert a.clients == b.clients
    assert [a.sale() for _ in range(20)] != [b.sale() for _ in range(20)]
    assert make(7, pool_seed=2).clients != a.clients


def test_pool_is_localized_and_catalog_is_rich() -> None:
    sim = make(3, clients=1000)
    assert {c.pays for c in sim.clients} == set(COUNTRIES)
    assert len(sim.catalog) >= 20 and len({p.categorie for p in sim.catalog}) >= 4
    b2b = [c for c in sim.clients if c.segment == "B2B"]
    assert 0.1 < len(b2b) / len(sim.clients) < 0.3
    # Every client keeps one city and country across all of its sales.
    sales = [sim.sale() for _ in range(3000)]
    places = {(s["client_id"], s["pays"], s["ville"]) for s in sales}
    assert len(places) == len({s["client_id"] for s in sales})


def test_purchase_frequency_is_skewed_and_b2b_buys_more() -> None:
    sim = make(5, clients=500)
    sales = [sim.sale() for _ in range(5000)]
    per_client = Counter(s["client_id"] for s in sales)
    top_10 = sum(n for _, n in per_client.most_common(10))
    assert top_10 / len(sales) > 0.2          # a few frequent buyers ...
    assert sum(1 for n in per_client.values() if n == 1) > 50  # ... and a long tail of one-off buyers
    mean = lambda seg: sum(s["quantite"] for s in sales if s["segment"] == seg) / sum(  # noqa: E731
        1 for s in sales if s["segment"] == seg)
    assert mean("B2B") > 5 * mean("B2C")


def test_sale_fields_and_amount_arithmetic() -> None:
    sale = make().sale()
    assert set(REQUIRED_FIELDS) <= set(sale)
    assert sale["timestamp"] == "2024-12-12T10:15:25.000+00:00"
    assert sale["montant"] == round(sale["prix_unitaire"] * sale["quantite"], 2)
    assert sale["devise"] == "EUR" and sale["canal"] in ("web", "magasin", "mobile")
    assert check(encode(sale)) == []


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_bad_kind_breaks_the_contract_with_its_reason(kind: str) -> None:
    sim = make(11, max_event_bytes=2048)
    for _ in range(20):  # several draws: every variant of the kind must be caught
        reasons = check(sim.bad_value(kind, sim.sale()), 2048)
        assert [r.split(":")[0] for r in reasons] == [EXPECTED_REASON[kind]]


@pytest.mark.parametrize("event, expected", [
    ({"vente_id": 1, "client_id": 42, "produit_id": 3, "timestamp": "2024-12-12T10:15:25.123456+01:00",
      "quantite": 1, "montant": 0, "client_nom": "Jean", "produit_nom": "Stylo", "categorie": "Bureau",
      "pays": "France", "segment": "Particulier", "nouveau_champ": "x"}, []),
    ({"vente_id": "v", "client_id": "c", "produit_id": "p", "timestamp": "2024-12-12T10:15:25Z",
      "quantite": 3, "montant": 12.5, "client_nom": "ACME", "produit_nom": "X", "categorie": "Y",
      "pays": "UK", "segment": "Entreprise"}, []),
    ({"vente_id": None, "client_id": True, "produit_id": "", "timestamp": "demain", "quantite": 1.5,
      "montant": -2, "client_nom": "A", "produit_nom": "B", "categorie": "C", "pays": "D",
      "segment": "B2G"},
     ["missing_field:vente_id", "wrong_type:client_id", "bad_text:produit_id", "bad_timestamp",
      "wrong_type:quantite", "negative_amount:montant", "unknown_segment"]),
])
def test_contract_accepts_both_producer_shapes_and_lists_every_violation(event, expected) -> None:
    assert check(json.dumps(event).encode()) == expected


def test_contract_rejects_non_objects() -> None:
    assert check(b"[1, 2]") == ["not_object"]
    assert check(b'{"a": [1, 2]}') == ["nested_value"]
    assert check(None) == ["empty"]


def test_mixed_stream_counts_kinds_and_late_sales_are_late() -> None:
    sim = make(13, bad_ratio=0.2, duplicate_ratio=0.1, late_ratio=0.1, late_by=timedelta(hours=2))
    gen = sim.records()
    records = [next(gen) for _ in range(2000)]
    kinds = Counter(r.kind for r in records)
    assert set(kinds) == {"sale", "duplicate", "late", *BAD_KINDS}
    assert all(r.event["timestamp"].startswith("2024-12-12T08:15:25") for r in records if r.kind == "late")
    sent_ids = [r.event["vente_id"] for r in records if r.kind in ("sale", "late")]
    assert len(sent_ids) == len(set(sent_ids))
    assert all(r.event["vente_id"] in set(sent_ids) for r in records if r.kind == "duplicate")


def test_ratios_above_one_are_refused() -> None:
    with pytest.raises(ValueError, match="add up to more than 1"):
        make(bad_ratio=0.6, duplicate_ratio=0.5)
