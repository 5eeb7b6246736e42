"""What the Bronze stream records in its own Delta commits, and how a restart reads it back.

Every commit the stream makes to Bronze, quarantine or duplicates carries a small JSON tag in the
commit's ``userMetadata``: the checkpoint's query id and the batch id, the latest event time kept so far
(the duplicate check's watermark base) and, on the batch's last commit, the batch's figures. A restart
then reads only the newest commits of each table (Delta's history) instead of scanning the tables:

- which tables already hold the batch being replayed (``batch_commits``),
- where the watermark stood before it (``latest_before``),
- the figures of batches whose metrics row had not reached the metrics table yet.

Commits of other writers (upkeep's OPTIMIZE, DELETE and VACUUM) carry no tag and are passed over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.lake import LakePath

TAG_KIND = "lakehouse.bronze"
# Commits read per step when walking a table's history back (doubled at each step).
FIRST_STEP = 64


@dataclass(frozen=True)
class CommitTag:
    """The stream's tag on one commit."""

    query_id: str
    batch_id: int
    max_event_us: int | None  # latest event time kept in Bronze after this batch
    figures: dict | None  # the batch's figures (``BatchFigures.to_tag``), on its last commit only
    committed_ms: int | None = None  # the commit's timestamp, when read back from the history

    def to_json(self) -> str:
        return json.dumps({"kind": TAG_KIND, "query_id": self.query_id, "batch_id": self.batch_id,
                           "max_event_us": self.max_event_us, "figures": self.figures},
                          separators=(",", ":"))

    @staticmethod
    def from_json(text: str | None, committed_ms: int | None = None) -> CommitTag | None:
        """The tag in a commit's userMetadata, or None for a commit the stream did not make."""
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("kind") != TAG_KIND:
            return None
        return CommitTag(data["query_id"], int(data["batch_id"]), data.get("max_event_us"),
                         data.get("figures"), committed_ms)


def _history(spark: SparkSession, path: LakePath, limit: int) -> list[tuple[int, int, str | None]]:
    """(version, timestamp in ms, userMetadata) of the newest ``limit`` commits, newest first."""
    from delta.tables import DeltaTable

    rows = (DeltaTable.forPath(spark, str(path)).history(limit)
            .select("version", F.unix_millis("timestamp"), "userMetadata").collect())
    return sorted(((r[0], r[1], r[2]) for r in rows), reverse=True)


def tags_back_to(spark: SparkSession, path: LakePath, query_id: str, batch_id: int) -> list[CommitTag] | None:
    """The stream's tags on ``path``, newest first, back to and including the first one of an earlier
    batch than ``batch_id`` (or the table's first commit). Reads only as many commits as that takes.

    None when the table has commits but none of this query carries a tag (written before tags
    existed): the caller then falls back to reading the table.
    """
    if not delta_table_exists(path):
        return []
    limit = FIRST_STEP
    while True:
        history = _history(spark, path, limit)
        tags = []
        for version, committed_ms, metadata in history:
            tag = CommitTag.from_json(metadata, committed_ms)
            if tag is None or tag.query_id != query_id:
                continue
            tags.append(tag)
            if tag.batch_id < batch_id:
                return tags
        if len(history) < limit or history[-1][0] == 0:
            return tags if tags else None
        limit *= 2


def batch_commits(tags: list[CommitTag] | None, batch_id: int) -> bool:
    """Whether the tags show a commit of ``batch_id``."""
    return any(t.batch_id == batch_id for t in tags or ())


def latest_before(tags: list[CommitTag] | None, batch_id: int) -> CommitTag | None:
    """The newest tag of a batch before ``batch_id``."""
    return next((t for t in tags or () if t.batch_id < batch_id), None)
