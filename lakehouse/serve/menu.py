"""The interactive query menu: numbered choices over the lakehouse's tables, driven by any text stream.

Revenue is Silver's, net of refunds and cancellations; choices after the first eleven (whose numbers users
and scripts know) show products, one sale with its corrections, the orphan corrections and the events Silver
refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, TextIO

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.platform.delta import one_row
from lakehouse.serve.numbers import duration
from lakehouse.serve.queries import (
    CLIENT_COLUMNS,
    ORPHAN,
    SALE_FIELDS,
    TABLES,
    Lakehouse,
    MissingTableError,
    QueryInputError,
    countries,
    daily_revenue,
    duplicates_samples,
    duplicates_summary,
    filter_client,
    last_batches,
    latest_rejections,
    products,
    quarantine_samples,
    quarantine_summary,
    recent_sales,
    rejections_summary,
    segments,
    top_clients,
    waiting_corrections,
)
from lakehouse.serve.report import Figure, Section, format_value, is_data_text
from lakehouse.serve.safe_text import for_terminal
from lakehouse.serve.web_tables import DEFAULT_ORPHAN_TIMEOUT_S

ROWS_SHOWN = 20


class Leave(Exception):
    """The user asked to leave (q, end of input)."""


@dataclass
class Console:
    """Questions and answers over text streams (the terminal, or a pipe in tests and scripts)."""

    stdin: TextIO
    stdout: TextIO

    def say(self, text: str = "") -> None:
        """Print ``text``; its lines never carry a control sequence (data text is made visible first, in the
        tables; this is the last guard, for messages that quote the data)."""
        self.stdout.write("\n".join(for_terminal(line) for line in text.split("\n")) + "\n")
        self.stdout.flush()

    def ask(self, prompt: str) -> str:
        """One line of input, stripped; ``Leave`` at end of input (Ctrl-D)."""
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            self.say()
            raise Leave
        return line.strip()


class Menu:
    """Each choice asks what it needs, shows a table, and comes back to the menu; errors are shown and
    the menu goes on."""

    def __init__(self, lake: Lakehouse, console: Console, sql_max_rows: int = 100, sql_timeout_s: float = 60,
                 orphan_timeout_s: float = DEFAULT_ORPHAN_TIMEOUT_S):
        self.lake, self.console = lake, console
        self.sql_max_rows, self.sql_timeout_s = sql_max_rows, sql_timeout_s
        self.orphan_timeout_s = orphan_timeout_s
        self.choices: list[tuple[str, Callable[[], None]]] = [
            ("Recent sales", self.recent_sales),
            ("Top clients by revenue", self.top_clients),
            ("One client, by id or name", self.one_client),
            ("Countries", self.countries),
            ("Segments (B2B / B2C)", self.segments),
            ("Daily revenue", self.daily_revenue),
            ("Quarantine and duplicates: records per reason, with raw samples", self.quarantine),
            ("Streaming metrics of the last batches", self.metrics),
            ("Table history", self.history),
            ("Time travel: a table as of a version or a timestamp", self.time_travel),
            ("Custom SQL (read-only) over the tables", self.custom_sql),
            ("Products: net revenue, refunds, return rate", self.products),
            ("One sale with its corrections (returns, cancellations)", self.one_sale),
            ("Corrections waiting for their sale (orphans)", self.waiting),
            ("Events Silver refused (rejected corrections and sales)", self.rejections),
        ]

    # --- the loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            self.console.say()
            self.console.say("=== Sales lakehouse — queries ===")
            for i, (label, _) in enumerate(self.choices, 1):
                self.console.say(f"{i:>2}  {label}")
            self.console.say(" q  Quit")
            try:
                answer = self.console.ask("Choice: ")
                if answer.lower() in ("q", "quit", "exit"):
                    return
                if not answer.isdigit() or not 1 <= int(answer) <= len(self.choices):
                    self.console.say(f"Unknown choice {answer!r}: type a number from 1 to {len(self.choices)},"
                                     " or q to quit.")
                    continue
                self.choices[int(answer) - 1][1]()
            except Leave:
                return
            except (MissingTableError, QueryInputError) as e:
                self.console.say(str(e))
            except PySparkException as e:
                self.console.say(f"Error: {_first_lines(str(e))}")
            except Py4JJavaError as e:  # a JVM error PySpark does not name (a failed or cancelled job)
                self.console.say(f"Error: {_first_lines(str(e.java_exception.getMessage() or e.java_exception))}")

    def show(self, title: str, df: DataFrame, limit: int = ROWS_SHOWN) -> None:
        section = Section.from_df(title, df, limit + 1)
        more = len(section.rows) > limit
        section.rows = section.rows[:limit]
        if more:
            section.note = f"(first {limit} rows shown)"
        self.console.say()
        self.console.say(section.text())

    def ask_number(self, prompt: str, default: int, highest: int = 1000) -> int:
        answer = self.console.ask(f"{prompt} [{default}]: ")
        if not answer:
            return default
        if not answer.isdigit() or not 1 <= int(answer) <= highest:
            raise QueryInputError(f"Not a number from 1 to {highest}: {answer!r}.")
        return int(answer)

    def ask_table(self) -> str:
        names = ", ".join(TABLES)
        answer = self.console.ask(f"Table ({names}): ")
        self.lake.info(answer)  # unknown name → QueryInputError
        return answer

    # --- the choices -----------------------------------------------------------------------------------
    def recent_sales(self) -> None:
        n = self.ask_number("How many sales", 10)
        self.show("Recent sales", recent_sales(self.lake.table("ventes"), n), n)

    def top_clients(self) -> None:
        n = self.ask_number("How many clients", 10)
        self.show("Top clients by revenue", top_clients(self.lake.table("clients"), n), n)

    def one_client(self) -> None:
        text = self.console.ask("Client id or part of a name: ")
        found = filter_client(self.lake.table("clients"), text)
        if found.isEmpty():
            self.console.say(f"No client with id {text!r} or a name containing it.")
            return
        self.show(f"Clients matching {text!r}", found.select(*CLIENT_COLUMNS, "achat_min", "achat_max",
                                                              "nb_produits_distincts", "premier_achat"))

    def countries(self) -> None:
        self.show("Revenue by country", countries(self.lake.table("pays")))
        self.console.say("(net revenue: gross sales - refunds - cancellations)")

    def segments(self) -> None:
        self.show("Revenue by segment", segments(self.lake.table("segments")))
        self.console.say("(net revenue: gross sales - refunds - cancellations)")

    def daily_revenue(self) -> None:
        n = self.ask_number("How many days", 30, highest=100_000)
        self.show("Daily revenue", daily_revenue(self.lake.table("ventes_jour"), n), n)

    def quarantine(self) -> None:
        df = self.lake.quarantine()
        if df is None:
            self.lake.location("ventes")  # no Bronze at all: say which command creates it
            self.console.say("No quarantined record: every record so far met the contract.")
        else:
            self.show("Quarantine by reason", quarantine_summary(df))
            self.show("Quarantined records (latest per reason)", quarantine_samples(df))
        duplicates = self.lake.duplicates()
        if duplicates is None:
            self.console.say("No duplicate: no record has repeated a kept sale.")
        else:
            self.show("Duplicates (records repeating a kept sale)", duplicates_summary(duplicates))
            self.show("Latest duplicates", duplicates_samples(duplicates))

    def metrics(self) -> None:
        n = self.ask_number("How many batches", 10)
        self.show("Bronze stream: last batches", last_batches(self.lake.table("bronze_metrics"), n), n)

    def history(self) -> None:
        name = self.ask_table()
        self.lake.location(name)  # a missing table is said before anything else is asked
        self.show(f"History of {name}", self.lake.history(name))

    def time_travel(self) -> None:
        name = self.ask_table()
        self.lake.location(name)  # a missing table is said before the version is asked
        when = self.console.ask("As of version (e.g. 3) or timestamp (e.g. 2026-11-26 10:00:00): ")
        df = self.lake.as_of(name, when)
        self.console.say(f"{name} as of {when}: {df.count():,} rows")
        self.show(f"{name} as of {when}", df)

    def products(self) -> None:
        n = self.ask_number("How many products", 20)
        self.show("Revenue by product", products(self.lake.table("produits"), n), n)
        self.console.say("(net revenue: gross sales - refunds - cancellations; taux_retour: units returned per "
                         "unit sold)")

    def one_sale(self) -> None:
        """A sale as Silver holds it (status, sold, returned, net) and every correction naming it, with what
        became of it."""
        answer = self.console.ask("Sale id (vente_id): ")
        story = self.lake.sale_story(answer, datetime.now(), self.orphan_timeout_s)  # a bad id: one line
        if not story.found:
            self.console.say(f"No sale {story.vente_id!r} in Silver, and no correction or refused event names it.")
            return
        if story.sale is None:
            self.console.say(f"Sale {story.vente_id!r} is not in Silver (not received, or not counted yet); the "
                             "events naming it:")
        else:
            sale = Section(f"Sale {story.vente_id!r}", ["field", "value"],
                           [[name, _by_field(name, story.sale.get(name))] for name in SALE_FIELDS])
            self.console.say()
            self.console.say(sale.text())
        columns = ["recu_le", "type_evenement", "retour_id", "event_ts", "quantite", "montant", "motif", "outcome",
                   "raison"]
        corrections = Section(f"Corrections naming sale {story.vente_id!r}", columns,
                              [[c[k] for k in columns] for c in story.corrections],
                              empty="(no return or cancellation names this sale in Bronze)",
                              note=f"(orphan: waiting for its sale for over {duration(self.orphan_timeout_s)}, "
                                   "[analytics] orphan_timeout)"
                              if any(c["outcome"] == ORPHAN for c in story.corrections) else "")
        self.console.say()
        self.console.say(corrections.text())
        if story.other_refused:
            columns = ["recu_le", "type_evenement", "raison", "retour_id", "client_id", "quantite", "montant"]
            self.console.say()
            self.console.say(Section(f"Other events refused under sale id {story.vente_id!r}", columns,
                                     [[r.get(k) for k in columns] for r in story.other_refused]).text())

    def waiting(self) -> None:
        df = waiting_corrections(self.lake.table("corrections_en_attente"), datetime.now(), self.orphan_timeout_s)
        counts = one_row(df.agg(F.count(F.lit(1)).alias("n"), F.count_if("orphelin").alias("orphans")))
        self.show("Corrections waiting for their sale (oldest first)", df.drop("kafka_partition", "kafka_offset"))
        self.console.say(f"{counts['n']:,} waiting; {counts['orphans']:,} orphan(s): waiting for over "
                         f"{duration(self.orphan_timeout_s)} ([analytics] orphan_timeout). Silver applies one when "
                         "its sale arrives; none is dropped.")

    def rejections(self) -> None:
        n = self.ask_number("How many of the latest", 20)
        rejets = self.lake.table("rejets")
        self.show("Events Silver refused, by reason", rejections_summary(rejets))
        self.show("Events Silver refused (latest first)", latest_rejections(rejets, n), n)

    def custom_sql(self) -> None:
        views = self.lake.register_views()
        self.console.say(f"Tables: {', '.join(views) or 'none yet'}. One read-only statement, on one line.")
        query = self.console.ask("SQL> ")
        result = self.lake.run_sql(query, self.sql_max_rows, self.sql_timeout_s)
        section = Section("Query result", result.columns, [list(r) for r in result.rows])
        if result.truncated:
            section.note = f"(first {self.sql_max_rows} rows shown: [query] sql_max_rows)"
        self.console.say()
        self.console.say(section.text())


def _by_field(name: str, value: object) -> object:
    """A value of a one-row table shown as (field, value) lines: formatted as its own column would be (euros
    for money); text from the data stays text, for the table to make it safe."""
    return value if is_data_text(value) else Figure(format_value(name, value))


def _first_lines(message: str, lines: int = 1) -> str:
    """Spark's messages carry the query plan or a JVM stack trace after the explanation's line: keep that
    line."""
    kept = [line for line in message.strip().splitlines() if line.strip()][:lines]
    return "\n".join(kept)
