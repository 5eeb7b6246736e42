"""Duplicates and conflicting ids, decided on plain keys (no Spark), so that the rules are unit tested.

A record repeats a kept sale when it has the same ``vente_id`` and the same content (same hash of the
sale's fields): a producer retry or a re-sent message. A record with a kept sale's ``vente_id``, an
event time within the watermark delay of it, and different content is another sale re-using the id: a
conflict, kept in quarantine rather than dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SaleKey:
    """What the duplicate check needs of one valid record: its id, event time, content and Kafka position."""

    vente_id: str
    event_us: int  # event time, microseconds since the epoch
    content: int  # hash of the sale's fields (columns.SALE_CONTENT)
    partition: int
    offset: int


@dataclass(frozen=True)
class Kept:
    """A sale kept in Bronze, as the check remembers it."""

    event_us: int
    content: int
    partition: int
    offset: int


@dataclass(frozen=True)
class Decision:
    """A record that is not kept: ``duplicate`` or ``conflicting_id``, and the kept sale it met."""

    key: SaleKey
    kind: str
    kept: Kept


@dataclass
class DedupState:
    """The sales kept in Bronze by vente_id, for the duplicate and late checks.

    ``seen`` holds every kept sale whose event time is at or after ``floor_us`` (all of them while
    ``floor_us`` is None); older ones are pruned from memory and looked up in Bronze when a late sale
    needs them. ``max_event_us`` is the latest event time kept, the base of the watermark.
    """

    delay_us: int
    seen: dict[str, list[Kept]] = field(default_factory=dict)
    max_event_us: int | None = None
    floor_us: int | None = None

    @property
    def watermark_us(self) -> int | None:
        """Event times before this are late (None until a sale has been kept)."""
        return None if self.max_event_us is None else self.max_event_us - self.delay_us

    def needs_lookup(self, key: SaleKey) -> bool:
        """Whether sales that could match ``key`` may have been pruned from memory."""
        return self.floor_us is not None and key.event_us - self.delay_us < self.floor_us

    def remember(self, vente_id: str, kept: Kept) -> None:
        """Add a kept sale found in Bronze (no effect if it is already known)."""
        known = self.seen.setdefault(vente_id, [])
        if kept not in known:
            known.append(kept)

    def add(self, kept: dict[str, list[Kept]]) -> None:
        """Record sales kept by a committed batch, then prune what no on-time sale can match."""
        for vente_id, sales in kept.items():
            self.seen.setdefault(vente_id, []).extend(sales)
            top = max(s.event_us for s in sales)
            if self.max_event_us is None or top > self.max_event_us:
                self.max_event_us = top
        if self.max_event_us is None:
            return
        # An on-time sale (at or after the watermark) can only match sales within the delay of it.
        floor = self.max_event_us - 2 * self.delay_us
        # Pruning walks the whole map: do it when the floor moved by a tenth of the delay or more.
        if self.floor_us is None or floor - self.floor_us >= self.delay_us // 10:
            for vente_id in list(self.seen):
                recent = [s for s in self.seen[vente_id] if s.event_us >= floor]
                if recent:
                    self.seen[vente_id] = recent
                else:
                    del self.seen[vente_id]
            self.floor_us = floor


def find_duplicates(keys: list[SaleKey], seen: dict[str, list[Kept]], delay_us: int
                    ) -> tuple[list[Decision], dict[str, list[Kept]]]:
    """Split a batch's valid sales into decisions (duplicates and conflicts) and kept sales.

    Records are taken in Kafka order (partition, offset); each is compared with the kept sales that
    came before it (in ``seen``, or earlier in this batch). Same vente_id and same content: a
    duplicate. Same vente_id, different content, event times within ``delay_us``: a conflicting id.
    Otherwise the sale is kept. ``seen`` is not modified, so a batch that fails to commit leaves the
    state as it was.
    """
    decisions: list[Decision] = []
    kept: dict[str, list[Kept]] = {}
    for key in sorted(keys, key=lambda k: (k.partition, k.offset)):
        earlier = (*seen.get(key.vente_id, ()), *kept.get(key.vente_id, ()))
        same = next((s for s in earlier if s.content == key.content and s.event_us == key.event_us), None)
        near = next((s for s in earlier if abs(key.event_us - s.event_us) <= delay_us), None)
        if same is not None:
            decisions.append(Decision(key, "duplicate", same))
        elif near is not None:
            decisions.append(Decision(key, "conflicting_id", near))
        else:
            kept.setdefault(key.vente_id, []).append(Kept(key.event_us, key.content, key.partition, key.offset))
    return decisions, kept
