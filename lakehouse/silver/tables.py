"""Silver's table names, tiers and commit tag: what Silver's readers need without Spark (the web page)."""

from __future__ import annotations

import json

TIERS = ("Premium", "Standard", "Economy")
# The tables Silver keeps: figures, the sales in their current state, the corrections waiting for their sale
# and the events refused.
SILVER_TABLES = ("clients", "pays", "segments", "ventes_jour", "produits", "ventes", "corrections_en_attente",
                 "rejets")
# The tables of figures every reader shows, written by every batch.
FIGURE_TABLES = ("clients", "pays", "segments", "ventes_jour", "produits")
# The small tables each batch rewrites whole (one file): upkeep does not compact them.
REWRITTEN_TABLES = ("pays", "segments", "ventes_jour", "produits", "corrections_en_attente")


def silver_tag(batch_id: int) -> str:
    """The userMetadata of each Silver commit: the run's batch, by which a reader finds every table's
    version of one run (time travel across the four tables)."""
    return json.dumps({"kind": "silver", "batch_id": batch_id})


def tagged_batch(user_metadata: str | None) -> int | None:
    """The batch of a Silver commit's userMetadata (None: not a tagged Silver commit)."""
    try:
        tag = json.loads(user_metadata or "")
    except ValueError:
        return None
    if isinstance(tag, dict) and tag.get("kind") == "silver" and type(tag.get("batch_id")) is int:
        return tag["batch_id"]
    return None
