"""What the web dashboard reads, through delta-rs (``deltalake``): no JVM, so the page opens in about a second.

Bronze is never scanned: its row count comes from the Delta log (each file's ``numRecords``), the latest
sales from its newest files only. Silver's tables of figures are read whole (one row per client, country,
segment, day, product), with the corrections waiting for their sale and the newest events Silver refused,
as of the latest run or of an earlier one (time travel: each Silver commit is tagged with its run's batch).
The figures are the Silver tables' own (net revenue: gross sales less refunds and cancellations); nothing
here computes them another way.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pa_fs
from deltalake import DeltaTable

from lakehouse.platform.config import SCHEMA, parse_duration
from lakehouse.platform.lake import LakePath, ObjectPath
from lakehouse.platform.paths import Paths
from lakehouse.serve import headline as hl
from lakehouse.serve.safe_text import for_web
from lakehouse.silver.tables import FIGURE_TABLES, SILVER_TABLES, tagged_batch

log = logging.getLogger(__name__)

TOP_CLIENTS = 10
TOP_PRODUCTS = 50
LATEST_SALES = 20
LATEST_REJECTIONS = 20  # events Silver refused, the newest
QUARANTINE_SAMPLES = 10
RUNS_LISTED = 100  # Silver runs offered for time travel (the newest)
SERIES_WINDOW = timedelta(minutes=30)  # stream health's time series
RATE_WINDOW = timedelta(seconds=60)  # events/s in: the batches committed in the last minute
HEX_BYTES = 48  # bytes of a quarantined record shown as hex


class TableProblem(Exception):
    """A table the page needs is missing or cannot be read; ``str()`` names its path."""

    def __init__(self, path: LakePath, what: str):
        super().__init__(f"{what}: {path}")
        self.path = path


class TableMissing(TableProblem):
    def __init__(self, path: LakePath):
        super().__init__(path, "table not found")


class TableUnreadable(TableProblem):
    def __init__(self, path: LakePath, detail: str):
        super().__init__(path, f"table cannot be read ({detail})")


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def open_table(path: LakePath, version: int | None = None) -> DeltaTable:
    """The Delta table at ``path`` (as of ``version``), or ``TableMissing`` / ``TableUnreadable``."""
    try:
        found = (path / "_delta_log").is_dir()
    except OSError as e:  # object storage that does not answer, or refuses the key
        log.warning("Cannot look for %s", path, exc_info=True)
        raise TableUnreadable(path, first_line(e)) from e
    if not found:
        raise TableMissing(path)
    try:
        options = path.settings.delta_rs_options() if isinstance(path, ObjectPath) else None
        return DeltaTable(str(path), version=version, storage_options=options)
    except Exception as e:  # delta-rs raises several types (protocol, log, I/O) for one situation
        log.warning("Cannot open %s (version %s)", path, version, exc_info=True)
        raise TableUnreadable(path, first_line(e)) from e


def _read(path: LakePath, table: DeltaTable, columns: list[str] | None, files: list[str] | None = None) -> pa.Table:
    """``columns`` of the table, or only of its data ``files`` (paths as in the Delta log; partition columns
    are not in the files, so not readable this way)."""
    try:
        if files is not None and _plain(table):
            return _read_files(path, table, columns, files)
        dataset = table.to_pyarrow_dataset()
        if files is None:
            return dataset.to_table(columns=columns)
        wanted = set(files)
        parts = [f.to_table(columns=columns, schema=dataset.schema) for f in dataset.get_fragments()
                 if f.path in wanted]
        return pa.concat_tables(parts) if parts else dataset.schema.empty_table().select(columns)
    except Exception as e:
        log.warning("Cannot read %s", path, exc_info=True)
        raise TableUnreadable(path, first_line(e)) from e


def _plain(table: DeltaTable) -> bool:
    """A table whose files can be read as they are: no deletion vectors, no column mapping."""
    features = table.protocol().reader_features or []
    mapping = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    return "deletionVectors" not in features and mapping == "none"


def _read_files(path: LakePath, table: DeltaTable, columns: list[str] | None, files: list[str]) -> pa.Table:
    """Read a few data files directly. (delta-rs's pyarrow dataset wraps every file of the table first:
    about a second for 800 files, where the few files wanted take milliseconds.)"""
    if isinstance(path, ObjectPath):
        filesystem, root = path.fs, path.key
    else:
        filesystem, root = pa_fs.FileSystem.from_uri(table.table_uri)
    partition_columns = set(table.metadata().partition_columns)
    schema = pa.schema([f for f in pa.schema(table.schema().to_arrow()) if f.name not in partition_columns])
    dataset = ds.dataset([f"{root.rstrip('/')}/{unquote(f)}" for f in files], schema=schema, format="parquet",
                         filesystem=filesystem)
    return dataset.to_table(columns=columns)


def _files(table: DeltaTable) -> pa.Table:
    """One row per data file: path, modification_time, num_records and the min/max statistics."""
    return pa.table(table.get_add_actions(flatten=True))


def row_count(path: LakePath) -> int | None:
    """Rows in a table, from its log's file statistics (no data file read); None when a file has none."""
    files = _files(open_table(path))
    if files.num_rows == 0:
        return 0
    if files["num_records"].null_count:
        return None
    return int(pc.sum(files["num_records"]).as_py())


