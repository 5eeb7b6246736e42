"""The custom SQL console is read-only by construction: every class of statement that writes, runs code or
reads outside the lakehouse's views is refused before anything runs, and what only reads the views
still works. Statements go through ``Lakehouse.run_sql``, the path the menu takes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pyspark.errors import AnalysisException, ParseException

from lakehouse.platform.paths import Paths
from lakehouse.serve.queries import Lakehouse, QueryInputError
from lakehouse.serve.sql_guard import check_analyzed
from tests.conftest import make_config
from tests.support.delta_rs import write_delta, write_range

SECRET = "root:x:0:0:secret-line"


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Lakehouse:
    root = tmp_path_factory.mktemp("sqlguard")
    paths = Paths.from_config(make_config(root / "data"))
    # The tables through delta-rs: what is tested is what the console lets Spark read of them.
    write_delta(paths.bronze, [("v1", "France", 10), ("v2", "Suisse", 20)], "vente_id STRING, pays STRING, n INT")
    write_delta(paths.silver("pays"), [("France", 1)], "pays STRING, nb_clients INT")
    write_range(root / "elsewhere", 3)  # a Delta table that is not ours
    (root / "secret.txt").write_text(SECRET + "\n")
    lake = Lakehouse(spark, paths)
    assert lake.register_views() == ["ventes", "pays"]
    lake.root = root  # type: ignore[attr-defined]
    return lake


def run(lake: Lakehouse, sql: str, max_rows: int = 50, timeout_s: float = 120):
    return lake.run_sql(sql.replace("@ROOT", str(lake.root)), max_rows, timeout_s)  # type: ignore[attr-defined]


# Statements that only read the views, in the many shapes Spark allows: each must keep working.
READING = [
    ("SELECT * FROM ventes ORDER BY vente_id", [("v1", "France", 10), ("v2", "Suisse", 20)]),
    ("  -- the top countries\n select pays from pays", [("France",)]),
    ("/* INSERT INTO x */ SELECT count(*) FROM ventes", [(2,)]),
    ("(SELECT 1)", [(1,)]),
    ("VALUES (1), (2)", [(1,), (2,)]),
    ("TABLE pays", [("France", 1)]),
    ("FROM ventes SELECT vente_id ORDER BY vente_id", [("v1",), ("v2",)]),
    ("WITH a AS (SELECT * FROM ventes) SELECT count(*) FROM a", [(2,)]),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r", [(1,), (2,), (3,)]),
    ("SELECT pays, sum(n) FROM ventes GROUP BY pays ORDER BY pays", [("France", 10), ("Suisse", 20)]),
    ("SELECT v.pays, p.nb_clients FROM ventes v JOIN pays p USING (pays)", [("France", 1)]),
    ("SELECT vente_id FROM ventes WHERE pays IN (SELECT pays FROM pays)", [("v1",)]),
    ("SELECT (SELECT max(n) FROM ventes) AS m", [(20,)]),
    ("SELECT vente_id, rank() OVER (ORDER BY n DESC) FROM ventes ORDER BY 2", [("v2", 1), ("v1", 2)]),
    ("SELECT * FROM (SELECT pays, n FROM ventes) PIVOT (sum(n) FOR pays IN ('France', 'Suisse'))", [(10, 20)]),
    ("SELECT count(*) FROM ventes LATERAL VIEW explode(array(1, 2)) t AS x", [(4,)]),
    ("SELECT count(*) FROM ventes GROUP BY CUBE(pays)", [(1,), (1,), (2,)]),
    ("SELECT vente_id FROM ventes UNION SELECT vente_id FROM ventes ORDER BY 1", [("v1",), ("v2",)]),
    ("SELECT pays FROM ventes INTERSECT SELECT pays FROM pays", [("France",)]),
    ("SELECT vente_id FROM ventes ORDER BY 1 LIMIT 1 OFFSET 1", [("v2",)]),
    ("FROM ventes |> WHERE n > 15 |> SELECT vente_id", [("v2",)]),
    ("SELECT count(*) FROM IDENTIFIER('ventes')", [(2,)]),
    ("SELECT * FROM range(2)", [(0,), (1,)]),
    ("SELECT xpath_string('<!DOCTYPE a [<!ENTITY x SYSTEM \"file://@ROOT/secret.txt\">]><a>&x;</a>', '/a')", [("",)]),
]


@pytest.mark.parametrize("sql, expected", READING, ids=[s for s, _ in READING])
def test_reading_the_views_works(lake, sql, expected) -> None:
    result = run(lake, sql)
    assert sorted(tuple(r) for r in result.rows) == sorted(expected)


# Statements that describe the views, the columns of their answer looked at, and what those hold.
DESCRIBING = [
    ("DESCRIBE ventes", ["col_name", "data_type"], [("vente_id", "string"), ("pays", "string"), ("n", "int")]),
    ("DESCRIBE TABLE pays", ["col_name", "data_type"], [("pays", "string"), ("nb_clients", "int")]),
    ("SHOW COLUMNS FROM ventes", ["col_name"], [("vente_id",), ("pays",), ("n",)]),
]


@pytest.mark.parametrize("sql, columns, expected", DESCRIBING, ids=[s for s, _, _ in DESCRIBING])
def test_describing_the_views_works(lake, sql, columns, expected) -> None:
    result = run(lake, sql)
    assert [tuple(row[c] for c in columns) for row in result.rows] == expected


def test_the_views_are_listed(lake) -> None:
    # The session's temporary views: the lakehouse's two among them (the session is shared with other tests).
    listed = run(lake, "SHOW TABLES")
    assert {("ventes", True), ("pays", True)} <= {(row["tableName"], row["isTemporary"]) for row in listed.rows}


def test_a_read_of_a_view_is_explained(lake) -> None:
    # Its plan: a scan of the Parquet files of the table behind the view, reading its three columns.
    explained = run(lake, "EXPLAIN SELECT * FROM ventes")
    assert explained.columns == ["plan"] and len(explained.rows) == 1
    plan = explained.rows[0]["plan"]
    assert re.match(r"== Physical Plan ==\nFileScan parquet \[vente_id#\d+,pays#\d+,n#\d+\] ", plan), plan
    assert "ReadSchema: struct<vente_id:string,pays:string,n:int>" in plan


# Every class that writes, runs code, changes the session or reads outside the views, with the reason given.
REFUSED = [
    # writes into tables, in every form
    ("INSERT INTO pays VALUES ('X', 1)", "INSERT writes into a table"),
    ("FROM pays INSERT INTO pays SELECT *", "INSERT writes into a table"),
    ("WITH a AS (SELECT * FROM pays) INSERT INTO pays SELECT * FROM a", "INSERT writes into a table"),
    ("INSERT OVERWRITE TABLE pays SELECT * FROM pays", "INSERT writes into a table"),
    ("DELETE FROM ventes", "DeleteFromTable is not a query"),
    ("UPDATE pays SET nb_clients = 0", "UpdateTable is not a query"),
    ("MERGE INTO pays USING pays s ON true WHEN MATCHED THEN DELETE", "MergeIntoTable is not a query"),
    ("TRUNCATE TABLE pays", "is not a query"),
    # writes files
    ("FROM ventes INSERT OVERWRITE LOCAL DIRECTORY '@ROOT/out1' USING csv SELECT *",
     "INSERT ... DIRECTORY writes files"),
    ("WITH a AS (SELECT 1) INSERT OVERWRITE DIRECTORY '@ROOT/out2' USING csv SELECT * FROM a",
     "INSERT ... DIRECTORY writes files"),
    ("INSERT OVERWRITE LOCAL DIRECTORY '@ROOT/out3' USING parquet SELECT * FROM ventes",
     "INSERT ... DIRECTORY writes files"),
    ("INSERT OVERWRITE DIRECTORY USING csv OPTIONS (path '@ROOT/out4') SELECT 1", "INSERT ... DIRECTORY writes files"),
    # creates, drops, changes
    ("CREATE TABLE x AS SELECT 1", "is not a query"), ("DROP TABLE pays", "is not a query"),
    ("CREATE TEMPORARY VIEW v AS SELECT * FROM ventes", "is not a query"),
    ("CREATE OR REPLACE TEMPORARY VIEW pays AS SELECT 1", "is not a query"),
    ("ALTER TABLE pays ADD COLUMNS (c INT)", "is not a query"),
    ("OPTIMIZE pays", "is not a query"), ("VACUUM pays", "is not a query"),
    ("DESCRIBE HISTORY pays", "is not a query"), ("SHOW CREATE TABLE pays", "is not a query"),
    ("CACHE TABLE pays", "is not a query"), ("UNCACHE TABLE pays", "is not a query"),
    ("REFRESH TABLE pays", "is not a query"), ("CLEAR CACHE", "is not a query"),
    # the session and the JVM
    ("SET spark.sql.runSQLOnFiles = true", "is not a query"), ("RESET", "is not a query"),
    ("ADD JAR @ROOT/x.jar", "is not a query"), ("ADD FILE @ROOT/secret.txt", "is not a query"),
    ("CREATE TEMPORARY FUNCTION f AS 'java.lang.System'", "is not a query"),
    ("DECLARE VARIABLE x INT DEFAULT 1", "is not a query"),
    ("USE other", "is not a query"),
    # code that runs outside the query
    ("SELECT reflect('java.lang.System', 'getenv', 'HOME')", "reflect() calls Java methods"),
    ("SELECT java_method('java.lang.System', 'exit', 3)", "java_method() calls Java methods"),
    ("SELECT try_reflect('java.lang.Thread', 'sleep', 100000L)", "try_reflect() calls Java methods"),
    ("SELECT system.builtin.REFLECT('java.lang.System', 'setProperty', 'a', 'b')", "reflect() calls Java methods"),
    ("SELECT * FROM ventes WHERE n > (SELECT java_method('java.lang.Math', 'abs', -1))",
     "java_method() calls Java methods"),
    ("SELECT TRANSFORM(vente_id) USING 'touch @ROOT/pwned' AS (x) FROM ventes", "TRANSFORM ... USING runs a program"),
    ("EXECUTE IMMEDIATE 'DROP TABLE IF EXISTS pays'", "EXECUTE IMMEDIATE runs another statement"),
    ("BEGIN SELECT 1; END", "a SQL script is not one query"),
    ("EXPLAIN INSERT INTO pays SELECT * FROM pays", "INSERT writes into a table"),
    ("EXPLAIN FROM ventes INSERT OVERWRITE LOCAL DIRECTORY '@ROOT/out5' USING csv SELECT *",
     "INSERT ... DIRECTORY writes files"),
    # describing what is not ours
    ("DESCRIBE delta.`@ROOT/elsewhere`", "DESCRIBE and SHOW COLUMNS take one of the tables"),
    ("SHOW COLUMNS FROM parquet.`@ROOT/elsewhere`", "DESCRIBE and SHOW COLUMNS take one of the tables"),
    ("SELECT * FROM ventes VERSION AS OF 0", "time travel has its own choice"),
]


@pytest.mark.parametrize("sql, reason", REFUSED, ids=[s for s, _ in REFUSED])
def test_what_does_not_only_read_is_refused_before_it_runs(lake, sql, reason) -> None:
    with pytest.raises(QueryInputError, match="^Only read-only queries over the tables are allowed: .*"
                       + reason.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        run(lake, sql)
    root: Path = lake.root  # type: ignore[attr-defined]
    assert not any((root / n).exists() for n in ("out1", "out2", "out3", "out4", "out5", "pwned"))
    assert sorted(p.name for p in root.iterdir()) == ["data", "elsewhere", "secret.txt"]
    assert run(lake, "SELECT count(*) FROM pays").rows[0][0] == 1  # the views are untouched


# Reads outside the views: any file, any other Delta table, by path or through the catalog.
OUTSIDE = ["SELECT * FROM text.`@ROOT/secret.txt`", "SELECT * FROM binaryFile.`@ROOT/secret.txt`",
           "SELECT * FROM csv.`@ROOT/secret.txt`", "SELECT * FROM json.`/etc/hostname`",
           "SELECT * FROM delta.`@ROOT/elsewhere`", "SELECT * FROM parquet.`@ROOT/elsewhere`",
           "SELECT * FROM IDENTIFIER('delta.`@ROOT/elsewhere`')",
           "SELECT (SELECT count(*) FROM delta.`@ROOT/elsewhere`)",
           "SELECT * FROM ventes WHERE EXISTS (SELECT * FROM text.`@ROOT/secret.txt`)",
           "SELECT * FROM spark_catalog.default.anything", "SELECT * FROM global_temp.anything"]


@pytest.mark.parametrize("sql", OUTSIDE)
def test_reads_outside_the_views_are_refused(lake, sql) -> None:
    with pytest.raises((QueryInputError, AnalysisException)) as refused:
        run(lake, sql)
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("sql", ["SELECT * FROM text.`@ROOT/secret.txt`", "SELECT * FROM delta.`@ROOT/elsewhere`",
                                 "SELECT (SELECT count(*) FROM parquet.`@ROOT/elsewhere`) AS c"])
def test_the_plan_check_alone_refuses_path_reads(lake, spark, sql) -> None:
    """With Spark's own path reads turned on, the analyzed-plan check still refuses them."""
    assert spark.conf.get("spark.sql.runSQLOnFiles") == "true"  # the guard put the session's value back
    plan = spark.sql(sql.replace("@ROOT", str(lake.root)))._jdf.queryExecution().analyzed()  # type: ignore
    with pytest.raises(QueryInputError, match="which is not one of the tables"):
        check_analyzed(plan, {"ventes", "pays"})


