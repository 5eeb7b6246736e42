"""Turning query results into what users read: aligned text tables, the batch report, Markdown, charts.

The report's revenue is Silver's: net of refunds (returns) and of what cancellations voided, with the gross
sales, refunds and return rate beside it by country, segment and product; then the corrections waiting for
their sale too long (orphans) and the events Silver refused."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable, SupportsFloat, cast

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.platform.delta import one_row
from lakehouse.serve.dashboard import table
from lakehouse.serve.headline import ClientCounts, headline
from lakehouse.serve.numbers import duration, euros, rate, share
from lakehouse.serve.queries import (
    EVENT_COLUMNS,
    TABLES,
    Lakehouse,
    countries,
    daily_revenue,
    duplicates_samples,
    duplicates_summary,
    last_batches,
    latest_rejections,
    products,
    quarantine_samples,
    quarantine_summary,
    rejections_summary,
    segments,
    top_clients,
    waiting_corrections,
)
from lakehouse.serve.safe_text import for_markdown, for_terminal, visible
from lakehouse.serve.web_tables import DEFAULT_ORPHAN_TIMEOUT_S
from lakehouse.silver.freshness import SilverFreshness, read_freshness

log = logging.getLogger(__name__)

MONEY_COLUMNS = {"montant", "prix_unitaire", "total_depense", "panier_moyen", "achat_min", "achat_max",
                 "chiffre_affaires", "chiffre_affaires_brut", "remboursements", "montant_annule", "montant_rembourse",
                 "montant_net", "total_brut", "total_rembourse", "total_annule"}
RATE_COLUMNS = {"taux_retour"}  # a ratio, shown as a percentage
DURATION_COLUMNS = {"attente_s"}  # seconds, shown in their two largest units
REPORT_DAYS = 30
REPORT_ROWS = 50  # orphans and refused events listed in the report (the oldest orphans, the newest refused)


def format_value(column: str, value: object) -> str:
    """One cell as users read it: euros for money, thousands separators, seconds-precision times."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal) and column in MONEY_COLUMNS:
        return euros(value)
    if isinstance(value, float) and column in RATE_COLUMNS:
        return rate(value)
    if isinstance(value, (int, float)) and column in DURATION_COLUMNS:
        return duration(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):  # the retour_ids a sale's corrections carried
        return ", ".join(str(v) for v in value) or "—"
    return str(value)  # shown through safe_text by the caller (line breaks included)


class Figure(str):
    """Text this module wrote itself from numbers (``1,234.50 €``, ``2 (50.0 %)``), not from the data."""


def is_data_text(value: object) -> bool:
    """Whether a cell's value is text that may come from the data (names, raw records, reasons): shown only
    through ``safe_text``. Numbers, times, yes/no and ``Figure`` are formatted here and carry nothing else."""
    return isinstance(value, (str, bytes, bytearray, dict, list, tuple)) and not isinstance(value, Figure)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


@dataclass
class Section:
    """A titled table of rows (plain Python values, formatted only when rendered)."""

    title: str
    columns: list[str]
    rows: list[list[object]]
    note: str = ""
    empty: str = "(no rows)"

    @classmethod
    def from_df(cls, title: str, df: DataFrame, limit: int | None = None, **kwargs: str) -> "Section":
        rows = df.limit(limit).collect() if limit is not None else df.collect()
        return cls(title, df.columns, [list(r) for r in rows], **kwargs)

    def cells(self, escape=for_terminal) -> list[list[str]]:
        """Each row's cells as text, data text passed through ``escape`` (terminal by default)."""
        return [[escape(format_value(c, v)) if is_data_text(v) else format_value(c, v)
                 for c, v in zip(self.columns, row)] for row in self.rows]

    def right_aligned(self) -> set[int]:
        return {i for i in range(len(self.columns)) if any(_is_number(r[i]) for r in self.rows)}

    def text(self) -> str:
        out = [self.title, "=" * len(self.title)]
        out += table(self.columns, self.cells(), self.right_aligned()) if self.rows else [self.empty]
        if self.note:
            out.append(self.note)
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"## {self.title}", ""]
        if self.rows:
            right = self.right_aligned()
            out += ["| " + " | ".join(for_markdown(c) for c in self.columns) + " |",
                    "|" + "|".join("---:" if i in right else "---" for i in range(len(self.columns))) + "|"]
            # Every cell of data text is literal Markdown text, its line breaks and pipes included; the
            # cells formatted here (numbers, times) carry no special character but "." and "-".
            out += ["| " + " | ".join(row) + " |" for row in self.cells(for_markdown)]
        else:
            out.append(self.empty)
        if self.note:
            out += ["", self.note]
        return "\n".join(out)


