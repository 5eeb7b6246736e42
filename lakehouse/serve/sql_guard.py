"""Read-only SQL over the lakehouse's views, by construction: a statement runs only if its plans read the
registered views and nothing else.

Three fences, each an allowlist, so that a statement kind Spark adds later is refused until looked at:

1. The parsed plan. Its root is a query, or EXPLAIN of a query, or DESCRIBE / SHOW COLUMNS of a view, or
   SHOW TABLES. Every node of a query (subqueries in expressions included) is a query operator: no
   command, no INSERT (into a table or a directory), no TRANSFORM script, no EXECUTE IMMEDIATE. Calls
   to Java reflection are refused by name. Nothing has run yet: Spark executes commands as soon as
   ``spark.sql`` sees them, so this fence stands before it.
2. The analyzed plan (``spark.sql`` only analyzes a query). Every relation it reads is one of the
   registered temporary views (whose own plans are ours); any other relation — a file read with
   ``format.`path```, a Delta table by path, a catalog table — is refused, as are expressions that
   reach outside the query (reflection, UDFs).
3. The run: at most ``max_rows`` rows are fetched, and the statement's Spark jobs are cancelled after
   ``timeout_s`` seconds.

``spark.sql.runSQLOnFiles`` is also off while a statement is parsed and analyzed.
"""

from __future__ import annotations

import re
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from pyspark.sql import DataFrame, Row, SparkSession

from lakehouse.platform.spark import session_jvm


class QueryInputError(ValueError):
    """A user's answer or statement that cannot be run; the message says why, in one line."""


# Query operators of a parsed plan (before names are resolved).
PARSED_OPERATORS = frozenset({
    "Project", "Filter", "Aggregate", "Join", "LateralJoin", "Sort", "GlobalLimit", "LocalLimit", "Offset",
    "Tail", "Union", "Intersect", "Except", "Distinct", "Deduplicate", "SubqueryAlias", "Window",
    "Generate", "Expand", "Sample", "Range", "LocalRelation", "OneRowRelation", "Pivot", "Unpivot",
    "UnresolvedRelation", "UnresolvedWith", "UnresolvedHint", "UnresolvedInlineTable",
    "UnresolvedTableValuedFunction", "UnresolvedSubqueryColumnAliases", "WithWindowDefinition",
    "CTERelationDef", "CTERelationRef", "UnionLoop", "UnionLoopRef", "Repartition",
    "RepartitionByExpression", "RebalancePartitions", "PlanWithUnresolvedIdentifier", "PipeOperator",
})
# Query operators of an analyzed plan. Leaves other than these (file, table and catalog relations) are
# reads outside the views.
ANALYZED_OPERATORS = frozenset({
    "Project", "Filter", "Aggregate", "Join", "LateralJoin", "Sort", "GlobalLimit", "LocalLimit", "Offset",
    "Tail", "Union", "Intersect", "Except", "Distinct", "Deduplicate", "SubqueryAlias", "Window",
    "WindowGroupLimit", "Generate", "Expand", "Sample", "Range", "LocalRelation", "OneRowRelation",
    "EmptyRelation", "WithCTE", "CTERelationDef", "CTERelationRef", "UnionLoop", "UnionLoopRef",
    "Repartition", "RepartitionByExpression", "RebalancePartitions", "ResolvedHint", "Subquery", "PipeOperator",
})
# Statements that only describe the views.
DESCRIBING = frozenset({"DescribeRelation", "DescribeColumn", "ShowColumns"})
LISTING = frozenset({"ShowTables"})
# Functions that call into the JVM, refused by name (and again by expression class after analysis).
REFLECTION_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect"})
_OUTSIDE_EXPRESSION = re.compile(r"Reflect|UDF|UDAF|UDTF|Aggregator$")

FIRST_LINE_CHARS = 200


@contextmanager
def _no_sql_on_files(spark: SparkSession) -> Iterator[None]:
    """Spark's ``format.`path``` reads off while a statement is parsed and analyzed (the plan check
    refuses them too); the session's setting is put back after, for the rest of the program."""
    before = spark.conf.get("spark.sql.runSQLOnFiles")
    spark.conf.set("spark.sql.runSQLOnFiles", "false")
    try:
        yield
    finally:
        if before is None:  # not set and no default (Spark has one): unset again
            spark.conf.unset("spark.sql.runSQLOnFiles")
        else:
            spark.conf.set("spark.sql.runSQLOnFiles", before)


