"""query_utils.py run as users run it, in its own process (Spark's JVM started by the script): the batch
report's refusal when tables are missing, and the menu driven through stdin on the small lake of
tests/integration/test_query_utils.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from lakehouse.platform.config import PROJECT_DIR
from tests.conftest import make_config, write_config
from tests.integration import test_query_utils as small_lake

lake_paths = small_lake.lake_paths  # the fixture: the same small lake, built for this file


def run_script(args: list[str], config: Path, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "query_utils.py", *args, "--config", str(config)], cwd=PROJECT_DIR,
                          input=stdin, capture_output=True, text=True, timeout=300)


def test_batch_with_missing_tables_says_which_and_how(tmp_path) -> None:
    config = write_config(tmp_path / "config.ini", make_config(tmp_path / "empty"))
    done = run_script(["--batch"], config)
    assert done.returncode == 3
    assert f"Table ventes not found at {tmp_path / 'empty' / 'delta' / 'bronze' / 'ventes'}: run " \
           "spark_streaming_delta.py" in done.stderr
    assert "Table ventes_jour not found" in done.stderr and "run streaming_silver.py first" in done.stderr
    assert done.stdout == ""


MENU_SESSION = [
    ("1\n\n", [r"Recent sales\n=+", r"2024-12-13 09:00:00\s+v6\s+Dan SA", r"v3\s+Bob SARL.*40\.00 €\s+yes"]),
    ("2\n2\n", [r"Top clients by revenue", r"C4\s+Dan SA.*500\.00 €",
                r"C3\s+Chloé.*499\.99 €\s+499\.99 €\s+Standard\s+no"]),
    ("3\nbob\n", [r"Clients matching 'bob'", r"C2\s+Bob SARL\s+Belgique\s+B2B\s+2\s+100\.00 €"]),
    ("3\nnobody\n", [r"No client with id 'nobody' or a name containing it\."]),
    ("4\n", [r"Revenue by country", r"France\s+2\s+159\.99 €"]),
    ("5\n", [r"Revenue by segment", r"B2C\s+2\s+159\.99 €\s+80\.00 €\s+2\s+1"]),
    ("6\n\n", [r"Daily revenue", r"2024-12-12\s+3\s+659\.98 €"]),
    ("7\n", [r"Quarantine by reason", r"wrong_type\s+2", r"vente 9 client=C9"]),
    ("8\n1\n", [r"Bronze stream: last batches", r"\n\s*1\s+2026-11-26 10:00:01"]),
    ("9\nventes\n", [r"History of ventes", r"\n\s*1\s+\S+ \S+\s+WRITE\s+4\s", r"\n\s*0\s+\S+ \S+\s+WRITE\s+2\s"]),
    ("10\nventes\n0\n", [r"ventes as of 0: 2 rows"]),
    ("10\nventes\n1999-01-01\n", [r"Error: .*(before the earliest|timestamp)"]),
    ("10\nventes\nlast week\n", [r"Not a version or a timestamp: 'last week'"]),
    # A table not created yet is said at once, before any version is asked (the next line is a menu choice).
    ("10\nventes_duplicates\n", [r"^Table \([^)]*\): Table ventes_duplicates not found at \S+: run "
                                  r"spark_streaming_delta\.py \(it creates the table at the first duplicate\) "
                                  r"first\.\n\n=== Sales"]),
    ("9\nventes_duplicates\n", [r"^Table \([^)]*\): Table ventes_duplicates not found"]),
    ("9\nnope\n", [r"Unknown table 'nope': choose one of ventes, ventes_quarantine"]),
    ("11\nSELECT pays, nb_clients FROM pays WHERE pays = 'Suisse'\n", [r"Query result", r"Suisse\s+1\n"]),
    ("11\nSELECT nope FROM pays\n", [r"Error: .*nope"]),
    ("11\nDELETE FROM ventes\n",
     [r"Only read-only queries over the tables are allowed: DeleteFromTable is not a query\."]),
    ("11\nFROM ventes INSERT OVERWRITE LOCAL DIRECTORY '@VICTIM' USING csv SELECT *\n",
     [r"allowed: INSERT \.\.\. DIRECTORY writes files\."]),
    ("11\nSELECT java_method('java.lang.System', 'exit', 3)\n", [r"allowed: java_method\(\) calls Java methods\."]),
    ("11\nSELECT * FROM text.`/etc/passwd`\n", [r"Error: \[TABLE_OR_VIEW_NOT_FOUND\] The table or view `text`"]),
    ("11\nSELECT * FROM range(1000)\n", [r"\n\s*99\n\(first 100 rows shown: \[query\] sql_max_rows\)"]),
    # Values too large (issue #32): one clear line each, what and the limit; no Spark ERROR line, no Java name.
    ("11\nSELECT repeat(client_nom, 2e9) FROM clients\n",
     [r"SQL> The statement builds a value too large for Spark \(integer overflow\): an array or a string holds at "
      r"most 2,147,483,632 elements or bytes\. Build smaller ones \(sequence, repeat\.\.\.\)\.\n\n=== Sales"]),
    ("11\nSELECT explode(sequence(1, 100000000))\n",
     [r"SQL> The statement builds values too large for the memory of this session \(at most [\d,]+ MB, \[spark\] "
      r"driver_memory\): it ran out of memory\. Build smaller arrays or strings \(sequence, repeat, explode\.\.\.\), "
      r"or filter before building them\.\n\n=== Sales"]),
    # 1e8 is a DOUBLE: Spark 4.2 refuses the statement at analysis, in one line (no plan under it).
    ("11\nSELECT explode(sequence(1, 1e8))\n", [r"SQL> Error: \[DATATYPE_MISMATCH[^\n]*\n\n=== Sales"]),
    ("4\n", [r"Revenue by country", r"France\s+2\s+159\.99 €"]),  # the session still answers
    # Issue 31's choices: products, one sale with its corrections (a valid id, an unknown one, hostile ones),
    # the corrections waiting and the events refused (none here).
    ("12\n\n", [r"Revenue by product\n=+", r"Table\s+P3\s+Maison\s+3\s+999\.99 €\s+5\s+0\s+999\.99 €\s+0\.00 €"]),
    ("13\nv4\n", [r"Sale 'v4'\n=+", r"statut\s+vendue\n", r"montant_net\s+499\.99 €\n", r"\ncorrections\s+—\n",
                   r"\(no return or cancellation names this sale in Bronze\)"]),
    ("13\nnobody\n", [r"^Sale id \(vente_id\): No sale 'nobody' in Silver, and no correction or refused event names "
                       r"it\.\n\n=== Sales"]),
    ("13\n\x1b[2J\x1b]0;T\x07v1\n", [r"^Sale id \(vente_id\): Not a sale id: '\\x1b\[2J\\x1b\]0;T\\x07v1' holds a "
                                    r"control character; a sale id holds none\.\n\n=== Sales"]),
    ("13\n" + "V" * 65 + "\n", [r"^Sale id \(vente_id\): Not a sale id: 'V{64}'… has 65 characters; a sale id has "
                                r"at most 64\.\n\n=== Sales"]),
    ("13\n\n", [r"^Sale id \(vente_id\): Type a sale id \(vente_id\), e\.g\. V000042\.\n\n=== Sales"]),
    ("14\n", [r"Corrections waiting for their sale \(oldest first\)\n=+\n\(no rows\)",
              r"0 waiting; 0 orphan\(s\): waiting for over 1 h"]),
    ("15\n\n", [r"Events Silver refused, by reason\n=+\n\(no rows\)"]),
    ("abc\n", [r"Unknown choice 'abc': type a number from 1 to 15, or q to quit\."]),
    ("2\nmany\n", [r"Not a number from 1 to 1000: 'many'\."]),
]


def test_menu_through_stdin(lake_paths, tmp_path) -> None:
    config = write_config(tmp_path / "config.ini", make_config(lake_paths.data_dir))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("still here")
    stdin = "".join(i for i, _ in MENU_SESSION).replace("@VICTIM", str(victim)) + "q\n"
    done = run_script([], config, stdin=stdin)
    assert done.returncode == 0, done.stderr
    # Errors are told in one line on stdout: no JVM stack trace, no Python traceback on the terminal.
    assert "\tat org.apache" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not re.search(r"^\d\d/\d\d/\d\d \S+ ERROR |^java\.", done.stderr, re.M), done.stderr[-3000:]
    assert [p.name for p in victim.iterdir()] == ["keep.txt"]
    # Each answer comes between two menus: split the output on the prompt.
    answers = done.stdout.split("Choice: ")[1:]
    assert len(answers) == len(MENU_SESSION) + 1
    for (typed, patterns), answer in zip(MENU_SESSION, answers):
        for pattern in patterns:
            assert re.search(pattern, answer), f"{typed!r}: {pattern!r} not in:\n{answer}"
    assert answers[-1].strip() == "Bye."
