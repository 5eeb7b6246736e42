"""The read side of the lakehouse: its tables by name, the questions users ask of them, read-only SQL.

Questions are DataFrame → DataFrame transforms over the tables (tested on batch DataFrames); finding
the tables, time travel and SQL sit in ``Lakehouse`` at the edge. Silver's revenue is net: gross sales less
refunds (returns) and what cancellations voided; the questions show the gross, refunds and return rate
beside it, the corrections waiting for their sale (orphans) and the events Silver refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from lakehouse.ingest.contract import CONTROL_CHAR, MAX_ID_CHARS
from lakehouse.platform.delta import delta_table_exists
from lakehouse.platform.lake import LakePath
from lakehouse.platform.paths import Paths
from lakehouse.serve.sql_guard import QueryInputError, SqlResult, fetch, read_only_sql

BRONZE_JOB = "spark_streaming_delta.py (it creates the table with the first sales)"
SILVER_JOB = "streaming_silver.py"


@dataclass(frozen=True)
class TableInfo:
    name: str
    location: Callable[[Paths], LakePath]
    created_by: str
    optional: bool = False  # may be missing while the pipeline is healthy (no bad record yet)


TABLES = {t.name: t for t in (
    TableInfo("ventes", lambda p: p.bronze, BRONZE_JOB),
    TableInfo("ventes_quarantine", lambda p: p.quarantine,
              "spark_streaming_delta.py (it creates the table at the first bad record)", optional=True),
    TableInfo("ventes_duplicates", lambda p: p.duplicates,
              "spark_streaming_delta.py (it creates the table at the first duplicate)", optional=True),
    TableInfo("bronze_metrics", lambda p: p.bronze_metrics, BRONZE_JOB),
    TableInfo("clients", lambda p: p.silver("clients"), SILVER_JOB),
    TableInfo("pays", lambda p: p.silver("pays"), SILVER_JOB),
    TableInfo("segments", lambda p: p.silver("segments"), SILVER_JOB),
    TableInfo("ventes_jour", lambda p: p.silver("ventes_jour"), SILVER_JOB),
    # Returns and cancellations: Bronze keeps them apart from the sales; Silver applies them.
    TableInfo("corrections", lambda p: p.corrections,
              "spark_streaming_delta.py (at the first return or cancellation) or streaming_silver.py", optional=True),
    TableInfo("produits", lambda p: p.silver("produits"), SILVER_JOB),
    # Silver's sales in their current state (Bronze's sales table already goes by "ventes").
    TableInfo("silver_ventes", lambda p: p.silver("ventes"), SILVER_JOB),
    TableInfo("corrections_en_attente", lambda p: p.silver("corrections_en_attente"), SILVER_JOB),
    TableInfo("rejets", lambda p: p.silver("rejets"), SILVER_JOB),
)}


class MissingTableError(LookupError):
    """A table the question needs does not exist (yet)."""

    def __init__(self, info: TableInfo, path: LakePath):
        super().__init__(f"Table {info.name} not found at {path}: run {info.created_by} first.")
        self.table = info.name


# --- questions: pure transforms ----------------------------------------------------------------------

def recent_sales(ventes_df: DataFrame, limit: int = 10) -> DataFrame:
    """The latest sales by event time (newest first)."""
    return (ventes_df.orderBy(F.desc("event_ts"), F.desc("vente_id"))
            .select("event_ts", "vente_id", "client_nom", "pays", "segment", "produit_nom", "quantite",
                    "montant", "is_late").limit(limit))


CLIENT_COLUMNS = ["client_id", "client_nom", "pays", "segment", "nb_achats", "total_depense", "panier_moyen",
                  "segment_depense", "est_client_fidele", "dernier_achat", "total_rembourse", "nb_retours",
                  "nb_annulations"]
# Beside a table of totals' net revenue: the gross, what returns refunded and cancellations voided, how many
# of each, and the return rate (units returned per unit sold).
CORRECTED_COLUMNS = ["chiffre_affaires_brut", "remboursements", "montant_annule", "nb_retours", "nb_annulations",
                     "taux_retour"]
PRODUCT_COLUMNS = ["produit_nom", "produit_id", "categorie", "nb_ventes", "chiffre_affaires", "quantite_vendue",
                   "quantite_retournee", *CORRECTED_COLUMNS]
# A correction (or an event Silver refused) as the questions show it.
EVENT_COLUMNS = ["recu_le", "type_evenement", "retour_id", "vente_id", "client_id", "event_ts", "quantite", "montant",
                 "motif"]


def top_clients(clients_df: DataFrame, limit: int = 10) -> DataFrame:
    """Clients by lifetime revenue, highest first."""
    return clients_df.orderBy(F.desc("total_depense"), "client_id").select(*CLIENT_COLUMNS).limit(limit)


def filter_client(clients_df: DataFrame, text: str) -> DataFrame:
    """Clients whose id is ``text`` (any case) or whose name contains it (any case)."""
    text = text.strip()
    if not text:
        raise QueryInputError("Type a client id (e.g. C000042) or part of a name.")
    needle = F.lit(text.lower())
    return (clients_df.filter((F.lower("client_id") == needle) | F.lower("client_nom").contains(needle))
            .orderBy(F.desc("total_depense"), "client_id"))


def countries(pays_df: DataFrame) -> DataFrame:
    """Net revenue by country, highest first, with refunds, cancellations and the return rate."""
    return (pays_df.orderBy(F.desc("chiffre_affaires"), "pays")
            .select("pays", "nb_ventes", "chiffre_affaires", "panier_moyen", "quantite_vendue", "nb_clients",
                    *CORRECTED_COLUMNS))


def segments(segments_df: DataFrame) -> DataFrame:
    """Net revenue by segment (B2B, B2C), with refunds, cancellations and the return rate."""
    return (segments_df.orderBy("segment")
            .select("segment", "nb_ventes", "chiffre_affaires", "panier_moyen", "nb_clients", "nb_pays",
                    "quantite_vendue", *CORRECTED_COLUMNS))


def products(produits_df: DataFrame, limit: int | None = None) -> DataFrame:
    """Net revenue by product, highest first (the first ``limit`` if given), with units sold and returned,
    refunds and the return rate."""
    df = produits_df.orderBy(F.desc("chiffre_affaires"), "produit_id", "categorie").select(*PRODUCT_COLUMNS)
    return df if limit is None else df.limit(limit)


def daily_revenue(ventes_jour_df: DataFrame, days: int | None = None) -> DataFrame:
    """Net revenue per day (refunds and cancellations count on the day they were made), oldest first; only
    the last ``days`` days if given."""
    df = ventes_jour_df.orderBy(F.desc("jour"))
    if days is not None:
        df = df.limit(days)
    return df.orderBy("jour").select("jour", "nb_ventes", "chiffre_affaires", "nb_clients", "quantite_vendue",
                                     "chiffre_affaires_brut", "remboursements", "montant_annule", "nb_retours",
                                     "nb_annulations")


def waiting_corrections(waiting_df: DataFrame, now: datetime, orphan_timeout_s: float,
                        only_orphans: bool = False) -> DataFrame:
    """The corrections waiting for their sale, oldest first, with ``attente_s`` (seconds since Bronze received
    each, at ``now``) and ``orphelin``: waiting for longer than ``orphan_timeout_s``. ``now`` naive: local
    time."""
    moment = now.astimezone(timezone.utc)
    cutoff = moment - timedelta(seconds=orphan_timeout_s)
    df = waiting_df.select(
        *EVENT_COLUMNS,
        ((F.unix_micros(F.lit(moment)) - F.unix_micros("recu_le")) / F.lit(1_000_000)).alias("attente_s"),
        (F.col("recu_le") < F.lit(cutoff)).alias("orphelin"), "kafka_partition", "kafka_offset")
    if only_orphans:
        df = df.filter("orphelin")
    return df.orderBy("recu_le", "kafka_partition", "kafka_offset")


def per_reason(df: DataFrame, reason: str, received: str, counted: str) -> DataFrame:
    """Rows per ``reason``, most frequent first (the count named ``counted``), with the first and last time in
    ``received``."""
    return (df.groupBy(reason)
            .agg(F.count(F.lit(1)).alias(counted), F.min(received).alias("first_seen"),
                 F.max(received).alias("last_seen"))
            .orderBy(F.desc(counted), reason))


def rejections_summary(rejets_df: DataFrame) -> DataFrame:
    """Events Silver refused per reason (``raison``), most frequent first, with the first and last received."""
    return per_reason(rejets_df, "raison", "recu_le", "events")


def latest_rejections(rejets_df: DataFrame, limit: int = 20) -> DataFrame:
    """The events Silver refused last (by when Bronze received them), newest first, with why."""
    return (rejets_df.orderBy(F.desc("recu_le"), "kafka_partition", F.desc("kafka_offset"))
            .select("raison", *EVENT_COLUMNS, "kafka_partition", "kafka_offset").limit(limit))


# --- one sale with its corrections --------------------------------------------------------------------

_CONTROL = re.compile(CONTROL_CHAR)


def sale_id(text: str) -> str:
    """``text`` as a sale id, checked as the contract checks a vente_id: 1 to ``MAX_ID_CHARS`` characters, no
    control character. ``QueryInputError`` (one line, quoting at most the first characters) otherwise."""
    if not text:
        raise QueryInputError("Type a sale id (vente_id), e.g. V000042.")
    quoted = repr(text[:MAX_ID_CHARS]) + ("…" if len(text) > MAX_ID_CHARS else "")
    if len(text) > MAX_ID_CHARS:
        raise QueryInputError(f"Not a sale id: {quoted} has {len(text):,} characters; a sale id has at most "
                              f"{MAX_ID_CHARS}.")
    if _CONTROL.search(text):
        raise QueryInputError(f"Not a sale id: {quoted} holds a control character; a sale id holds none.")
    return text


APPLIED, WAITING, ORPHAN, REFUSED, NOT_YET = ("applied", "waiting", "waiting (orphan)", "refused",
                                              "not counted by Silver yet")


def _position(event: Mapping[str, Any]) -> tuple:
    return event["retour_id"], event["kafka_partition"], event["kafka_offset"]


def _instant(moment: datetime) -> datetime:
    """An aware moment; a naive one is this machine's local time (as PySpark's collect() gives timestamps)."""
    return moment if moment.tzinfo is not None else moment.astimezone(timezone.utc)


def correction_outcomes(sale: Mapping[str, Any] | None, corrections: Sequence[Mapping[str, Any]],
                        waiting: Sequence[Mapping[str, Any]], refused: Sequence[Mapping[str, Any]], now: datetime,
                        orphan_timeout_s: float) -> list[dict]:
    """What became of each of a sale's corrections in Bronze (``corrections``, rows of Bronze's corrections
    table): refused (with Silver's ``raison``), waiting for the sale (an orphan after ``orphan_timeout_s``),
    applied (its retour_id among the sale's ``corrections`` in silver/ventes), or not counted yet (Silver has
    not read it). ``waiting`` and ``refused``: the rows of corrections_en_attente and rejets naming the sale.
    In the order Bronze received them."""
    why = {_position(r): r["raison"] for r in refused}
    waits = {_position(w) for w in waiting}
    applied = set((sale or {}).get("corrections") or ())
    cutoff = _instant(now) - timedelta(seconds=orphan_timeout_s)
    rows = []
    for c in sorted(corrections, key=lambda c: (_instant(c["ingestion_ts"]), c["kafka_partition"], c["kafka_offset"])):
        key = _position(c)
        if key in why:
            outcome, raison = REFUSED, why[key]
        elif key in waits:
            outcome, raison = ORPHAN if _instant(c["ingestion_ts"]) < cutoff else WAITING, None
        elif c["retour_id"] in applied:
            outcome, raison = APPLIED, None
        else:
            outcome, raison = NOT_YET, None
        rows.append({"recu_le": c["ingestion_ts"], "type_evenement": c["type_evenement"], "retour_id": c["retour_id"],
                     "event_ts": c["event_ts"], "quantite": c["quantite"], "montant": c["montant"],
                     "motif": c["motif"], "outcome": outcome, "raison": raison,
                     "kafka_partition": c["kafka_partition"], "kafka_offset": c["kafka_offset"]})
    return rows


SALE_FIELDS = ["vente_id", "statut", "client_id", "produit_nom", "produit_id", "categorie", "pays", "segment",
               "event_ts", "quantite", "montant", "quantite_retournee", "montant_rembourse", "quantite_annulee",
               "montant_annule", "quantite_nette", "montant_net", "corrections", "derniere_correction"]


@dataclass
class SaleStory:
    """One sale as Silver holds it (None: not in Silver), what became of each correction naming it, and the
    other events Silver refused under its id (a sale re-using it)."""

    vente_id: str
    sale: dict | None
    corrections: list[dict] = field(default_factory=list)
    other_refused: list[dict] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.sale is not None or bool(self.corrections) or bool(self.other_refused)


def quarantine_summary(quarantine_df: DataFrame) -> DataFrame:
    """Quarantined records per reason, most frequent first, with the first and last arrival."""
    return per_reason(quarantine_df, "reason", "ingestion_ts", "records")


def quarantine_samples(quarantine_df: DataFrame, per_reason: int = 2) -> DataFrame:
    """The latest ``per_reason`` raw records of each reason, with every reason they broke."""
    latest = Window.partitionBy("reason").orderBy(F.desc("ingestion_ts"), F.desc("kafka_offset"))
    return (quarantine_df.withColumn("n", F.row_number().over(latest)).filter(F.col("n") <= per_reason)
            .select("reason", F.array_join("reasons", ", ").alias("reasons"), "kafka_partition", "kafka_offset",
                    # Not valid UTF-8 (raw_text is null): the first bytes in hex rather than mojibake.
                    F.coalesce(F.substring("raw_text", 1, 120),
                               F.concat(F.lit("hex "), F.hex(F.substring("raw_value", 1, 48))))
                    .alias("raw_record"),
                    # conflicting_id: where the kept sale with the same vente_id is.
                    _kept_at(quarantine_df).alias("kept_sale"))
            .orderBy("reason", F.desc("kafka_offset")))


def _column_or_null(df: DataFrame, name: str, type_name: str) -> Column:
    """A column that tables written before it existed lack."""
    return F.col(name) if name in df.columns else F.lit(None).cast(type_name).alias(name)


def _kept_at(df: DataFrame) -> Column:
    """Where the kept sale a duplicate or conflicting record met is, as text (null when none)."""
    if "kept_offset" not in df.columns:
        return F.lit(None).cast("string")
    if_kept = F.col("kept_offset").isNotNull()
    return F.when(if_kept, F.concat(F.lit("partition "), F.col("kept_partition").cast("string"),
                                    F.lit(" offset "), F.col("kept_offset").cast("string")))


def duplicates_summary(duplicates_df: DataFrame) -> DataFrame:
    """Records that repeated a kept sale: how many, for how many sales, first and last arrival."""
    return duplicates_df.agg(F.count(F.lit(1)).alias("records"), F.count_distinct("vente_id").alias("sales"),
                             F.min("ingestion_ts").alias("first_seen"), F.max("ingestion_ts").alias("last_seen"))


def duplicates_samples(duplicates_df: DataFrame, limit: int = 5) -> DataFrame:
    """The latest duplicates with the position of the sale each repeats."""
    return (duplicates_df.orderBy(F.desc("ingestion_ts"), F.desc("kafka_offset"))
            .select("vente_id", "kafka_partition", "kafka_offset", _kept_at(duplicates_df).alias("kept_sale"))
            .limit(limit))


def last_batches(metrics_df: DataFrame, limit: int = 10) -> DataFrame:
    """The Bronze stream's last micro-batches, newest first."""
    return (metrics_df.orderBy(F.desc("committed_at"), F.desc("batch_id"))
            .select("batch_id", "committed_at", "input_rows", "bronze_rows", "quarantined_rows",
                    "duplicate_rows", _column_or_null(metrics_df, "conflicting_rows", "long"), "late_rows",
                    "duration_ms", "latency_p50_ms", "latency_max_ms", "kafka_lag").limit(limit))


# --- the edge: the tables on disk ---------------------------------------------------------------------

REQUIRED_TABLES = [n for n, t in TABLES.items() if not t.optional]
# A commit's rows and files written, by the name each engine gives them: Spark's Delta (a write, a MERGE, an
# OPTIMIZE or a DELETE), then delta-rs (a MERGE, a write).
ROWS_WRITTEN = ("numOutputRows", "num_output_rows", "num_added_rows")
FILES_WRITTEN = ("numFiles", "numTargetFilesAdded", "numAddedFiles", "num_target_files_added", "num_added_files")


def missing_tables(paths: Paths, names: list[str] | None = None) -> list[MissingTableError]:
    """One error per table among ``names`` (default: the required ones) that does not exist; no Spark
    needed."""
    infos = [TABLES[n] for n in (names or REQUIRED_TABLES)]
    return [MissingTableError(t, t.location(paths)) for t in infos if not delta_table_exists(t.location(paths))]


def parse_as_of(text: str) -> tuple[str, str]:
    """``"3"`` → ("versionAsOf", "3"); ``"2026-11-26 10:00"`` → ("timestampAsOf", "2026-11-26 10:00:00")."""
    text = text.strip()
    if text.isdigit():
        return "versionAsOf", text
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return "timestampAsOf", datetime.strptime(text, fmt).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    raise QueryInputError(f"Not a version or a timestamp: {text!r}. Type a version number (e.g. 3) or a "
                          "timestamp like 2026-11-26 10:00:00 (session time zone).")


class Lakehouse:
    """The lakehouse's tables, read with one SparkSession."""

    def __init__(self, spark: SparkSession, paths: Paths):
        self.spark, self.paths = spark, paths
        self.views: set[str] = set()

    def info(self, name: str) -> TableInfo:
        try:
            return TABLES[name.strip()]
        except KeyError as e:
            raise QueryInputError(f"Unknown table {name.strip()!r}: choose one of {', '.join(TABLES)}.") from e

    def exists(self, name: str) -> bool:
        return delta_table_exists(TABLES[name].location(self.paths))

    def location(self, name: str) -> LakePath:
        """Where a table lives; ``MissingTableError`` (with the command that creates it) if it does not
        exist yet."""
        info = self.info(name)
        path = info.location(self.paths)
        if not delta_table_exists(path):
            raise MissingTableError(info, path)
        return path

    def table(self, name: str, **options: str) -> DataFrame:
        """A table by name (``options``: Delta read options such as versionAsOf)."""
        return self.spark.read.format("delta").options(**options).load(str(self.location(name)))

    def quarantine(self) -> DataFrame | None:
        """The quarantine table, or None while no bad record has arrived."""
        return self.table("ventes_quarantine") if self.exists("ventes_quarantine") else None

    def duplicates(self) -> DataFrame | None:
        """The duplicates table, or None while no record has repeated a kept sale."""
        return self.table("ventes_duplicates") if self.exists("ventes_duplicates") else None

    def rows_naming(self, name: str, vente_id: str) -> list[dict]:
        """The rows of a table whose vente_id is ``vente_id`` (compared as a value, never parsed), as dicts;
        none when the table does not exist (an optional one)."""
        if not self.exists(name):
            return []
        return [r.asDict(recursive=True) for r in self.table(name).filter(F.col("vente_id") == F.lit(vente_id))
                .collect()]

    def sale_story(self, vente_id: str, now: datetime, orphan_timeout_s: float) -> SaleStory:
        """One sale (``sale_id`` checks the id first) with its corrections and their outcome (``now`` naive:
        local time)."""
        vente_id = sale_id(vente_id)
        self.location("silver_ventes")  # Silver missing: said, with the command that creates it
        sales = self.rows_naming("silver_ventes", vente_id)
        refused = self.rows_naming("rejets", vente_id)
        corrections = self.rows_naming("corrections", vente_id)
        outcomes = correction_outcomes(sales[0] if sales else None, corrections,
                                       self.rows_naming("corrections_en_attente", vente_id), refused, now,
                                       orphan_timeout_s)
        bronze = {_position(c) for c in corrections}
        others = [r for r in refused if _position(r) not in bronze]
        return SaleStory(vente_id, sales[0] if sales else None, outcomes, others)

    def as_of(self, name: str, when: str) -> DataFrame:
        """A table as of a version number or a timestamp."""
        option, value = parse_as_of(when)
        return self.table(name, **{option: value})

    def history(self, name: str, limit: int = 20) -> DataFrame:
        """The table's last commits: version, time, operation, rows and files written, whichever engine made
        them (Spark's Delta names its metrics in camel case, delta-rs, which writes Silver's small batches, in
        snake case)."""
        def metric(*keys: str) -> Column:
            return F.coalesce(*(F.col("operationMetrics").getItem(key) for key in keys))
        return (DeltaTable.forPath(self.spark, str(self.location(name))).history(limit)
                .select("version", "timestamp", "operation",
                        metric(*ROWS_WRITTEN).alias("rows_written"), metric(*FILES_WRITTEN).alias("files_written")))

    def register_views(self) -> list[str]:
        """Register every existing table as a temporary view under its name; returns the names."""
        names = [n for n in TABLES if self.exists(n)]
        for name in names:
            self.table(name).createOrReplaceTempView(name)
        self.views = set(names)
        return names

    def sql(self, query: str) -> DataFrame:
        """A statement that only reads the registered views (``QueryInputError`` otherwise), not run yet."""
        return read_only_sql(self.spark, query, self.views)

    def run_sql(self, query: str, max_rows: int, timeout_s: float) -> SqlResult:
        """A read-only statement's first ``max_rows`` rows, cancelled after ``timeout_s`` seconds."""
        return fetch(self.spark, self.sql(query), max_rows, timeout_s)
