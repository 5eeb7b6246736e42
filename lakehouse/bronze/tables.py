"""Bronze's corrections table, created empty when missing: Silver streams from it even before the first
return or cancellation arrives."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from lakehouse.bronze.columns import CORRECTIONS_COLUMNS, CORRECTIONS_TABLE_PROPERTIES, MONEY
from lakehouse.platform.delta import append_delta, delta_table_exists, is_commit_conflict
from lakehouse.platform.paths import Paths

log = logging.getLogger(__name__)

_TYPES = {
    "event_ts": T.TimestampType(), "jour": T.DateType(), "quantite": T.IntegerType(), "montant": MONEY,
    "contract_version": T.IntegerType(), "is_late": T.BooleanType(), "timestamp_naif": T.BooleanType(),
    "kafka_key_bytes": T.BinaryType(), "kafka_partition": T.IntegerType(), "kafka_offset": T.LongType(),
    "kafka_timestamp": T.TimestampType(), "ingestion_ts": T.TimestampType(), "bronze_batch_id": T.LongType(),
}
CORRECTIONS_SCHEMA = T.StructType([T.StructField(c, _TYPES.get(c, T.StringType())) for c in CORRECTIONS_COLUMNS])


def ensure_corrections_table(spark: SparkSession, paths: Paths) -> None:
    """Create the corrections table, empty, unless it exists (the Bronze stream and Silver may both try)."""
    path = paths.corrections
    if delta_table_exists(path):
        return
    try:
        append_delta(spark.createDataFrame([], CORRECTIONS_SCHEMA), path, "jour",
                     properties=CORRECTIONS_TABLE_PROPERTIES)
        log.info("Created the empty Bronze corrections table %s", path)
    except Exception as e:  # created meanwhile by the other job
        if not (is_commit_conflict(e) or "already exists" in str(e)[:2000]) or not delta_table_exists(path):
            raise
