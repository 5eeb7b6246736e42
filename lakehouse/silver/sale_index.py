"""Which vente_ids silver/ventes may hold, known in the driver without reading the table.

A batch must know, for each sale it brings, whether silver/ventes counted that vente_id already (a re-used id
is refused), and it must read the rows of the sales its corrections name. Sale ids are drawn at random, so
the files' statistics cannot say which file holds one: asking the table means scanning its ``vente_id``
column, a cost that grows with every sale ever counted. The index keeps a 64-bit hash of each counted id,
sorted (8 bytes a sale): an id whose hash is absent is certainly not in the table, and only the others are
looked for in it. A hash collision only costs a needless look, never a wrong answer, so the index may hold
more ids than the table (a batch that failed after adding its ids) but never fewer.

The hashes are Python's ``hash`` of the id: salted per process, which is fine for an index that lives and dies
with the process (it is rebuilt from the table at the first batch after a start).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _hashes(ids: list[str]) -> np.ndarray:
    return np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids))


class SaleIndex:
    """The hashes of a set of vente_ids, sorted; ``may_hold`` answers for many ids at once."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._sorted = np.unique(_hashes(list(ids)))

    def __len__(self) -> int:
        return len(self._sorted)

    def _present(self, hashes: np.ndarray) -> np.ndarray:
        if not len(self._sorted):
            return np.zeros(len(hashes), dtype=bool)
        at = np.minimum(np.searchsorted(self._sorted, hashes), len(self._sorted) - 1)
        return self._sorted[at] == hashes

    def may_hold(self, ids: Iterable[str]) -> set[str]:
        """The ids that may be in the set (every id that is, and rarely one that is not)."""
        ids = list(ids)
        if not ids:
            return set()
        return {i for i, hit in zip(ids, self._present(_hashes(ids))) if hit}

    def add(self, ids: Iterable[str]) -> None:
        """Add ids (those already held are left as they are)."""
        new = np.unique(_hashes(list(ids)))
        new = new[~self._present(new)]
        if len(new):
            # One insertion of the sorted new hashes: a copy of the array, not a sort of it.
            self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, new), new)
