"""query_utils: the questions, read-only SQL, the batch report and its charts, the menu driven through
stdin — on a small real lakehouse (Bronze, quarantine, metrics written as Delta through delta-rs, Silver built by
the job)."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from delta.tables import DeltaTable
from deltalake import DeltaTable as DeltaRsTable
from PIL import Image
from pyspark.testing import assertDataFrameEqual

from lakehouse.bronze.columns import METRICS_SCHEMA
from lakehouse.platform.paths import Paths
from lakehouse.serve.menu import Console, Menu
from lakehouse.serve.queries import (
    Lakehouse,
    QueryInputError,
    filter_client,
    missing_tables,
    parse_as_of,
    quarantine_summary,
)
from lakehouse.serve.report import (
    DAILY,
    MAX_DAY_LABELS,
    Report,
    build_report,
    revenue_chart,
    silver_freshness,
    write_report_files,
)
from lakehouse.silver.freshness import SilverStatusWriter
from lakehouse.silver.job import run_silver
from tests.conftest import make_config, write_config
from tests.support.delta_rs import write_delta
from tests.unit.test_silver_transforms import D1, D2, RULES, ts

BRONZE = ("vente_id STRING, client_id STRING, produit_id STRING, event_ts TIMESTAMP, jour DATE, quantite INT, "
          "montant DECIMAL(14,2), client_nom STRING, pays STRING, segment STRING, produit_nom STRING, "
          "is_late BOOLEAN, categorie STRING, ingestion_ts TIMESTAMP, kafka_partition INT, kafka_offset BIGINT")
RECEIVED = dt.datetime(2026, 11, 26, 9, 0)  # when Bronze received the sales (Silver applies events in that order)


def bronze(rows: list[tuple], first_offset: int = 0) -> list[tuple]:
    """Sales as Bronze keeps them: with a category, when Bronze received each and where from."""
    return [(*row, "Maison", RECEIVED, 0, first_offset + i) for i, row in enumerate(rows)]

QUARANTINE = ("reason STRING, reasons ARRAY<STRING>, raw_value BINARY, raw_text STRING, kafka_partition INT, "
              "kafka_offset BIGINT, ingestion_ts TIMESTAMP")
FIRST = [  # Bronze version 0
    ("v1", "C1", "P1", ts(D1, 9), D1, 1, Decimal("99.99"), "Alice", "France", "B2C", "Lampe", False),
    ("v2", "C2", "P1", ts(D1, 10), D1, 2, Decimal("60.00"), "Bob", "France", "B2C", "Lampe", False),
]
SECOND = [  # Bronze version 1
    ("v3", "C2", "P2", ts(D2, 8), D2, 1, Decimal("40.00"), "Bob SARL", "Belgique", "B2B", "Chaise", True),
    ("v4", "C3", "P3", ts(D1, 11), D1, 3, Decimal("499.99"), "Chloé", "Belgique", "B2B", "Table", False),
    ("v5", "C4", "P3", ts(D2, 9), D2, 1, Decimal("250.00"), "Dan", "Suisse", "B2B", "Table", False),
    ("v6", "C4", "P3", ts(D2, 9), D2, 1, Decimal("250.00"), "Dan SA", "Suisse", "B2B", "Table", False),
]


@pytest.fixture(scope="module")
def lake_paths(spark, tmp_path_factory) -> Paths:
    paths = Paths.from_config(make_config(tmp_path_factory.mktemp("query") / "data"))
    for rows, offset in ((FIRST, 0), (SECOND, len(FIRST))):
        write_delta(paths.bronze, bronze(rows, offset), BRONZE, partition_by="jour")
    at = dt.datetime(2026, 11, 26, 10, 0)
    write_delta(paths.quarantine, [
        ("not_json", ["not_json"], b"vente 9 client=C9", "vente 9 client=C9", 0, 17, at),
        ("wrong_type", ["wrong_type:montant"], b'{"montant": "cent euros"}', '{"montant": "cent euros"}', 1, 4, at),
        ("wrong_type", ["wrong_type:quantite", "missing:pays"], b'{"quantite": "deux"}', '{"quantite": "deux"}',
         2, 8, at + dt.timedelta(seconds=1)),
    ], QUARANTINE)
    metrics = [("q1", b, at + dt.timedelta(seconds=b), 3, 2, 1, 0, 0, at, at, 900 + b, 3.3, 1200, 1500, 0, 0, 0)
               for b in (0, 1)]
    write_delta(paths.bronze_metrics, metrics, METRICS_SCHEMA)
    run_silver(spark, RULES, paths)
    return paths


# --- pure parts ----------------------------------------------------------------------------------------

def test_filter_client_by_id_or_name_any_case(spark) -> None:
    clients = spark.createDataFrame([("C1", "Alice Martin", Decimal("5.00")), ("C12", "Bob", Decimal("9.00"))],
                                    "client_id STRING, client_nom STRING, total_depense DECIMAL(24,2)")
    assert [r.client_id for r in filter_client(clients, "c1").collect()] == ["C1"]
    assert [r.client_id for r in filter_client(clients, " MARTIN ").collect()] == ["C1"]
    assert filter_client(clients, "nobody").collect() == []
    with pytest.raises(QueryInputError, match="client id"):
        filter_client(clients, "  ")


def test_quarantine_summary_counts_per_reason(spark, lake_paths) -> None:
    actual = quarantine_summary(Lakehouse(spark, lake_paths).table("ventes_quarantine")).drop("first_seen",
                                                                                           "last_seen")
    assertDataFrameEqual(actual, spark.createDataFrame([("wrong_type", 2), ("not_json", 1)],
                                                       "reason STRING, records BIGINT"), checkRowOrder=True)


def test_history_gives_the_rows_and_files_each_engine_wrote(spark, tmp_path) -> None:
    # Silver's small batches are committed by delta-rs, which names its metrics in snake case; Spark's Delta in
    # camel case. The menu's "Table history" and the report read both.
    paths = Paths.from_config(make_config(tmp_path / "data"))
    table, schema = paths.silver("pays"), "pays STRING, nb_clients INT"
    spark.createDataFrame([("France", 1), ("Suisse", 2)], schema).coalesce(1).write.format("delta") \
        .save(str(table))  # version 0: Spark, one file
    write_delta(table, [("Belgique", 3)], schema)  # 1: delta-rs
    source = pa.table({"pays": ["France", "Espagne"], "nb_clients": pa.array([5, 1], pa.int32())})
    DeltaRsTable(str(table)).merge(source, "t.pays = s.pays", source_alias="s", target_alias="t") \
        .when_matched_update_all().when_not_matched_insert_all().execute()  # 2: delta-rs
    DeltaTable.forPath(spark, str(table)).alias("t").merge(
        spark.createDataFrame([("Suisse", 7)], schema).alias("s"), "t.pays = s.pays").whenMatchedUpdateAll() \
        .execute()  # 3: Spark
    raw = {c["version"]: c["operationMetrics"] for c in DeltaRsTable(str(table)).history()}
    shown = {r["version"]: (r["operation"], r["rows_written"], r["files_written"])
             for r in Lakehouse(spark, paths).history("pays").collect()}
    assert shown == {0: ("WRITE", "2", "1"), 1: ("WRITE", "1", "1"),
                     2: ("MERGE", str(raw[2]["num_output_rows"]), str(raw[2]["num_target_files_added"])),
                     3: ("MERGE", str(raw[3]["numOutputRows"]), str(raw[3]["numTargetFilesAdded"]))}
    assert all(int(rows) > 0 and int(files) > 0 for _, rows, files in shown.values())


def test_parse_as_of() -> None:
    assert parse_as_of(" 3 ") == ("versionAsOf", "3")
    assert parse_as_of("2026-11-26 10:00") == ("timestampAsOf", "2026-11-26 10:00:00")
    assert parse_as_of("2026-11-26") == ("timestampAsOf", "2026-11-26 00:00:00")
    with pytest.raises(QueryInputError, match="Not a version or a timestamp: 'yesterday'"):
        parse_as_of("yesterday")


def test_missing_tables_name_the_command() -> None:
    paths = Paths(Path("/nonexistent/data"), Path("/nonexistent/cache"))
    messages = [str(e) for e in missing_tables(paths)]
    assert messages[0] == ("Table ventes not found at /nonexistent/data/delta/bronze/ventes: run "
                           "spark_streaming_delta.py (it creates the table with the first sales) first.")
    assert ("Table clients not found at /nonexistent/data/delta/silver/clients: run streaming_silver.py first."
            in messages)
    assert ("Table rejets not found at /nonexistent/data/delta/silver/rejets: run streaming_silver.py first."
            in messages)
    # The quarantine, the duplicates and Bronze's corrections may be missing: no bad record, no duplicate, no
    # return or cancellation yet.
    assert len(messages) == 10


# --- the report ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def noon_report(spark, lake_paths) -> Report:
    """The module's lake's report at noon: its text and its files are looked at by two tests (a report runs a
    few dozen Spark queries)."""
    return build_report(Lakehouse(spark, lake_paths), dt.datetime(2026, 11, 26, 12, 0))


def test_report_figures(noon_report) -> None:
    text = noon_report.text()
    # Silver built here without its job: no status file, so nothing is claimed about its freshness.
    assert text.startswith("Sales lakehouse report — 2026-11-26 12:00:00\n"
                           "Silver freshness unknown: no status from the Silver job (streaming_silver.py) yet\n\n")
    # No return nor cancellation here: the net revenue is the gross, and nothing waits nor was refused.
    for pattern in [r"Sales\s+6\n", r"Revenue\s+1,199\.98 €", r"Gross sales\s+1,199\.98 €", r"Refunds\s+0\.00 €",
                    r"Cancelled\s+0\.00 €", r"Return rate\s+0\.0 %", r"Corrections waiting for their sale\s+0\n",
                    r"Orphans \(waiting over 1 h\)\s+0\n", r"Rejected events\s+0\n",
                    r"\(no orphan: 0 correction\(s\) waiting for their sale, none for over 1 h\)",
                    r"Rejected events by reason\n=+\n\(no event refused by Silver\)",
                    r"Average basket\s+200\.00 €", r"Clients\s+4\n",
                    r"Loyal clients\s+2 \(50\.0 %\)", r"Premium clients\s+1 \(25\.0 %\)",
                    r"Standard clients\s+2 \(50\.0 %\)", r"Economy clients\s+1 \(25\.0 %\)",
                    # top client, countries (by revenue), segments, days
                    r"C4\s+Dan SA\s+Suisse\s+B2B\s+2\s+500\.00 €\s+250\.00 €\s+Premium\s+yes",
                    r"Belgique\s+2\s+539\.99 €\s+270\.00 €\s+4\s+2\s+539\.99 €\s+0\.00 €\s+0\.00 €\s+0\s+0\s+0\.0 %\n",
                    r"B2B\s+4\s+1,039\.99 €", r"Table\s+P3\s+Maison\s+3\s+999\.99 €\s+5\s+0\s+999\.99 €",
                    r"2024-12-12\s+3\s+659\.98 €\s+3", r"2024-12-13\s+3\s+540\.00 €\s+2",
                    r"wrong_type\s+2\s", r"not_json\s+1\s", r"wrong_type:quantite, missing:pays",
                    r"\n\s*1\s+2026-11-26 10:00:01\s+3\s+2\s+1\s+0\s+0\s+0\s+901",
                    r"ventes\s+1\s+\S+ \S+\s+WRITE\s+6\n", r"clients\s+\d+\s+\S+ \S+\s+MERGE\s+4\n"]:
        assert re.search(pattern, text), pattern


def silver_status(path: Path, at: dt.datetime, heartbeat_s: float, newest_sale_s: float, last_batch_s: float,
                  stopped: bool = False, error: str | None = None) -> Path:
    """Silver's status file as its job writes it, its moments so many seconds before ``at``."""
    writer = SilverStatusWriter(path, "continuous", 2.0)
    moments = {"heartbeat_at": heartbeat_s, "newest_sale": newest_sale_s, "last_batch_at": last_batch_s}
    writer.state.update({k: (at - dt.timedelta(seconds=v)).isoformat() for k, v in moments.items()})
    writer.state.update(stopped_at=writer.state["heartbeat_at"] if stopped else None, error=error)
    path.write_text(json.dumps(writer.state), encoding="utf-8")
    return path