def silver_freshness(status: Path, generated_at: datetime) -> SilverFreshness:
    """Silver's freshness from its status file (``Paths.silver_status``) as of ``generated_at`` (naive: this
    machine's local time, as the report's header shows it)."""
    return read_freshness(status, _aware(generated_at))


def _aware(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)  # a naive moment is taken as local time


def freshness_line(freshness: SilverFreshness, generated_at: datetime, escape: Callable[[str], str]) -> str:
    """Silver's freshness in one line (``SilverFreshness.summary``) as of ``generated_at``; the job's last
    error, which may quote the data, passed through ``escape``."""
    line = replace(freshness, error=None).summary(_aware(generated_at))
    return f"{line}; last batch failed: {escape(freshness.error)}" if freshness.current and freshness.error else line


@dataclass
class Report:
    generated_at: datetime
    sections: list[Section] = field(default_factory=list)
    silver: SilverFreshness | None = None  # said under the title: how old the figures are

    def section(self, title: str) -> Section:
        return next(s for s in self.sections if s.title == title)

    def text(self) -> str:
        head = f"Sales lakehouse report — {self.generated_at:%Y-%m-%d %H:%M:%S}"
        if self.silver is not None:
            head += "\n" + freshness_line(self.silver, self.generated_at, for_terminal)
        return "\n\n".join([head, *[s.text() for s in self.sections]]) + "\n"

    def markdown(self, charts: dict[str, Path]) -> str:
        out = [f"# Sales lakehouse report — {self.generated_at:%Y-%m-%d %H:%M:%S}"]
        if self.silver is not None:
            line = freshness_line(self.silver, self.generated_at, for_markdown)
            out.append(line if self.silver.current else f"**{line}**")  # not current: the reader must not miss it
        for s in self.sections:
            out.append(s.markdown())
            if s.title in charts:
                out.append(f"![{s.title}]({charts[s.title].name})")
        return "\n\n".join(out) + "\n"


OVERVIEW, TOP, COUNTRIES, SEGMENTS, DAILY = ("Overview", "Top clients", "Revenue by country",
                                             "Revenue by segment", "Daily revenue")
PRODUCTS, ORPHANS, REJECTIONS, REJECTED_SAMPLES = ("Revenue by product", "Orphan corrections",
                                                   "Rejected events by reason", "Rejected events (latest)")
NET_NOTE = "(revenue net of refunds and cancellations: chiffre_affaires = brut - remboursements - montant_annule)"
QUARANTINE, SAMPLES, BATCHES, TABLES_SECTION = ("Quarantine by reason", "Quarantined records (latest per reason)",
                                                "Bronze stream: last batches", "Tables")
DUPLICATES, DUPLICATE_SAMPLES = ("Duplicates (records repeating a kept sale)", "Latest duplicates")


@dataclass
class CorrectionCounts:
    """Corrections waiting for their sale, the orphans among them, and the events Silver refused."""

    waiting: int = 0
    orphans: int = 0
    orphan_timeout_s: float = DEFAULT_ORPHAN_TIMEOUT_S
    rejected: int = 0