def newest_rows(path: LakePath, columns: list[str], order: list[tuple[str, str]], limit: int) -> pa.Table:
    """The ``limit`` newest rows by ``order``, read from the most recently written files only (enough of
    them to hold ``limit`` rows)."""
    return _newest_rows(path, open_table(path), columns, order, limit)


def _newest_rows(path: LakePath, table: DeltaTable, columns: list[str] | None, order: list[tuple[str, str]],
                 limit: int) -> pa.Table:
    """``newest_rows`` of the table as loaded (any version)."""
    files = _files(table)
    if files.num_rows == 0 or limit <= 0:
        return _read(path, table, columns, [])
    files = files.sort_by([("modification_time", "descending")])
    counts = files["num_records"].to_pylist()
    chosen, rows = [], 0
    for name, count in zip(files["path"].to_pylist(), counts):
        chosen.append(name)
        rows += count or limit  # a file without statistics may hold enough on its own
        if rows >= limit:
            break
    return _read(path, table, columns, chosen).sort_by(order).slice(0, limit)


# --- Silver -------------------------------------------------------------------------------------------

# Silver's tables that only the batches that change them write (the figure tables are written by every batch).
SIDE_TABLES = tuple(t for t in SILVER_TABLES if t not in FIGURE_TABLES)
# Commits of a side table looked at to find its version of each listed run: a side table commits at most once
# per batch, plus its upkeep's commits.
SIDE_HISTORY = 2 * RUNS_LISTED
# A correction waiting for its sale for longer than this is an orphan: [analytics] orphan_timeout's default,
# for readers given no configuration (the Silver job's terminal dashboard).
DEFAULT_ORPHAN_TIMEOUT_S = parse_duration(SCHEMA["analytics"]["orphan_timeout"].default).seconds
EVENT_ORDER = [("recu_le", "descending"), ("kafka_partition", "ascending"), ("kafka_offset", "descending")]


@dataclass(frozen=True)
class SilverRun:
    """One Silver run: its batch and, for each Silver table, the version it committed (or, for a table the
    batch did not change, the version it read)."""

    batch_id: int
    committed: datetime
    versions: dict[str, int]


def _commits(table: DeltaTable, limit: int) -> list[tuple[int, int, int | None]]:
    """(version, commit time in ms, tagged batch or None) of the table's newest ``limit`` commits, newest
    first."""
    return [(c["version"], c["timestamp"], tagged_batch(c.get("userMetadata"))) for c in table.history(limit)]


def side_version(commits: list[tuple[int, int, int | None]], batch_id: int, committed_ms: int) -> int | None:
    """The version of a side table that run ``batch_id`` (committed at ``committed_ms``) saw: the newest commit
    tagged with that batch or an earlier one, or an untagged one made by then (the empty table Silver creates,
    a compaction); None when ``commits`` (newest first) do not reach back that far."""
    for version, ms, batch in commits:
        if (batch is not None and batch <= batch_id) or (batch is None and ms <= committed_ms):
            return version
    return None