def test_the_report_says_how_old_silver_is_under_its_title(tmp_path) -> None:
    generated = dt.datetime(2026, 11, 26, 12, 0)  # naive, this machine's local time, as query_utils passes it
    at = generated.astimezone(dt.timezone.utc)
    status = tmp_path / "silver.json"

    def head(freshness) -> tuple[str, str]:
        report = Report(generated, silver=freshness)
        return report.text(), report.markdown({})

    silver_status(status, at, 1, 3, 2)
    assert head(silver_freshness(status, generated)) == (
        "Sales lakehouse report — 2026-11-26 12:00:00\n"
        "Silver continuous: newest sale counted 3 s ago, last batch committed 2 s ago\n",
        "# Sales lakehouse report — 2026-11-26 12:00:00\n\n"
        "Silver continuous: newest sale counted 3 s ago, last batch committed 2 s ago\n")
    # A stopped Silver is said first and, in Markdown, in bold.
    silver_status(status, at, 420, 600, 430, stopped=True)
    stopped = "SILVER IS NOT RUNNING (last seen 7 min ago): figures are not current; newest sale counted 10 min " \
              "ago, last batch committed 7 min ago"
    assert head(silver_freshness(status, generated)) == (
        f"Sales lakehouse report — 2026-11-26 12:00:00\n{stopped}\n",
        f"# Sales lakehouse report — 2026-11-26 12:00:00\n\n**{stopped}**\n")
    # Its heartbeat too old: stopped, even though it never said so (killed).
    silver_status(status, at, 3600, 3700, 3650)
    assert head(silver_freshness(status, generated))[0].split("\n")[1] == (
        "SILVER IS NOT RUNNING (last seen 60 min ago): figures are not current; newest sale counted 62 min ago, "
        "last batch committed 61 min ago")
    # The job's last error may quote the data: text in both outputs; the line's own words are not escaped.
    silver_status(status, at, 1, 3, 2, error="bad value *Zoé* [x](javascript:y)\x1b[2J")
    text, markdown = head(silver_freshness(status, generated))
    assert text.split("\n")[1] == ("Silver continuous: newest sale counted 3 s ago, last batch committed 2 s ago; "
                                   "last batch failed: bad value *Zoé* [x](javascript:y)\\x1b[2J")
    assert markdown.split("\n")[2] == (
        "Silver continuous: newest sale counted 3 s ago, last batch committed 2 s ago; last batch failed: "
        "bad value \\*Zoé\\* \\[x\\]\\(javascript:y\\)\\\\x1b\\[2J")
    status.unlink()
    unknown = "Silver freshness unknown: no status from the Silver job (streaming_silver.py) yet"
    assert head(silver_freshness(status, generated)) == (
        f"Sales lakehouse report — 2026-11-26 12:00:00\n{unknown}\n",
        f"# Sales lakehouse report — 2026-11-26 12:00:00\n\n**{unknown}**\n")