def test_a_reflection_expression_is_refused_after_analysis_too(spark) -> None:
    plan = spark.sql("SELECT reflect('java.lang.String', 'valueOf', 1)")._jdf.queryExecution().analyzed()
    with pytest.raises(QueryInputError, match="CallMethodViaReflection reaches outside the query"):
        check_analyzed(plan, set())


@pytest.mark.parametrize("sql", ["SELECT 1; SELECT 2", "SELECT 1; DROP TABLE pays", "SELEC 1"])
def test_one_statement_only(lake, sql) -> None:
    with pytest.raises(ParseException):
        run(lake, sql)


def test_blank_statement_says_what_to_type(lake) -> None:
    with pytest.raises(QueryInputError, match="Type a SQL query"):
        run(lake, "  ")


def test_rows_are_capped(lake) -> None:
    result = run(lake, "SELECT * FROM range(1000000)", max_rows=7)
    assert [r[0] for r in result.rows] == list(range(7)) and result.truncated
    assert not run(lake, "SELECT * FROM range(7)", max_rows=7).truncated


def test_a_long_statement_is_cancelled_and_spark_goes_on(lake, spark) -> None:
    with pytest.raises(QueryInputError, match=r"ran longer than 2 s and was cancelled \(\[query\] sql_timeout\)"):
        run(lake, "SELECT count(*) FROM range(100000000000) a", timeout_s=2)
    assert spark.sparkContext.statusTracker().getActiveJobsIds() == []
    assert run(lake, "SELECT count(*) FROM ventes").rows[0][0] == 2  # the session still works, no job group left
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None


def test_a_value_python_cannot_hold_is_one_clean_error(lake) -> None:
    with pytest.raises(QueryInputError, match="cannot be shown .* cast that column to STRING"):
        run(lake, "SELECT DATE'0001-01-01' - 1")


def test_environment_untouched(lake) -> None:
    """What reflection would have reached: the process environment and system properties stay as they were."""
    before = dict(os.environ)
    for sql in ("SELECT java_method('java.lang.System', 'setProperty', 'lakehouse.pwned', 'yes')",
                "SELECT reflect('java.lang.System', 'exit', 0)"):
        with pytest.raises(QueryInputError):
            run(lake, sql)
    assert lake.spark.sparkContext._jvm.java.lang.System.getProperty("lakehouse.pwned") is None
    assert dict(os.environ) == before