def overview(clients: list[dict], pays: list[dict], corrections: CorrectionCounts | None = None) -> Section:
    """Totals (revenue net, with gross, refunds and cancellations beside it), returns, loyalty and spending
    tiers from the Silver clients and pays rows; the corrections not applied."""
    figures = headline(pays, ClientCounts.of(clients))
    sold, returned, n, loyal = figures.units_sold, figures.units_returned, figures.clients, figures.loyal
    rows: list[list[object]] = [
        ["Sales", figures.sales], ["Revenue", Figure(euros(figures.revenue))],
        ["Gross sales", Figure(euros(figures.gross))],
        ["Refunds", Figure(euros(figures.refunds))], ["Cancelled", Figure(euros(figures.cancelled))],
        ["Returns", figures.returns], ["Cancellations", figures.cancellations],
        ["Units returned", Figure(f"{returned:,} of {sold:,} sold")], ["Return rate", Figure(share(returned, sold))],
        ["Average basket", Figure(euros(figures.average_basket))],
        ["Clients", n], ["Loyal clients", Figure(f"{loyal:,} ({share(loyal, n)})")]]
    for tier, k in figures.tiers.items():
        rows.append([f"{tier} clients", Figure(f"{k:,} ({share(k, n)})")])
    if corrections is not None:
        rows += [["Corrections waiting for their sale", corrections.waiting],
                 [f"Orphans (waiting over {duration(corrections.orphan_timeout_s)})", corrections.orphans],
                 ["Rejected events", corrections.rejected]]
    return Section(OVERVIEW, ["figure", "value"], rows, note=NET_NOTE)


def build_report(lake: Lakehouse, now: datetime, top: int = 10,
                 orphan_timeout_s: float = DEFAULT_ORPHAN_TIMEOUT_S) -> Report:
    """Every section of the batch report, under Silver's freshness (``now`` naive, local time; orphans: the
    corrections waiting for longer than ``orphan_timeout_s`` at ``now``). Raises MissingTableError if a
    required table is missing."""
    # Read before the tables: the figures are then at least as recent as the line says.
    freshness = silver_freshness(lake.paths.silver_status, now)
    clients_df, pays_df = lake.table("clients"), lake.table("pays")
    waiting_df = waiting_corrections(lake.table("corrections_en_attente"), now, orphan_timeout_s).localCheckpoint()
    rejets_df = lake.table("rejets")
    waiting = one_row(waiting_df.agg(F.count(F.lit(1)).alias("n"), F.count_if("orphelin").alias("orphans")))
    counts = CorrectionCounts(waiting["n"], waiting["orphans"], orphan_timeout_s, rejets_df.count())
    report = Report(now, silver=freshness)
    report.sections.append(overview([r.asDict() for r in clients_df.collect()],
                                    [r.asDict() for r in pays_df.collect()], counts))
    report.sections += [
        Section.from_df(f"{TOP} ({top})", top_clients(clients_df, top), note="(total_depense is net)"),
        Section.from_df(COUNTRIES, countries(pays_df), note=NET_NOTE),
        Section.from_df(SEGMENTS, segments(lake.table("segments")), note=NET_NOTE),
        Section.from_df(PRODUCTS, products(lake.table("produits")), note=NET_NOTE),
        Section.from_df(DAILY, daily_revenue(lake.table("ventes_jour"), REPORT_DAYS),
                        note=f"(last {REPORT_DAYS} days; net revenue: refunds and cancellations count on the day "
                             "they were made)"),
    ]
    report.sections += corrections_sections(waiting_df, rejets_df, counts)
    report.sections += kept_records_sections(lake.quarantine(), (QUARANTINE, SAMPLES), ["reason", "records"],
                                             quarantine_summary, quarantine_samples, "(no quarantined record)")
    report.sections += kept_records_sections(lake.duplicates(), (DUPLICATES, DUPLICATE_SAMPLES), ["records", "sales"],
                                             duplicates_summary, duplicates_samples, "(no duplicate record)")
    report.sections.append(Section.from_df(BATCHES, last_batches(lake.table("bronze_metrics"))))
    report.sections.append(tables_section(lake))
    return report


def corrections_sections(waiting_df: DataFrame, rejets_df: DataFrame, counts: CorrectionCounts) -> list[Section]:
    """The orphans (``waiting_corrections`` rows, oldest first) and the events Silver refused: per reason, and
    the newest."""
    timeout = duration(counts.orphan_timeout_s)
    orphans = Section.from_df(
        ORPHANS, waiting_df.filter("orphelin").select(*EVENT_COLUMNS, "attente_s"), REPORT_ROWS,
        note=f"({counts.orphans:,} of the {counts.waiting:,} corrections waiting for their sale have waited over "
             f"{timeout}, [analytics] orphan_timeout; oldest first, {REPORT_ROWS} at most. They keep waiting: Silver "
             "applies one when its sale arrives.)" if counts.orphans else "",
        empty=f"(no orphan: {counts.waiting:,} correction(s) waiting for their sale, none for over {timeout})")
    if not counts.rejected:
        return [orphans, Section(REJECTIONS, ["raison", "events"], [], empty="(no event refused by Silver)")]
    return [orphans, Section.from_df(REJECTIONS, rejections_summary(rejets_df)),
            Section.from_df(REJECTED_SAMPLES, latest_rejections(rejets_df, REPORT_ROWS),
                            note=f"(the newest {REPORT_ROWS} at most)")]