def test_report_files_are_markdown_and_valid_pngs(noon_report, tmp_path) -> None:
    markdown = write_report_files(noon_report, tmp_path / "out").read_text(encoding="utf-8")
    for name, title in [("revenue_by_country.png", "Revenue by country"),
                        ("revenue_by_segment.png", "Revenue by segment"), ("daily_revenue.png", "Daily revenue")]:
        path = tmp_path / "out" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()  # raises on a truncated or corrupt file
        with Image.open(path) as image:
            assert image.size == (800, 450)
        assert f"![{title}]({name})" in markdown
    assert "| Belgique | 2 | 539.99 € | 270.00 € | 4 | 2 | 539.99 € | 0.00 € | 0.00 € | 0 | 0 | 0.0 % |" in markdown
    assert "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" in markdown


@pytest.mark.parametrize("days", [1, 90])
def test_daily_revenue_chart_reads_well_with_one_day_or_ninety(days: int) -> None:
    labels = [str(dt.date(2026, 1, 1) + dt.timedelta(days=i)) for i in range(days)]
    values = [521_000.0 + 61_000.0 * (i % 2) for i in range(days)]  # similar days: no zoom on a band
    fig = revenue_chart(DAILY, labels, values)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= max(values)
    assert [round(bar.get_height()) for bar in ax.patches] == [round(v) for v in values]
    shown = [t.get_text() for t in ax.get_xticklabels()]
    assert shown[0] == labels[0] and len(shown) <= MAX_DAY_LABELS
    assert ax.get_xlim()[1] - ax.get_xlim()[0] >= 7  # one day is one bar among empty days, not a wall
    if days == 1:
        assert [bar.get_width() for bar in ax.patches] == [0.8]


