"""The sales simulator (sales, returns, cancellations, faults) and the contract validator, without Kafka."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal

import pytest

from lakehouse.ingest.contract import REQUIRED_FIELDS, ContractLimits, violations
from lakehouse.ingest.simulator import (
    BAD_KINDS,
    CANCEL_MOTIFS,
    CORRECTION_DELAY_MAX,
    CORRECTION_DELAY_RECORDS,
    COUNTRIES,
    EARLY_SALE_DELAY_RECORDS,
    EXPECTED_REASON,
    RETURN_MOTIFS,
    SalesSimulator,
    encode,
)

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


# --- returns and cancellations ---------------------------------------------------------------------------

def draw(sim: SalesSimulator, n: int) -> list:
    gen = sim.records()
    return [next(gen) for _ in range(n)]


@pytest.fixture(scope="module")
def mixed_stream() -> list:
    """20,000 records: sales with returns, cancellations (some early) and every fault."""
    sim = make(17, return_ratio=0.05, cancel_ratio=0.02, early_corrections=0.1, bad_ratio=0.05,
               duplicate_ratio=0.02, late_ratio=0.02)
    return draw(sim, 20_000)


def test_corrections_follow_their_ratios(mixed_stream) -> None:
    kinds = Counter(r.kind for r in mixed_stream)
    sales = kinds["sale"] + kinds["late"]  # the sales a correction may follow
    assert 0.045 < kinds["return"] / sales < 0.055
    assert 0.016 < kinds["cancel"] / sales < 0.024
    early = [r for r in mixed_stream if r.early]
    assert {r.kind for r in early} == {"return", "cancel"}
    assert 0.08 < len(early) / (kinds["return"] + kinds["cancel"]) < 0.12
    assert set(kinds) == {"sale", "late", "duplicate", "return", "cancel", *BAD_KINDS}


def test_each_correction_names_a_sale_sent_before_it_or_after_it_when_early(mixed_stream) -> None:
    sent_at = {r.event["vente_id"]: i for i, r in enumerate(mixed_stream) if r.kind in ("sale", "late")}
    sales = {r.event["vente_id"]: r.event for r in mixed_stream if r.kind in ("sale", "late")}
    corrections = [(i, r) for i, r in enumerate(mixed_stream) if r.kind in ("return", "cancel")]
    late_delays, early_delays = [], []
    for i, r in corrections:
        e = r.event
        sale = sales[e["vente_id"]]  # a sale really sent (not a bad record's, nor one only held back)
        assert (e["client_id"], r.key) == (sale["client_id"], sale["client_id"].encode())
        delay = i - sent_at[e["vente_id"]]
        (early_delays if r.early else late_delays).append(delay)
        assert e["type_evenement"] == {"return": "retour", "cancel": "annulation"}[r.kind]
        assert e["retour_id"].startswith("R") and len(e["retour_id"]) == 37
        assert e["motif"] in (RETURN_MOTIFS if r.kind == "return" else CANCEL_MOTIFS) if "motif" in e else True
        if r.kind == "return":
            assert 1 <= e["quantite"] <= sale["quantite"]
            refund = (Decimal(str(sale["montant"])) * e["quantite"] / sale["quantite"]).quantize(
                Decimal("0.01"), rounding=ROUND_DOWN)
            assert Decimal(str(e["montant"])) == refund <= Decimal(str(sale["montant"]))
        else:
            assert "quantite" not in e and "montant" not in e
    low, high = CORRECTION_DELAY_RECORDS
    assert min(late_delays) >= low - 1 and max(late_delays) <= high + 20  # + the records due at once
    assert max(late_delays) > 100  # some come much later ...
    assert sorted(late_delays)[len(late_delays) // 2] < 100  # ... most soon
    assert all(-EARLY_SALE_DELAY_RECORDS[1] - 5 <= d < 0 for d in early_delays)
    # One correction per sale at most (so never a return after its cancellation), each with its own id.
    assert len({r.event["vente_id"] for _, r in corrections}) == len(corrections)
    assert len({r.event["retour_id"] for _, r in corrections}) == len(corrections)
    # Sales keep their classic shape; a correction is not a sale a duplicate could re-send.
    assert all("type_evenement" not in r.event for r in mixed_stream if r.kind in ("sale", "late", "duplicate"))
    assert {r.event["vente_id"] for r in mixed_stream if r.kind == "duplicate"} <= set(sales)


def test_every_correction_passes_the_contract(mixed_stream) -> None:
    corrections = [r for r in mixed_stream if r.kind in ("return", "cancel")]
    assert {r.event.get("motif") is None for r in corrections} == {True, False}  # the motif is optional
    assert [check(r.value) for r in corrections] == [[]] * len(corrections)
    assert [check(r.value) for r in mixed_stream if r.kind == "sale"][:2000] == [[]] * 2000


def test_corrections_are_deterministic_per_seed() -> None:
    kwargs = dict(return_ratio=0.2, cancel_ratio=0.1, early_corrections=0.3)
    first = [(r.kind, r.key, r.value, r.early) for r in draw(make(3, **kwargs), 3000)]
    assert first == [(r.kind, r.key, r.value, r.early) for r in draw(make(3, **kwargs), 3000)]
    assert first != [(r.kind, r.key, r.value, r.early) for r in draw(make(4, **kwargs), 3000)]


def test_without_corrections_the_stream_of_a_seed_is_unchanged() -> None:
    # The ratios are drawn only when on: a seed sends the same sales as before returns existed.
    plain = [r.value for r in draw(make(9, duplicate_ratio=0.1), 500)]
    assert plain == [r.value for r in draw(make(9, duplicate_ratio=0.1, early_corrections=0.5), 500)]
    assert all(r.kind in ("sale", "duplicate") for r in draw(make(9), 2000))


def test_a_refund_is_rounded_down_to_the_cent() -> None:
    sim = make()
    sale = {"vente_id": "v1", "client_id": "C1", "quantite": 3, "montant": 10.0}
    refunds = {(e["quantite"], e["montant"]) for e in (sim.correction("return", sale) for _ in range(200))}
    assert refunds == {(1, 3.33), (2, 6.66), (3, 10.0)}
    one = sim.correction("return", {"vente_id": "v2", "client_id": "C2", "quantite": 1, "montant": 0.01})
    assert (one["quantite"], one["montant"]) == (1, 0.01)


def test_a_correction_is_dated_when_sent_and_waits_a_minute_at_most() -> None:
    now = [FIXED_NOW]
    sim = SalesSimulator(5, 50, clock=lambda: now[0], return_ratio=1.0)
    gen = sim.records()
    sale = next(gen)
    assert sale.kind == "sale"
    now[0] += CORRECTION_DELAY_MAX  # a slow run: no other record came due before the time was up
    correction = next(gen)
    assert (correction.kind, correction.event["vente_id"]) == ("return", sale.event["vente_id"])
    assert correction.event["timestamp"] == "2024-12-12T10:16:25.000+00:00"
    assert json.loads(correction.value)["timestamp"] == correction.event["timestamp"]


def test_an_early_correction_comes_first_and_is_not_dated_after_its_send_time() -> None:
    now = [FIXED_NOW]
    sim = SalesSimulator(5, 50, clock=lambda: now[0], cancel_ratio=1.0, early_corrections=1.0)
    gen = sim.records()
    first = next(gen)
    assert (first.kind, first.early) == ("cancel", True)
    assert first.event["timestamp"] == FIXED_NOW.isoformat(timespec="milliseconds")
    now[0] += timedelta(seconds=5)  # its sale was held back 5 s at most
    second = next(gen)
    assert (second.kind, second.event["vente_id"]) == ("sale", first.event["vente_id"])
    assert second.event["timestamp"] <= first.event["timestamp"]  # the sale happened first


@pytest.mark.parametrize("kwargs, message", [
    (dict(return_ratio=0.7, cancel_ratio=0.4), "return and cancel ratios .* add up to more than 1"),
    (dict(return_ratio=1.5), "return ratio 1.5 is not between 0 and 1"),
    (dict(cancel_ratio=-0.1), "cancel ratio -0.1 is not between 0 and 1"),
    (dict(early_corrections=2), "early corrections ratio 2 is not between 0 and 1"),
])
def test_correction_ratios_are_checked(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kwargs)
