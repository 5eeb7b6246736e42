"""Duplicates and conflicting ids, decided on plain keys (no Spark), so that the rules are unit tested.

A record repeats a kept sale when it has the same ``vente_id`` and the same content (same hash of the
sale's fields): a producer retry or a re-sent message. A record with a kept sale's ``vente_id``, an
event time within the watermark delay of it, and different content is another sale re-using the id: a
conflict, kept in quarantine rather than dropped.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

# Kept sales are indexed by minute of event time, so that pruning touches only what it removes.
BUCKET_US = 60_000_000


class SaleKey(NamedTuple):
    """What the duplicate check needs of one valid record: its id, event time, content and Kafka position.
    (Named tuples: a drain batch makes 100,000 of them, and they are several times cheaper to create than
    frozen dataclasses.)"""

    vente_id: str
    event_us: int  # event time, microseconds since the epoch
    content: int  # hash of the sale's fields (columns.SALE_CONTENT)
    partition: int
    offset: int


class Kept(NamedTuple):
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
    # vente_ids of the kept sales by minute of event time (an id may be listed in a minute it has left).
    _minutes: dict[int, list[str]] = field(default_factory=dict, repr=False)

    @property
    def watermark_us(self) -> int | None:
        """Event times before this are late (None until a sale has been kept)."""
        return None if self.max_event_us is None else self.max_event_us - self.delay_us

    def needs_lookup(self, key: SaleKey) -> bool:
        """Whether sales that could match ``key`` may have been pruned from memory."""
        return self.floor_us is not None and key.event_us - self.delay_us < self.floor_us

    def _index(self, vente_id: str, event_us: int) -> None:
        self._minutes.setdefault(event_us // BUCKET_US, []).append(vente_id)

    def remember(self, vente_id: str, kept: Kept) -> None:
        """Add a kept sale found in Bronze (no effect if it is already known)."""
        known = self.seen.setdefault(vente_id, [])
        if kept not in known:
            known.append(kept)
            self._index(vente_id, kept.event_us)

    def add(self, kept: dict[str, list[Kept]]) -> None:
        """Record sales kept by a committed batch, then prune what no on-time sale can match."""
        # A drain batch adds 100,000 sales: no attribute look-ups, and _index's rule written out here (faster
        # than setdefault in bench/dedup_driver.py's state update).
        seen, minutes = self.seen, self._minutes
        top = self.max_event_us
        for vente_id, sales in kept.items():
            known = seen.get(vente_id)
            if known is None:
                seen[vente_id] = list(sales)
            else:
                known.extend(sales)
            for sale in sales:
                minute = minutes.get(sale.event_us // BUCKET_US)
                if minute is None:
                    minutes[sale.event_us // BUCKET_US] = [vente_id]
                else:
                    minute.append(vente_id)
                if top is None or sale.event_us > top:
                    top = sale.event_us
        self.max_event_us = top
        if top is None:
            return
        # An on-time sale (at or after the watermark) can only match sales within the delay of it.
        floor = top - 2 * self.delay_us
        if self.floor_us is None or floor - self.floor_us >= self.delay_us // 10:
            self._prune(floor)

    def _prune(self, floor: int) -> None:
        """Forget the sales before ``floor``: only the minutes that start before it are visited."""
        floor_minute = floor // BUCKET_US
        for minute in [m for m in self._minutes if m <= floor_minute]:
            still_here = []
            for vente_id in self._minutes.pop(minute):
                sales = self.seen.get(vente_id)
                if sales is None:
                    continue
                recent = [s for s in sales if s.event_us >= floor]
                if recent:
                    self.seen[vente_id] = recent
                    if any(s.event_us // BUCKET_US == minute for s in recent):
                        still_here.append(vente_id)
                else:
                    del self.seen[vente_id]
            if still_here:
                self._minutes[minute] = still_here
        self.floor_us = floor


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a while (the Bronze writer: for one batch). A batch makes a
    few hundred thousand keys and kept sales, which started collections that walked the whole state each
    time (a large batch's decisions took several times longer with it on); none of them is part of a cycle,
    so reference counting frees them all the same."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _position(key: SaleKey) -> tuple[int, int]:
    return key.partition, key.offset


def find_duplicates(keys: list[SaleKey], seen: dict[str, list[Kept]], delay_us: int
                    ) -> tuple[list[Decision], dict[str, list[Kept]]]:
    """Split a batch's valid sales into decisions (duplicates and conflicts) and kept sales.

    Records are taken in Kafka order (partition, offset); each is compared with the kept sales that
    came before it (in ``seen``, or earlier in this batch). Same vente_id and same content: a
    duplicate. Same vente_id, different content, event times within ``delay_us``: a conflicting id.
    Otherwise the sale is kept. ``seen`` is not modified, so a batch that fails to commit leaves the
    state as it was.
    """
    # Only records of one vente_id are compared, so a sale whose id is new and appears once in the batch
    # (nearly all of them) is kept at once; only the others are ordered and compared.
    ids = [key.vente_id for key in keys]
    distinct = set(ids)
    repeated = {i for i, n in Counter(ids).items() if n > 1} if len(distinct) < len(ids) else set()
    contested = repeated | {i for i in distinct if i in seen}
    kept: dict[str, list[Kept]] = {}
    compared: list[SaleKey] = []
    for key in keys:
        if key.vente_id in contested:
            compared.append(key)
        else:
            kept[key.vente_id] = [Kept(key.event_us, key.content, key.partition, key.offset)]
    decisions: list[Decision] = []
    for key in sorted(compared, key=_position):
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