# --- the script ----------------------------------------------------------------------------------------

def test_batch_report_and_charts_from_the_script(spark, lake_paths, tmp_path, capsys) -> None:
    # In-process (main() finds the tests' session): tests/system/test_query_utils_script.py runs the script in
    # its own process.
    import query_utils

    config = write_config(tmp_path / "config.ini", make_config(lake_paths.data_dir))
    lake_paths.status_dir.mkdir(parents=True, exist_ok=True)
    silver_status(lake_paths.silver_status, dt.datetime.now(dt.timezone.utc), 600, 660, 600, stopped=True)
    try:
        assert query_utils.main(["--batch", "--out", str(tmp_path / "report"), "--config", str(config)]) == 0
    finally:
        spark.sparkContext.setLogLevel("WARN")  # main() quiets Spark for its terminal
        lake_paths.silver_status.unlink()  # the module's other tests build Silver without its job
    out = capsys.readouterr().out
    # The status file Silver's job left when it stopped, ten minutes before the report.
    stopped = r"SILVER IS NOT RUNNING \(last seen 10 min ago\): figures are not current; newest sale counted 11 min " \
              r"ago, last batch committed 10 min ago"
    assert re.match(r"Sales lakehouse report — [\d-]+ [\d:]+\n" + stopped + "\n\n", out)
    assert re.match(r"# Sales lakehouse report — [\d-]+ [\d:]+\n\n\*\*" + stopped + r"\*\*\n\n## Overview",
                    (tmp_path / "report" / "report.md").read_text(encoding="utf-8"))
    assert re.search(r"Revenue\s+1,199\.98 €", out)
    assert f"Report written to {tmp_path / 'report' / 'report.md'}" in out
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "daily_revenue.png", "report.md", "revenue_by_country.png", "revenue_by_segment.png"]


