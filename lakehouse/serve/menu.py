"""The interactive query menu: numbered choices over the lakehouse's tables, driven by any text stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TextIO

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame

from lakehouse.serve.queries import (CLIENT_COLUMNS, TABLES, Lakehouse, MissingTableError, QueryInputError,
                                     countries, daily_revenue, duplicates_samples, duplicates_summary, filter_client,
                                     last_batches, quarantine_samples, quarantine_summary, recent_sales, segments,
                                     top_clients)
from lakehouse.serve.report import Section
from lakehouse.serve.safe_text import for_terminal

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

    def __init__(self, lake: Lakehouse, console: Console, sql_max_rows: int = 100, sql_timeout_s: float = 60):
        self.lake, self.console = lake, console
        self.sql_max_rows, self.sql_timeout_s = sql_max_rows, sql_timeout_s
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

    def segments(self) -> None:
        self.show("Revenue by segment", segments(self.lake.table("segments")))

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


def _first_lines(message: str, lines: int = 1) -> str:
    """Spark's messages carry the query plan or a JVM stack trace after the explanation's line: keep that
    line."""
    kept = [line for line in message.strip().splitlines() if line.strip()][:lines]
    return "\n".join(kept)
