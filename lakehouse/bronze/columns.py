"""Column definitions of the Bronze tables, shared by the contract check, the writer and the readers."""

from __future__ import annotations

from pyspark.sql import types as T

MONEY = T.DecimalType(14, 2)
# Where a record came from: the key as received (bytes) and, when it is valid UTF-8, as text.
LINEAGE = ["kafka_key", "kafka_key_bytes", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp"]
BATCH = ["ingestion_ts", "bronze_query_id", "bronze_batch_id"]
# Position of the kept sale a duplicate or a conflicting record was judged against.
KEPT = ["kept_partition", "kept_offset"]

# What makes two records the same sale (the duplicate check compares a hash of these).
SALE_CONTENT = ["vente_id", "client_id", "produit_id", "event_ts", "quantite", "montant", "prix_unitaire",
                "client_nom", "produit_nom", "categorie", "pays", "ville", "segment", "canal", "devise"]

# What makes two corrections (returns, cancellations) the same one; kept under their retour_id.
CORRECTION_CONTENT = ["type_evenement", "retour_id", "vente_id", "client_id", "event_ts", "quantite", "montant",
                      "motif"]

BRONZE_COLUMNS = [
    "vente_id", "client_id", "produit_id", "event_ts", "jour", "quantite", "montant", "prix_unitaire",
    "client_nom", "produit_nom", "categorie", "pays", "ville", "segment", "canal", "devise",
    "contract_version", "is_late", "timestamp_naif", "raw_json", *LINEAGE, *BATCH,
]
CORRECTIONS_COLUMNS = [
    "retour_id", "type_evenement", "vente_id", "client_id", "event_ts", "jour", "quantite", "montant", "motif",
    "contract_version", "is_late", "timestamp_naif", "raw_json", *LINEAGE, *BATCH,
]
QUARANTINE_COLUMNS = ["reason", "reasons", "raw_value", "raw_text", *LINEAGE, *KEPT, *BATCH]
# retour_id: set when the record repeats a kept correction (vente_id is then the sale it names).
DUPLICATES_COLUMNS = ["vente_id", "retour_id", "raw_value", *LINEAGE, *KEPT, *BATCH]
METRICS_SCHEMA = T.StructType([
    T.StructField("query_id", T.StringType()), T.StructField("batch_id", T.LongType()),
    T.StructField("committed_at", T.TimestampType()), T.StructField("input_rows", T.LongType()),
    T.StructField("bronze_rows", T.LongType()), T.StructField("quarantined_rows", T.LongType()),
    T.StructField("duplicate_rows", T.LongType()), T.StructField("late_rows", T.LongType()),
    T.StructField("max_event_ts", T.TimestampType()), T.StructField("watermark", T.TimestampType()),
    T.StructField("duration_ms", T.LongType()), T.StructField("rows_per_s", T.DoubleType()),
    T.StructField("latency_p50_ms", T.LongType()), T.StructField("latency_max_ms", T.LongType()),
    T.StructField("kafka_lag", T.LongType()), T.StructField("conflicting_rows", T.LongType()),
    T.StructField("correction_rows", T.LongType()),
])

# Bronze's Delta statistics (min/max per file, for data skipping) cover the columns readers filter on,
# not the raw JSON and the descriptive text (statistics are computed at every commit).
BRONZE_TABLE_PROPERTIES = {
    "delta.dataSkippingStatsColumns": ",".join(["vente_id", "client_id", "event_ts", "kafka_partition",
                                                "kafka_offset", "kafka_timestamp", "bronze_query_id",
                                                "bronze_batch_id"]),
}
CORRECTIONS_TABLE_PROPERTIES = {
    "delta.dataSkippingStatsColumns": ",".join(["retour_id", "vente_id", "client_id", "event_ts", "kafka_partition",
                                                "kafka_offset", "bronze_query_id", "bronze_batch_id"]),
}
