"""The sale contract on Spark: the same verdict as ``lakehouse.ingest.contract.violations``, record by
record, as column expressions (no Python in the stream's hot path).

Each step mirrors the Python one: size, UTF-8, the blanked structure, the JSON parse (Spark's
``try_parse_json``, with duplicate keys allowed by the session so that they can be named), the type the
record is judged as (``contract.event_type_of``), then each field of that type, its kind and value in
``FIELDS`` order. Requires ``spark.sql.variant.allowDuplicateKeys=true``
(set by ``lakehouse.platform.spark``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.bronze.columns import LINEAGE, MONEY
from lakehouse.ingest.contract import (
    CLOSED_OBJECT,
    CONTRACT_VERSION,
    CONTROL_CHAR,
    DEFAULT_EVENT_TYPE,
    ESCAPE_MARK,
    ESCAPED_BACKSLASH,
    ESCAPED_QUOTE,
    EVENT_TYPES,
    FIELDS,
    FLAT_OBJECT,
    LONG_NUMBER,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    NAIVE_TIMESTAMP,
    NESTED_OBJECT,
    SCALAR,
    SEGMENT_ALIASES,
    STARTS_ARRAY,
    STARTS_OBJECT,
    STRING_MARK,
    STRING_TOKEN,
    TIMESTAMP,
    ContractLimits,
    Field,
    java_pattern,
)
from lakehouse.platform.codegen import per_batch_long

_INT_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")


def _shape(text: Column) -> Column:
    """The record with every string blanked to ``STRING_MARK`` (escapes first), as ``contract._shape``."""
    normalized = F.replace(F.replace(text, F.lit(ESCAPED_BACKSLASH), F.lit(ESCAPE_MARK)),
                           F.lit(ESCAPED_QUOTE), F.lit(ESCAPE_MARK))
    return F.regexp_replace(normalized, STRING_TOKEN, STRING_MARK)


def _record_reason(size: Column, utf8: Column, text: Column, v: Column, shape: Column, max_bytes: int) -> Column:
    """The record-level reason (null for a flat object with unique keys), as ``contract._record_reason``."""
    flat = shape.rlike(java_pattern(FLAT_OBJECT))
    keys = F.json_object_keys(F.when(flat, text))
    repeated = F.size(keys) != F.size(F.array_distinct(keys))
    return (
        F.when(size == 0, F.lit("empty"))
        .when(size > max_bytes, F.lit("oversized"))
        .when(~utf8, F.lit("non_utf8"))
        .when(shape.rlike(java_pattern(LONG_NUMBER)), F.lit("bad_number"))
        .when(flat, F.when(v.isNull(), F.lit("not_json")).when(repeated, F.lit("duplicate_key")))
        .when(shape.rlike(java_pattern(STARTS_OBJECT)),
              F.when(shape.rlike(java_pattern(NESTED_OBJECT)), F.lit("nested_value"))
              .when(shape.rlike(java_pattern(CLOSED_OBJECT)),
                    F.when(v.isNull(), F.lit("not_json")).otherwise(F.lit("trailing_data")))
              .otherwise(F.lit("not_json")))
        .when(shape.rlike(java_pattern(STARTS_ARRAY)), F.lit("not_object"))
        .when(~shape.rlike(java_pattern(SCALAR)) | v.isNull(), F.lit("not_json"))
        .otherwise(F.lit("not_object"))
    )


# The value form each kind of field is judged and extracted in (besides its type).
_VALUE_FORM = {"event_type": "string", "id": "string", "text": "string", "segment": "string",
               "timestamp": "string", "int": "bigint", "version": "bigint", "money": MONEY.simpleString()}


class _FieldValues:
    """The columns one field is judged and extracted with, computed once per record in ``_field_columns``
    (Spark would otherwise evaluate a shared expression again in every branch that uses it)."""

    def __init__(self, index: int, f: Field):
        self.field, self.prefix = f, f"_f{index}"
        # "BIGINT", "STRING", "DECIMAL(3,1)", "DOUBLE", "BOOLEAN"...; JSON null is "VOID", a missing
        # field SQL NULL.
        self.type = F.col(f"{self.prefix}_type")
        self.value = F.col(f"{self.prefix}_value")  # string, bigint or decimal, per _VALUE_FORM
        self.absent = self.type.isNull() | (self.type == "VOID")
        self.is_int = self.type.isin(*_INT_TYPES)

    def variant(self, v: Column) -> Column:
        return F.variant_get(v, f"$.{self.field.name}", "variant").alias(f"{self.prefix}_variant")

    def derived(self) -> list[Column]:
        own = F.col(f"{self.prefix}_variant")
        return [F.schema_of_variant(own).alias(f"{self.prefix}_type"),
                F.try_variant_get(own, "$", _VALUE_FORM[self.field.kind]).alias(f"{self.prefix}_value")]

    def kind_ok(self, kind: str) -> Column:
        if kind == "event_type":
            return self.type == "STRING"
        if kind == "id":
            return self.is_int | (self.type == "STRING")
        if kind in ("text", "segment", "timestamp"):
            return self.type == "STRING"
        if kind in ("int", "version"):
            return self.is_int
        if kind == "money":
            return self.is_int | self.type.startswith("DECIMAL") | (self.type == "DOUBLE")
        raise ValueError(f"unknown field kind {kind!r}")


def event_time(text: Column, naive_zone: str | None = None) -> Column:
    """A contract timestamp as TIMESTAMP (null when the text is not one). With ``naive_zone``, a date-time
    without offset is that zone's wall-clock time, as ``contract.timestamp_micros``: read as if it were UTC,
    then moved by the zone's offset at that time (``to_utc_timestamp``, whatever the session's zone)."""
    aware = F.when(text.rlike(java_pattern(TIMESTAMP)), F.try_to_timestamp(text))
    if naive_zone is None:
        return aware
    as_if_utc = F.try_to_timestamp(F.concat(text, F.lit("Z")))
    return F.coalesce(aware, F.when(text.rlike(java_pattern(NAIVE_TIMESTAMP)),
                                    F.to_utc_timestamp(as_if_utc, F.lit(naive_zone))))


def _is_one_of(judged_as: Column, types: tuple[str, ...]) -> Column:
    """Whether the record's type is one of ``types``: a literal when they are all of them or none, so that
    a field of every type costs no test."""
    if set(types) >= set(EVENT_TYPES):
        return F.lit(True)
    return judged_as.isin(*types) if types else F.lit(False)


def _only_for(judged_as: Column, types: tuple[str, ...], column: Column) -> Column:
    """``column`` for a record of one of ``types``, null for the others."""
    return column if set(types) >= set(EVENT_TYPES) else F.when(_is_one_of(judged_as, types), column)


def _value_reason(f: Field, x: _FieldValues, required: Column, limits: ContractLimits, event_us: Column) -> Column:
    """Why a value of the right kind does not fit its column (null if it does), as ``contract._value_reason``;
    ``required``: whether the record's type requires the field."""
    if f.kind == "event_type":
        return F.when(~x.value.isin(*EVENT_TYPES), F.lit("unknown_event_type"))
    if f.kind in ("id", "text"):
        longest = MAX_ID_CHARS if f.kind == "id" else MAX_TEXT_CHARS
        may_not_be_empty = F.lit(True) if f.kind == "id" else required
        bad = ((may_not_be_empty & (x.value == "")) | (F.length(x.value) > longest)
               | x.value.rlike(java_pattern(CONTROL_CHAR)))
        return F.when((x.type == "STRING") & bad, F.lit(f"bad_text:{f.name}"))
    if f.kind == "int":
        return F.when((x.value < 1) | (x.value > limits.max_quantite), F.lit("bad_quantity"))
    if f.kind == "version":
        return F.when((x.value < 1) | (x.value > CONTRACT_VERSION), F.lit("unsupported_version"))
    if f.kind == "money":
        scale = F.regexp_extract(x.type, r"^DECIMAL\([0-9]+,([0-9]+)\)$", 1)
        inexact = (x.type == "DOUBLE") | (x.type.startswith("DECIMAL") & (scale.try_cast("int") > 2)) | x.value.isNull()
        return F.when(inexact, F.lit(f"bad_amount:{f.name}")).when(x.value < 0, F.lit(f"negative_amount:{f.name}"))
    if f.kind == "segment":
        return F.when(~x.value.isin(*SEGMENT_ALIASES), F.lit("unknown_segment"))
    if f.kind == "timestamp":  # whether it is too far ahead or behind is judged with the batch's clock
        return F.when(event_us.isNull(), F.lit("bad_timestamp"))
    raise ValueError(f"unknown field kind {f.kind!r}")