def test_menu_leaves_at_end_of_input(spark, lake_paths) -> None:
    # Ctrl-D after one choice: the answer, then the menu returns (query_utils.py then says "Bye." as after q,
    # which the script's own run in tests/system/test_query_utils_script.py shows). In-process: the script adds
    # nothing here.
    out = io.StringIO()
    Menu(Lakehouse(spark, lake_paths), Console(io.StringIO("4\n"), out)).run()
    answers = out.getvalue().split("Choice: ")
    assert len(answers) == 3 and "Revenue by country" in answers[1] and answers[2] == "\n"


# --- text from the data (issue #32) ------------------------------------------------------------------------

HOSTILE_NAMES = ["<img src=x onerror=alert(1)>", "<script>alert(1)</script>", "[click](javascript:alert(1))",
                 "**bold** _it_", "# H1 $x$", "a | b\r\nc", "Alice\u202eecilA", "Ali\u200bce"]
ESC_RECORD = b"\x1b]0;TITLE\x07\x1b[2J\x1b[31m"


def test_names_and_raw_records_from_the_data_stay_text_in_the_report_and_the_menu(spark, tmp_path) -> None:
    paths = Paths.from_config(make_config(tmp_path / "data"))
    write_delta(paths.bronze, bronze([(f"h{i}", f"H{i}", "P1", ts(D1, 9), D1, 1, Decimal("10.00"), name, name, "B2C",
                                       "Lampe", False) for i, name in enumerate(HOSTILE_NAMES)]), BRONZE,
                partition_by="jour")
    at = dt.datetime(2026, 11, 26, 10, 0)
    write_delta(paths.quarantine, [("not_json", ["not_json"], ESC_RECORD, ESC_RECORD.decode(), 0, 1, at)], QUARANTINE)
    write_delta(paths.bronze_metrics, [], METRICS_SCHEMA)
    run_silver(spark, RULES, paths)
    lake = Lakehouse(spark, paths)

    report = build_report(lake, dt.datetime(2026, 11, 26, 12, 0), top=20)
    text = report.text()
    assert "\x1b" not in text and "\u202e" not in text and "\u200b" not in text and "\r" not in text
    assert "\\x1b]0;TITLE\\x07\\x1b[2J\\x1b[31m" in text and "Alice<U+202E>ecilA" in text
    markdown = write_report_files(report, tmp_path / "out").read_text(encoding="utf-8")
    for raw in ("<img", "<script", "](javascript", "**bold**", "_it_", "# H1", "$x$", "\x1b", "\u202e", "\r"):
        assert not re.search(r"(?<!\\)" + re.escape(raw), markdown), raw  # none left unescaped
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in markdown and "a \\| b\\\\r\\\\nc" in markdown
    top = [line for line in markdown.split("\n") if line.startswith("| H5 |")]  # the one with a pipe and CR LF
    columns = report.section("Top clients (20)").columns
    assert len(top) == 1 and len(re.split(r"(?<!\\)\|", top[0])) == len(columns) + 2  # each value in its cell

    out = io.StringIO()
    Menu(lake, Console(io.StringIO("7\n2\n20\n"), out)).run()
    shown = out.getvalue()
    assert "\x1b" not in shown and "\u202e" not in shown and "\r" not in shown
    assert "\\x1b]0;TITLE\\x07\\x1b[2J\\x1b[31m" in shown and "Ali<U+200B>ce" in shown