def _version_at(path: LakePath, moment: datetime) -> int | None:
    """The table's version at ``moment`` (its newest commit made by then), or None when its log no longer
    goes back that far."""
    table = open_table(path)
    try:
        table.load_as_version(moment)
    except Exception:  # delta-rs: no version that old is left (log cleaned up)
        log.info("No version of %s at %s", path, moment, exc_info=True)
        return None
    return table.version()


def silver_runs(paths: Paths, limit: int = RUNS_LISTED) -> list[SilverRun]:
    """The newest Silver runs, newest first: the batches that every figure table (written by every batch)
    still has a tagged commit of, with the version of every Silver table as of each."""
    found: dict[int, dict[str, tuple[int, int]]] = {}
    for name in FIGURE_TABLES:
        for version, ms, batch in _commits(open_table(paths.silver(name)), limit):
            if batch is not None:
                found.setdefault(batch, {}).setdefault(name, (version, ms))
    side = {name: _commits(open_table(paths.silver(name)), SIDE_HISTORY) for name in SIDE_TABLES}
    runs = []
    for batch, tables in found.items():
        if len(tables) != len(FIGURE_TABLES):
            continue
        committed_ms = max(ms for _, ms in tables.values())
        committed = datetime.fromtimestamp(committed_ms / 1000, timezone.utc)
        versions = {name: version for name, (version, _) in tables.items()}
        complete = True
        for name in SIDE_TABLES:
            seen = side_version(side[name], batch, committed_ms)
            if seen is None:
                seen = _version_at(paths.silver(name), committed)
            if seen is None:  # a side table whose history no longer reaches that run: the run is not offered
                complete = False
            else:
                versions[name] = seen
        if complete:
            runs.append(SilverRun(batch, committed, versions))
    return sorted(runs, key=lambda r: r.batch_id, reverse=True)


@dataclass(frozen=True)
class Silver:
    """The Silver tables as Arrow tables, and the version of each that was read.

    ``ventes`` (one row per sale) is not read: the page shows figures, and one sale is the menu's question.
    ``rejets`` holds the newest refused events only, ``rejets_by_raison`` counts all of them."""

    clients: pa.Table
    pays: pa.Table
    segments: pa.Table
    ventes_jour: pa.Table
    produits: pa.Table
    corrections_en_attente: pa.Table
    rejets: pa.Table  # the newest first
    rejets_by_raison: dict[str, int]
    versions: dict[str, int]
    committed: datetime | None  # when the newest of the figure tables was written

    @property
    def rejected(self) -> int:
        return sum(self.rejets_by_raison.values())


def read_silver(paths: Paths, run: SilverRun | None = None, rejections: int = LATEST_REJECTIONS) -> Silver:
    """The Silver tables, latest or as of ``run``; of ``rejets``, the newest ``rejections`` events and the
    count of each reason."""
    tables, versions, committed = {}, {}, []
    for name in SILVER_TABLES:
        path = paths.silver(name)
        table = open_table(path, None if run is None else run.versions[name])
        versions[name] = table.version()
        if run is None and name in FIGURE_TABLES:  # the table's newest commit (whatever version is loaded)
            committed += [c["timestamp"] for c in table.history(1)]
        if name == "rejets":
            reasons = _read(path, table, ["raison"])["raison"]
            counts = pc.value_counts(reasons).to_pylist() if len(reasons) else []
            tables["rejets_by_raison"] = {c["values"]: c["counts"] for c in counts}
            tables["rejets"] = _newest_rows(path, table, None, EVENT_ORDER, rejections)
        elif name != "ventes":
            tables[name] = _read(path, table, None)
    when = run.committed if run is not None else \
        datetime.fromtimestamp(max(committed) / 1000, timezone.utc) if committed else None
    return Silver(**tables, versions=versions, committed=when)