# Where the event time's reason goes among the fields' reasons. The timestamp is required for every type, and
# a field before it that is not part of a record's type gives no reason (null, compacted away), so counting
# the reasons before this slot places it right whatever the type.
_TIMESTAMP_SLOT = next(i for i, f in enumerate(FIELDS) if f.kind == "timestamp")
if set(FIELDS[_TIMESTAMP_SLOT].required_for) != set(EVENT_TYPES):
    raise RuntimeError("TimeJudge needs the timestamp required for every event type")
# Columns of check_contract's result that only TimeJudge reads: the record-level reason, the fields'
# reasons, how many of those come before the event time's, and (added per batch) the batch's time.
_PENDING = ("_record_reason", "_field_reasons", "_time_at", "_now_us")


def with_contract_check(kafka_df: DataFrame, limits: ContractLimits, now: datetime | None = None) -> DataFrame:
    """Check each Kafka record against the sale contract and extract typed columns.

    Adds ``reasons`` (empty for a valid event: a sale, a return or a cancellation; the same list as
    ``contract.violations`` with the record's Kafka timestamp, or ``now`` if that is earlier, as reference),
    the typed columns (a sale's, then ``type_evenement``, ``retour_id`` and ``motif``; null where a field is
    not part of the record's type), Kafka lineage, ``raw_value`` (the bytes as received), ``raw_text`` and
    ``ingestion_ts`` (``now``). ``now`` is an aware datetime, by default the time this is called. The Bronze
    stream runs the two halves apart: ``check_contract`` in the streaming plan, ``TimeJudge`` in each batch
    with the batch's time.
    """
    now = now or datetime.now(timezone.utc)
    checked = check_contract(kafka_df, limits)
    return TimeJudge(limits, checked.columns)(checked, int(now.timestamp() * 1_000_000))