def kept_records_sections(df: DataFrame | None, titles: tuple[str, str], empty_columns: list[str],
                          summary: Callable[[DataFrame], DataFrame], samples: Callable[[DataFrame], DataFrame],
                          empty: str) -> list[Section]:
    """A summary and samples of the quarantine or duplicates table, or one empty section while it does
    not exist."""
    if df is None:
        return [Section(titles[0], empty_columns, [], empty=empty)]
    return [Section.from_df(titles[0], summary(df)), Section.from_df(titles[1], samples(df))]


def tables_section(lake: Lakehouse) -> Section:
    """Each existing table's current version, last change and row count."""
    rows = []
    for name in (n for n in TABLES if lake.exists(n)):
        last = one_row(lake.history(name, 1))
        rows.append([name, last["version"], last["timestamp"], last["operation"], lake.table(name).count()])
    return Section(TABLES_SECTION, ["table", "version", "changed_at", "last_operation", "rows"], rows)


# --- charts --------------------------------------------------------------------------------------------

CHARTS = {COUNTRIES: "revenue_by_country.png", SEGMENTS: "revenue_by_segment.png", DAILY: "daily_revenue.png"}


# Days a daily chart shows room for at least (a single day is one bar among empty slots, not a wall), and
# date labels it writes at most (ninety days get one label a week or so).
MIN_DAY_SLOTS = 7
MAX_DAY_LABELS = 15


def revenue_chart(title: str, labels: list[str], values: list[float]):
    """A bar chart of revenue per label, its value axis starting at zero; returns the matplotlib Figure.

    Bars from zero keep one day, or ninety days of similar revenue, from being drawn on an axis zoomed
    to a narrow band (a single dot between 521k and 582k said nothing). Net revenue may be below zero (a day
    of more refunds than sales): the axis then goes down to it."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.subplots()
    money = FuncFormatter(lambda x, _: f"{x:,.0f}")
    if title == COUNTRIES:
        ax.barh(labels[::-1], values[::-1])
        ax.set_xlim(left=min(0.0, *values))
        ax.set_xlabel("Revenue (€)")
        ax.xaxis.set_major_formatter(money)
    else:
        positions = list(range(len(labels)))
        ax.bar(positions, values, width=0.8)
        if title == DAILY:
            step = -(-len(labels) // MAX_DAY_LABELS) if labels else 1
            ax.set_xticks(positions[::step], labels[::step], rotation=45, ha="right")
            spare = max(MIN_DAY_SLOTS - len(labels), 0) / 2
            ax.set_xlim(-0.5 - spare, len(labels) - 0.5 + spare)
        else:
            ax.set_xticks(positions, labels)
        ax.set_ylim(bottom=min(0.0, *values))
        ax.set_ylabel("Revenue (€)")
        ax.yaxis.set_major_formatter(money)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def write_charts(report: Report, out_dir: Path) -> dict[str, Path]:
    """PNG charts of revenue by country, by segment and by day; section title → file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for title, filename in CHARTS.items():
        s = report.section(title)
        # Names are any text: an unescaped "$" pair would be parsed as maths (and fail on, say, "$\\x$").
        labels = [visible(format_value(s.columns[0], r[0])).replace("$", r"\$") for r in s.rows]
        values = [float(cast(SupportsFloat, r[s.columns.index("chiffre_affaires")])) for r in s.rows]
        path = out_dir / filename
        revenue_chart(title, labels, values).savefig(path, format="png")
        written[title] = path
    return written


def write_report_files(report: Report, out_dir: Path) -> Path:
    """Charts plus report.md embedding them; returns the Markdown file."""
    charts = write_charts(report, out_dir)
    path = out_dir / "report.md"
    path.write_text(report.markdown(charts), encoding="utf-8")
    return path