def headline(silver: Silver, now: datetime | None = None,
             orphan_timeout_s: float = DEFAULT_ORPHAN_TIMEOUT_S) -> hl.Headline:
    """The headline (``serve.headline``) of the tables read: sales, money and returns from the countries
    table, clients, loyalty and tiers from the clients table (the same figures as the terminal dashboard and
    the report); corrections waiting, orphans as of ``now`` (default: this moment) and events refused."""
    clients = silver.clients.select(["est_client_fidele", "segment_depense"]).to_pylist()
    return hl.headline(silver.pays.to_pylist(), hl.ClientCounts.of(clients),
                       waiting=silver.corrections_en_attente.num_rows,
                       orphans=len(orphans(silver, now or datetime.now(timezone.utc), orphan_timeout_s)),
                       rejected=silver.rejected)


def shown(rows: list[dict]) -> list[dict]:
    """Rows for the page: text from the data through ``safe_text.for_web`` (format characters visible)."""
    return [{k: for_web(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows]


def top_clients(silver: Silver, n: int = TOP_CLIENTS) -> list[dict]:
    """The ``n`` clients with the largest total_depense (net; ties by client_id), as the page shows them."""
    return shown(silver.clients.sort_by([("total_depense", "descending"), ("client_id", "ascending")])
                 .slice(0, n).to_pylist())


def top_products(silver: Silver, n: int = TOP_PRODUCTS) -> list[dict]:
    """The ``n`` products with the largest net revenue (ties by product id and category), as the page shows
    them."""
    return shown(silver.produits.sort_by([("chiffre_affaires", "descending"), ("produit_id", "ascending"),
                                          ("categorie", "ascending")]).slice(0, n).to_pylist())


def ordered(table: pa.Table, order: list[tuple[str, str]]) -> list[dict]:
    """The rows in ``order``, as the page shows them."""
    return shown(table.sort_by(order).to_pylist())


def orphans(silver: Silver, now: datetime, timeout_s: float) -> list[dict]:
    """The corrections waiting for their sale for longer than ``timeout_s`` at ``now`` (aware), oldest first,
    each with ``attente_s``: the seconds since Bronze received it. They keep waiting: Silver never drops one."""
    cutoff = now - timedelta(seconds=timeout_s)
    rows = [r for r in silver.corrections_en_attente.to_pylist() if r["recu_le"] is not None and r["recu_le"] < cutoff]
    rows.sort(key=lambda r: (r["recu_le"], r["kafka_partition"], r["kafka_offset"]))
    return shown([{**r, "attente_s": (now - r["recu_le"]).total_seconds()} for r in rows])


def latest_rejections(silver: Silver) -> list[dict]:
    """The newest events Silver refused (``rejets``), newest first, as the page shows them."""
    return shown(silver.rejets.to_pylist())


def rejections_by_reason(silver: Silver) -> list[dict]:
    """Events refused per reason (``raison``), most frequent first."""
    return sorted(({"raison": for_web(r or ""), "events": n} for r, n in silver.rejets_by_raison.items()),
                  key=lambda r: (-r["events"], r["raison"]))


# --- the stream ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamHealth:
    events_per_s: float | None  # batches committed in the last minute
    last_batch_at: datetime | None
    last_latency_ms: int | None
    kafka_lag: int | None
    bronze_rows: int | None  # None: a file without statistics (not counted by scanning)
    quarantined: int | None
    duplicates: int | None
    series: list[dict]  # per minute: minute, events, latency_p50_ms (median of the batches' p50)


METRICS_COLUMNS = ["committed_at", "input_rows", "latency_p50_ms", "kafka_lag"]


def _since(files: pa.Table, column: str, since: datetime) -> list[str]:
    """Files that may hold rows with ``column`` ≥ ``since`` (by their max statistic; no statistic: kept)."""
    highs = files[f"max.{column}"].to_pylist() if f"max.{column}" in files.column_names else [None] * files.num_rows
    return [path for path, high in zip(files["path"].to_pylist(), highs) if high is None or high >= since]


def _newest(files: pa.Table, column: str) -> datetime | None:
    """The largest value of ``column`` by the files' statistics (no data read)."""
    name = f"max.{column}"
    if files.num_rows == 0 or name not in files.column_names:
        return None
    return pc.max(files[name]).as_py()


def _count_or_zero(path: LakePath) -> int | None:
    try:
        return row_count(path)
    except TableMissing:
        return 0  # the stream creates these tables with their first row


def stream_health(paths: Paths, now: datetime) -> StreamHealth:
    """The stream's figures from the metrics table's recent files and the tables' logs."""
    metrics = open_table(paths.bronze_metrics)
    since = now - SERIES_WINDOW
    files = _files(metrics)
    rows = _read(paths.bronze_metrics, metrics, METRICS_COLUMNS, _since(files, "committed_at", since))
    rows = rows.filter(pc.greater_equal(rows["committed_at"], pa.scalar(since, pa.timestamp("us", "UTC"))))
    rows = rows.sort_by([("committed_at", "ascending")]).to_pylist()
    last = rows[-1] if rows else None
    recent = [r for r in rows if r["committed_at"] >= now - RATE_WINDOW]
    minutes: dict[datetime, list[dict]] = {}
    for r in rows:
        minutes.setdefault(r["committed_at"].replace(second=0, microsecond=0), []).append(r)
    series = []
    for minute, batch in sorted(minutes.items()):
        latencies = [r["latency_p50_ms"] for r in batch if r["latency_p50_ms"] is not None]
        series.append({"minute": minute, "events": sum(r["input_rows"] or 0 for r in batch),
                       "latency_p50_ms": statistics.median_low(latencies) if latencies else None})
    return StreamHealth(
        events_per_s=sum(r["input_rows"] or 0 for r in recent) / RATE_WINDOW.total_seconds() if rows else None,
        last_batch_at=last["committed_at"] if last else _newest(files, "committed_at"),
        last_latency_ms=last["latency_p50_ms"] if last else None,
        kafka_lag=last["kafka_lag"] if last else None,
        bronze_rows=_count_or_zero(paths.bronze),
        quarantined=_count_or_zero(paths.quarantine),
        duplicates=_count_or_zero(paths.duplicates),
        series=series)


# --- quarantine and latest sales ------------------------------------------------------------------------

def quarantine_by_reason(paths: Paths) -> list[dict]:
    """Quarantined records per reason, most frequent first (one column read)."""
    table = open_table(paths.quarantine)
    reasons = _read(paths.quarantine, table, ["reason"])["reason"]
    counts = pc.value_counts(reasons).to_pylist() if len(reasons) else []
    return sorted(({"reason": c["values"], "records": c["counts"]} for c in counts),
                  key=lambda r: (-r["records"], r["reason"] or ""))


def as_hex(raw: bytes | None, limit: int = HEX_BYTES) -> str:
    """Bytes as hex pairs, the first ``limit`` of them, and the full size when cut."""
    if raw is None:
        return "—"
    shown = raw[:limit].hex(" ")
    return shown if len(raw) <= limit else f"{shown} … ({len(raw):,} bytes)"


def quarantine_samples(paths: Paths, n: int = QUARANTINE_SAMPLES) -> list[dict]:
    """The newest quarantined records, their value as hex."""
    rows = newest_rows(paths.quarantine, ["ingestion_ts", "reason", "reasons", "raw_value", "kafka_partition",
                                          "kafka_offset", "kafka_timestamp"],
                       [("ingestion_ts", "descending"), ("kafka_partition", "ascending"),
                        ("kafka_offset", "descending")], n).to_pylist()
    for r in rows:
        r["raw_value"] = as_hex(r["raw_value"])
        r["reasons"] = ", ".join(r["reasons"] or [])
    return rows


SALE_COLUMNS = ["ingestion_ts", "event_ts", "vente_id", "client_nom", "pays", "segment", "produit_nom", "quantite",
                "montant", "kafka_partition", "kafka_offset"]


def latest_sales(paths: Paths, n: int = LATEST_SALES) -> list[dict]:
    """The sales Bronze received last (from its newest files only), as the page shows them."""
    return shown(newest_rows(paths.bronze, SALE_COLUMNS,
                             [("ingestion_ts", "descending"), ("kafka_partition", "ascending"),
                              ("kafka_offset", "descending")], n).to_pylist())