def check_contract(kafka_df: DataFrame, limits: ContractLimits) -> DataFrame:
    """Everything of the contract check that needs no clock: the typed columns, the record-level reason and
    each field's reason, except whether the event time is too far ahead of or behind the batch's time.

    No clock, so that the code Spark compiles for this, the costly part, is the same in every batch of a
    stream: the batch's time as a literal made every batch compile it anew (see
    ``lakehouse.platform.codegen``; ``TimeJudge`` keeps the time out of the compiled code).

    Built in stages (parse and shape; each field's sub-value; its type and value; the event time; the
    verdict), each stage's columns computed once per record and used by the next: one expression
    holding them all made Spark evaluate the shared parts again in every branch, several times slower.
    """
    value = F.col("value")
    size = F.coalesce(F.length(value), F.lit(0))
    utf8 = F.is_valid_utf8(value)
    key_text = F.when(F.is_valid_utf8(F.col("key")), F.col("key").cast("string"))
    df = kafka_df.select(
        value.alias("raw_value"),
        key_text.alias("kafka_key"), F.col("key").alias("kafka_key_bytes"), F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.when((size > 0) & (size <= limits.max_event_bytes) & utf8, value.cast("string")).alias("raw_text"),
        size.alias("_size"), utf8.alias("_utf8"),
    )
    df = df.select("*", F.try_parse_json("raw_text").alias("_v"), _shape(F.col("raw_text")).alias("_shape"))
    v = F.col("_v")
    fields = {f.name: _FieldValues(i, f) for i, f in enumerate(FIELDS)}
    df = df.select("*", *[x.variant(v) for x in fields.values()])
    df = df.select(*[c for c in df.columns if not c.endswith("_variant")],
                   *[c for x in fields.values() for c in x.derived()])
    # The type the record is judged as, as contract.event_type_of: a sale unless it names another one.
    kind_of_event = fields["type_evenement"]
    judged_as = F.when((kind_of_event.type == "STRING") & kind_of_event.value.isin(*EVENT_TYPES),
                       kind_of_event.value).otherwise(F.lit(DEFAULT_EVENT_TYPE))
    df = df.select("*", event_time(fields["timestamp"].value, limits.naive_zone).alias("_event_ts"),
                   judged_as.alias("_judged_as"))
    event_us = F.unix_micros("_event_ts")
    judged_as = F.col("_judged_as")
    field_checks = []
    for f in FIELDS:
        x = fields[f.name]
        required = _is_one_of(judged_as, f.required_for)
        check = (F.when(x.absent, F.when(required, F.lit(f"missing_field:{f.name}")))
                 .when(~x.kind_ok(f.kind), F.lit(f"wrong_type:{f.name}"))
                 .otherwise(_value_reason(f, x, required, limits, event_us)))
        field_checks.append(_only_for(judged_as, f.types, check))  # ignored when not part of the type
    record_reason = _record_reason(F.col("_size"), F.col("_utf8"), F.col("raw_text"), v, F.col("_shape"),
                                   limits.max_event_bytes)
    segment_map = F.create_map(*[F.lit(x) for kv in SEGMENT_ALIASES.items() for x in kv])
    # Each field's value, null for a record whose type it is not part of.
    value_of = {f.name: _only_for(judged_as, f.types, fields[f.name].value) for f in FIELDS}
    return df.select(
        # The reasons compacted (an array with a slot per field cost more), with where an event time too
        # far from the batch's clock would go among them.
        record_reason.alias("_record_reason"), F.array_compact(F.array(*field_checks)).alias("_field_reasons"),
        F.size(F.array_compact(F.array(*field_checks[:_TIMESTAMP_SLOT]))).alias("_time_at"),
        value_of["vente_id"].alias("vente_id"), value_of["client_id"].alias("client_id"),
        value_of["produit_id"].alias("produit_id"), F.col("_event_ts").alias("event_ts"),
        # Whether the event time was written without offset (and read in [streaming] naive_timezone).
        value_of["timestamp"].rlike(java_pattern(NAIVE_TIMESTAMP)).alias("timestamp_naif"),
        F.to_date("_event_ts").alias("jour"),
        value_of["quantite"].try_cast("int").alias("quantite"),
        value_of["montant"].alias("montant"), value_of["prix_unitaire"].alias("prix_unitaire"),
        value_of["client_nom"].alias("client_nom"), value_of["produit_nom"].alias("produit_nom"),
        value_of["categorie"].alias("categorie"), value_of["pays"].alias("pays"), value_of["ville"].alias("ville"),
        segment_map[value_of["segment"]].alias("segment"), value_of["canal"].alias("canal"),
        value_of["devise"].alias("devise"),
        value_of["contract_version"].try_cast("int").alias("contract_version"),
        # After the sale's columns, so that code selecting those by name or position is unaffected.
        F.coalesce(kind_of_event.value, F.lit(DEFAULT_EVENT_TYPE)).alias("type_evenement"),
        value_of["retour_id"].alias("retour_id"), value_of["motif"].alias("motif"),
        F.col("raw_text"), F.col("raw_value"), *LINEAGE,
    )