def _seq(scala_seq: Any) -> list[Any]:
    return [scala_seq.apply(i) for i in range(scala_seq.size())]


def _name(node: Any) -> str:
    return node.getClass().getSimpleName()


def _walk(roots: list[Any], below: Callable[[Any], list[Any]]) -> list[Any]:
    """Every tree node reachable from ``roots`` through ``below``."""
    found, todo = [], list(roots)
    while todo:
        node = todo.pop()
        found.append(node)
        todo += below(node)
    return found


def _plan_children(node: Any) -> list[Any]:
    """A plan node's inputs: its children and the plans of subqueries inside its expressions."""
    return _seq(node.children()) + _seq(node.subqueries())


def _nodes(plan: Any) -> list[Any]:
    """Every node of ``plan``, subqueries inside expressions included."""
    return _walk([plan], _plan_children)


def _expressions(node: Any) -> list[Any]:
    """Every expression of one plan node, nested ones included."""
    return _walk(_seq(node.expressions()), lambda e: _seq(e.children()))


# Why a statement kind is refused, in the user's words (others: "<kind> is not a query").
REFUSED_KINDS = {
    "InsertIntoDir": "INSERT ... DIRECTORY writes files",
    "InsertIntoStatement": "INSERT writes into a table",
    "ScriptTransformation": "TRANSFORM ... USING runs a program",
    "UnresolvedExecuteImmediate": "EXECUTE IMMEDIATE runs another statement",
    "CompoundBody": "a SQL script is not one query",
    "RelationTimeTravel": "time travel has its own choice in the menu (10)",
}


def _refuse(what: str) -> QueryInputError:
    return QueryInputError(f"Only read-only queries over the tables are allowed: {what}.")


def _check_parsed_query(plan: Any) -> None:
    for node in _nodes(plan):
        name = _name(node)
        if name not in PARSED_OPERATORS:
            raise _refuse(REFUSED_KINDS.get(name, f"{name} is not a query"))
        for expression in _expressions(node):
            if _name(expression) == "UnresolvedFunction":
                function = _seq(expression.nameParts())[-1].lower()
                if function in REFLECTION_FUNCTIONS:
                    raise _refuse(f"{function}() calls Java methods")


def _view_name(node: Any) -> str | None:
    """The name of a temporary view node, None for a permanent view."""
    if not node.isTempView():
        return None
    return node.desc().identifier().table()


def check_analyzed(plan: Any, views: set[str]) -> None:
    """Refuse an analyzed plan that reads anything but the registered ``views`` or calls out of the query."""
    todo = [plan]
    while todo:
        node = todo.pop()
        name = _name(node)
        if name == "View":
            view = _view_name(node)
            if view is None or view not in views:
                raise _refuse(f"it reads the view {node.desc().identifier().unquotedString()}, which is not one"
                              " of the tables")
            continue  # a registered view's own plan is the lakehouse's, not the statement's
        if name not in ANALYZED_OPERATORS:
            if node.children().size():
                raise _refuse(f"{name} is not a query operator")
            raise _refuse(f"it reads {_first_line(node.simpleString(1))}, which is not one of the tables")
        for expression in _expressions(node):
            if _OUTSIDE_EXPRESSION.search(_name(expression)):
                raise _refuse(f"{_name(expression)} reaches outside the query")
        todo += _plan_children(node)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= FIRST_LINE_CHARS else line[:FIRST_LINE_CHARS] + "..."


def _parse(spark: SparkSession, sql: str) -> Any:
    return spark._jsparkSession.sessionState().sqlParser().parsePlan(sql)  # ParseException if not SQL


def read_only_sql(spark: SparkSession, sql: str, views: set[str]) -> DataFrame:
    """``sql`` as a DataFrame, not run yet, if it is one statement that only reads ``views`` (fences 1 and
    2); ``QueryInputError`` otherwise. Spark's own errors (not SQL, unknown column...) are raised as they
    come."""
    if not sql.strip():
        raise QueryInputError("Type a SQL query, e.g. SELECT pays, chiffre_affaires FROM pays")
    with _no_sql_on_files(spark):
        return _read_only_sql(spark, sql, views)


