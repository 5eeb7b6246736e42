"""Delta table and streaming-checkpoint helpers shared by the Bronze and Silver jobs and their readers."""

from __future__ import annotations

import json

from pyspark.sql import DataFrame, Row, SparkSession

from lakehouse.platform.lake import LakePath


def is_commit_conflict(error: BaseException) -> bool:
    """Whether ``error`` is Delta refusing a commit because a concurrent one changed what it read
    (io.delta.exceptions.Concurrent*, as PySpark or py4j surface them): the operation may be run again."""
    return "Concurrent" in type(error).__name__ or "io.delta.exceptions.Concurrent" in str(error)[:2000]


def one_row(df: DataFrame) -> Row:
    """The row of a query that always gives one: an aggregate without grouping, a Delta command's metrics,
    a table's latest commit (``DataFrame.first`` is typed for the empty result too)."""
    row = df.first()
    if row is None:
        raise RuntimeError("A query that always gives one row gave none")
    return row


def delta_table_exists(path: LakePath) -> bool:
    """A Delta table with at least one commit (a job killed during a table's first commit leaves an
    empty ``_delta_log``, which Delta cannot read)."""
    return any((path / "_delta_log").glob("*.json"))


def read_delta(spark: SparkSession, path: LakePath) -> DataFrame | None:
    """The table at ``path``, or None when it has no commit yet."""
    if not delta_table_exists(path):
        return None
    return spark.read.format("delta").load(str(path))


def append_delta(df: DataFrame, path: LakePath, partition_by: str | None = None,
                 user_metadata: str | None = None, properties: dict[str, str] | None = None) -> None:
    """Append ``df`` to the table at ``path`` (created on first use; new columns are added), with
    ``user_metadata`` as the commit's userMetadata when given. ``properties`` (``delta.*`` table
    properties) apply when this append creates the table; an existing table keeps its own."""
    writer = df.write.format("delta").mode("append").option("mergeSchema", "true").options(**(properties or {}))
    if partition_by:
        writer = writer.partitionBy(partition_by)
    if user_metadata is not None:
        writer = writer.option("userMetadata", user_metadata)
    writer.save(str(path))


def checkpoint_query_id(checkpoint: LakePath) -> str:
    """The query id Spark keeps in a streaming checkpoint (written when the query starts): a new
    checkpoint gets a new id, so its batch numbers never collide with an older run's."""
    return json.loads((checkpoint / "metadata").read_text())["id"]


def batch_timestamp_ms(checkpoint: LakePath, batch_id: int) -> int | None:
    """The time Spark gave a batch when it planned it (``batchTimestampMs`` of its offset log entry: a
    batch run again after a crash gets the same), or None without that entry."""
    try:
        lines = (checkpoint / "offsets" / str(batch_id)).read_text(encoding="utf-8").splitlines()
        return int(json.loads(lines[1])["batchTimestampMs"])
    except (OSError, IndexError, ValueError, KeyError, TypeError):
        return None


def checkpoint_entries(checkpoint: LakePath, log_name: str) -> int:
    """Entries of a checkpoint's ``offsets`` (batches planned) or ``commits`` (batches done) log."""
    return sum(p.name.isdigit() for p in (checkpoint / log_name).glob("*"))


def checkpoint_has_entries(checkpoint: LakePath, log_name: str) -> bool:
    """Whether a checkpoint's ``offsets`` or ``commits`` log has an entry."""
    return checkpoint_entries(checkpoint, log_name) > 0