class TimeJudge:
    """``check_contract``'s result with its verdict: ``reasons`` first (event times too far ahead of or
    behind the reference judged here), the same columns, then ``ingestion_ts`` (the batch's time).

    The reference (contract.reference_time) is the record's Kafka timestamp kept within
    [now - max_event_age, now], since a producer sets it: no record can move the watermark far ahead or
    put a date near year 1 into Bronze. The columns are built once (building them is too slow to repeat
    in every batch); each batch only adds its time.
    """

    def __init__(self, limits: ContractLimits, columns: list[str]):
        now = F.col("_now_us")
        reference_us = F.least(F.greatest(F.unix_micros("kafka_timestamp"), now - F.lit(limits.max_event_age_us)),
                               now)
        event_us = F.unix_micros("event_ts")  # null unless the event time is valid
        too_far = (F.when(event_us > reference_us + F.lit(limits.max_future_skew_us), F.lit("future_event"))
                   .when(event_us < reference_us - F.lit(limits.max_event_age_us), F.lit("stale_event")))
        field_reasons, at = F.col("_field_reasons"), F.col("_time_at")
        with_time = F.concat(F.slice(field_reasons, F.lit(1), at), F.array(too_far),
                             F.slice(field_reasons, at + 1, F.lit(len(FIELDS))))
        reasons = (F.when(F.col("_record_reason").isNotNull(), F.array("_record_reason"))
                   .when(too_far.isNull(), field_reasons).otherwise(with_time))
        self.columns: list[Column | str] = [reasons.alias("reasons"), *[c for c in columns if c not in _PENDING],
                        F.timestamp_micros(now).alias("ingestion_ts")]

    def __call__(self, checked: DataFrame, now_us: int) -> DataFrame:
        """``checked`` judged with ``now_us`` (microseconds since the epoch) as the batch's time."""
        return checked.withColumn("_now_us", per_batch_long(now_us, F.col("kafka_offset"))).select(*self.columns)