def _read_only_sql(spark: SparkSession, sql: str, views: set[str]) -> DataFrame:
    plan = _parse(spark, sql)
    name = _name(plan)
    if name in DESCRIBING:
        relation = plan.children().apply(0) if plan.children().size() else None
        parts = _seq(relation.multipartIdentifier()) if relation is not None \
            and _name(relation) == "UnresolvedTableOrView" else []
        if len(parts) != 1 or parts[0].lower() not in views:
            raise _refuse("DESCRIBE and SHOW COLUMNS take one of the tables")
    elif name == "ExplainCommand":
        _check_parsed_query(plan.logicalPlan())  # described, never run
    elif name not in LISTING:
        _check_parsed_query(plan)
        df = spark.sql(sql)  # a query: analyzed here, run only when rows are fetched
        check_analyzed(df._jdf.queryExecution().analyzed(), views)
        return df
    return spark.sql(sql)  # DESCRIBE, SHOW, EXPLAIN: they describe, and run now


_TOO_LONG = ("integer overflow", "exceeds the array size limit", "Cannot grow BufferHolder",
             "COLLECTION_SIZE_LIMIT_EXCEEDED", "Requested array size exceeds VM limit")


def _java_chain(error: BaseException) -> list[tuple[str, str]]:
    """(class name, message) of the JVM exception behind ``error`` and of each of its causes."""
    java = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
    chain: list[tuple[str, str]] = []
    while java is not None and len(chain) < 20:
        try:
            chain.append((str(java.getClass().getName()), str(java.getMessage() or "")))
            java = java.getCause()
        except Exception:  # noqa: BLE001 - a JVM object py4j cannot read: what was read is enough
            break
    return chain or [(type(error).__name__, str(error))]


def too_large_message(spark: SparkSession, error: BaseException) -> str | None:
    """One line saying what was too large and the limit, when a statement failed because a value it builds
    (``sequence``, ``repeat``, ``explode``...) outgrew Spark's limits or the JVM's memory; None otherwise."""
    chain = _java_chain(error)
    if any("OutOfMemoryError" in name or "Java heap space" in message or "Boxed" in message
           for name, message in chain):
        heap_mb = session_jvm(spark).java.lang.Runtime.getRuntime().maxMemory() // (1024 * 1024)
        return (f"The statement builds values too large for the memory of this session (at most {heap_mb:,} "
                "MB, [spark] driver_memory): it ran out of memory. Build smaller arrays or strings "
                "(sequence, repeat, explode...), or filter before building them.")
    for _name, message in chain:
        found = next((m for m in _TOO_LONG if m in message), None)
        if found is not None:
            # 2,147,483,632: Spark's ByteArrayMethods.MAX_ROUNDED_ARRAY_LENGTH.
            return (f"The statement builds a value too large for Spark ({found}): an array or a string holds at "
                    "most 2,147,483,632 elements or bytes. Build smaller ones (sequence, repeat...).")
    return None


@dataclass(frozen=True)
class SqlResult:
    columns: list[str]
    rows: list[Row]
    truncated: bool  # more than ``max_rows`` rows


def fetch(spark: SparkSession, df: DataFrame, max_rows: int, timeout_s: float) -> SqlResult:
    """At most ``max_rows`` rows of ``df``; its Spark jobs are cancelled after ``timeout_s`` seconds
    (``QueryInputError`` then)."""
    sc = spark.sparkContext
    group = f"lakehouse-sql-{uuid.uuid4().hex}"
    cancelled = threading.Event()

    def cancel() -> None:
        cancelled.set()
        sc.cancelJobGroup(group)

    sc.setJobGroup(group, "read-only SQL", interruptOnCancel=True)
    timer = threading.Timer(timeout_s, cancel)
    timer.daemon = True
    timer.start()
    try:
        rows = df.limit(max_rows + 1).collect()
    except (ValueError, OverflowError) as e:  # a value Python's types cannot hold, e.g. a year-0 date
        raise QueryInputError(f"A value of the result cannot be shown ({e}): cast that column to STRING "
                              "in the query.") from e
    except Exception as e:  # the cancelled job surfaces as a JVM error of its own kind
        if cancelled.is_set():
            raise QueryInputError(f"The statement ran longer than {timeout_s:g} s and was cancelled "
                                  "([query] sql_timeout).") from e
        too_large = too_large_message(spark, e)
        if too_large is not None:
            raise QueryInputError(too_large) from e
        raise
    finally:
        timer.cancel()
        # The job group's three local properties unset (PySpark's setLocalProperty is typed for strings only).
        sc._jsc.clearJobGroup()
    return SqlResult(df.columns, rows[:max_rows], len(rows) > max_rows)
