"""The docs stay true to the code: every message TROUBLESHOOTING quotes is one the code prints, every setting
a document names exists, CONTRACT lists exactly the reasons the code gives, and every command README and
QUICKSTART (and OPERATIONS and SECURITY) give is exercised by a test or by CI."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from lakehouse.ingest.contract import REASONS
from lakehouse.platform.config import PROJECT_DIR, SCHEMA
from lakehouse.silver.corrections import REJECTION_REASONS

DOCS = PROJECT_DIR / "docs"
PLACEHOLDER = re.compile(r"<[^<>]*>")
CODE_FILES = [*PROJECT_DIR.glob("*.py"), *(PROJECT_DIR / "lakehouse").rglob("*.py")]


@functools.cache  # parsing every code file is slow: once per test process, not once per message
def code_pieces() -> tuple[str, ...]:
    """The constant text of every string the code builds, cut where a value is interpolated
    (f-string fields, %-style fields)."""
    pieces = []
    for path in CODE_FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                pieces += re.split(r"%[-.\d]*[sdgfr]", node.value)
            elif isinstance(node, ast.JoinedStr):
                pieces += [v.value for v in node.values if isinstance(v, ast.Constant)]
    return tuple(pieces)


def quoted_messages(doc: Path) -> list[str]:
    """The lines of the ```text blocks: the messages users see."""
    return [line.strip() for block in re.findall(r"```text\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
            for line in block.splitlines() if line.strip()]


def fragment_in_code(fragment: str, pieces: tuple[str, ...]) -> bool:
    """A fixed part of a quoted message is in one piece of code text; a part built from two pieces (a
    check's name and detail, a message and a shared hint) is checked sentence by sentence."""
    if any(fragment in p for p in pieces):
        return True
    parts = [p.strip(" .:") for p in re.split(r"\)\. |: |; ", fragment)]
    return all(len(p) < 4 or any(p in piece for piece in pieces) for p in parts)


MESSAGES = quoted_messages(DOCS / "TROUBLESHOOTING.md")


def test_troubleshooting_quotes_messages() -> None:
    assert len(MESSAGES) >= 20


@pytest.mark.parametrize("message", MESSAGES)
def test_quoted_message_is_printed_by_the_code(message: str) -> None:
    pieces = code_pieces()
    text = message.removeprefix("❌ ").removeprefix("✅ ")
    fragments = [f for f in PLACEHOLDER.split(text) if len(f.strip(" .:()")) >= 4]
    missing = [f for f in fragments if not fragment_in_code(f, pieces)]
    assert not missing, f"not in the code: {missing}"


def test_a_made_up_message_is_caught() -> None:
    pieces = code_pieces()
    assert not fragment_in_code("Kafka broker at localhost is on holiday", pieces)


# --- settings ------------------------------------------------------------------------------------------

SETTING = re.compile(r"\[([a-z_]+)\]\s+`?([a-z_]+)\b")  # "[kafka] topic", "`[streaming]\nbroker_timeout`"


def named_settings(text: str) -> list[tuple[str, str]]:
    """Every ``[section] key`` a document names (a key may start the next line)."""
    return [(m.group(1), m.group(2)) for m in SETTING.finditer(text)]


def test_named_settings_are_found_in_prose() -> None:
    text = "waits `[streaming]\nbroker_timeout` (30 s); see [kafka] retention and `[producer]` settings"
    assert named_settings(text) == [("streaming", "broker_timeout"), ("kafka", "retention")]


# Every document users or contributors read: README, CONTRIBUTING, bench/README and all of docs/.
USER_DOCS = ["README.md", "CONTRIBUTING.md", "bench/README.md", *(f"docs/{p.name}" for p in sorted(DOCS.glob("*.md")))]


def test_the_user_docs_exist() -> None:
    missing = [doc for doc in USER_DOCS if not (PROJECT_DIR / doc).is_file()]
    assert not missing


@pytest.mark.parametrize("doc", USER_DOCS)
def test_every_named_setting_exists(doc: str) -> None:
    named = named_settings((PROJECT_DIR / doc).read_text(encoding="utf-8"))
    unknown = sorted({f"[{s}] {k}" for s, k in named if k not in SCHEMA.get(s, {})})
    assert not unknown, f"{doc} names settings config.py does not have: {unknown}"


# --- the contract's reasons ------------------------------------------------------------------------------

def documented_reasons(heading: str, contract: Path = DOCS / "CONTRACT.md") -> list[str]:
    """The reasons of the table under ``## heading`` in CONTRACT.md, in their order (``name:<name>`` → ``name``)."""
    text = contract.read_text(encoding="utf-8")
    assert f"\n## {heading}\n" in text, f"{contract.name} has no section {heading!r}"
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z0-9_]+)(?::<name>)?` \|", section, re.M)


def test_contract_lists_every_quarantine_reason_in_the_order_they_are_given() -> None:
    assert documented_reasons("Why a record is quarantined") == list(REASONS)


def test_contract_lists_every_reason_silver_refuses_an_event_for() -> None:
    assert documented_reasons("Why Silver refuses an event") == list(REJECTION_REASONS)


def test_a_reason_missing_from_the_contract_is_caught(tmp_path: Path) -> None:
    text = (DOCS / "CONTRACT.md").read_text(encoding="utf-8")
    (tmp_path / "CONTRACT.md").write_text(text.replace("| `stale_event` |", "| stale event |"), encoding="utf-8")
    found = documented_reasons("Why a record is quarantined", tmp_path / "CONTRACT.md")
    assert found == [r for r in REASONS if r != "stale_event"]


# --- commands --------------------------------------------------------------------------------------------

# Each command the docs give → where it runs (a test, or CI's .ci/run). Keep in step with the docs.
EXERCISED = {
    "make demo": "tests/system/test_demo.py::test_demo_runs_stops_cleanly_and_resumes (python -m lakehouse.ops.demo)",
    "make test": ".ci/run",
    "make setup": ".ci/run",
    "python -m lakehouse.local.kafka_broker start": ".ci/run",
    "python setup_utils.py --fix": "tests/system/test_setup_utils.py",
    "python spark_streaming_delta.py": "tests/system/test_bronze_broker.py",
    "spark-submit": "tests/system/test_spark_submit.py",
    "python producer_ventes.py": "tests/system/test_producer.py",
    "python streaming_silver.py": "tests/system/test_spark_submit.py",
    "python query_utils.py": "tests/system/test_query_utils_script.py::test_menu_through_stdin",
    "python streamlit_dashboard.py": "tests/system/test_demo.py::test_demo_runs_stops_cleanly_and_resumes (a part of "
                                     "the demo; bench/dashboard_render.py)",
    "make cluster-start": "tests/system/test_object_store.py::test_the_pipeline_on_the_local_cluster_gives_the_single_"
                          "machine_tables (cluster start, the module the target runs)",
    "make cluster-stop": "tests/system/test_object_store.py (the pipeline test: cluster stop)",
    "make cluster-status": "tests/system/test_object_store.py (the pipeline test: cluster status)",
    "make spark-cluster-start": "tests/system/test_spark_cluster.py (spark_cluster start, the module the target runs)",
    "make spark-cluster-stop": "tests/system/test_spark_cluster.py (spark_cluster stop)",
    "LAKEHOUSE_SPARK_MASTER=spark://127.0.0.1:7077": "tests/system/test_spark_cluster.py (the Bronze job on the "
                                                     "cluster, master and cores_max from the configuration)",
    "make kafka-cluster-start": "tests/system/test_kafka_cluster.py (kafka_cluster start, the module the target runs)",
    "make kafka-cluster-stop": "tests/system/test_kafka_cluster.py (kafka_cluster stop)",
    "make dashboard": "tests/system/test_web_dashboard_browser.py::test_the_served_page_in_chromium_shows_silver_"
                      "and_follows_it",
    "python query_utils.py --batch": "tests/integration/test_query_utils.py::test_batch_report_and_charts_from_the_"
                                     "script",
    "make upkeep": "tests/integration/test_upkeep.py (run_upkeep)",
    "make monitoring": "tests/system/test_prometheus.py::test_prometheus_scrapes_the_jobs_agrees_with_the_metrics_"
                       "table_and_alerts_when_bronze_stops (python -m lakehouse.ops.prometheus)",
    "make demo ARGS=--prometheus": "tests/system/test_demo.py::test_the_demo_starts_prometheus_when_asked",
    "promtool test rules monitoring/alerts_test.yml":
        "tests/system/test_prometheus.py::test_the_alert_rules_pass_promtool_check_and_their_unit_tests",
    "make demo ARGS=--fresh": "tests/system/test_demo.py::test_fresh_empties_tables_checkpoints_and_topic",
    "make demo ARGS=--no-broker": "tests/system/test_demo.py (the broker is found, not started)",
    "docker compose up -d": "not runnable here (no Docker engine); docs/OPERATIONS.md says so",
    "docker compose --profile secured up -d kafka-secured": "not runnable here (no Docker engine); docs/SECURITY.md "
                                                            "says so",
    "python -m lakehouse.local.kafka_broker docker-prepare":
        "tests/system/test_kafka_secured.py::test_docker_prepare_makes_what_the_secured_service_runs_from",
    "export": "shell set-up",
    "read -rs": "shell set-up",
    ". .venv/bin/activate": "shell set-up",
    "git clone": "shell set-up",
    "cd": "shell set-up",
}


def doc_commands(doc: Path) -> list[str]:
    """Command lines of the ```bash blocks (comments and continuation lines dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            line = re.sub(r"^\.venv/bin/", "", line.split("  #")[0].strip())
            if line and not line.startswith("#") and not line.startswith("--"):
                commands.append(line.rstrip("\\").strip())
    return commands


@pytest.mark.parametrize("doc", ["README.md", "docs/QUICKSTART.md", "docs/OPERATIONS.md", "docs/SECURITY.md"])
def test_every_documented_command_is_exercised(doc: str) -> None:
    commands = doc_commands(PROJECT_DIR / doc)
    assert commands
    unexercised = [c for c in commands if not any(c == k or c.startswith(k + " ") for k in EXERCISED)]
    assert not unexercised, f"{doc}: commands no test or CI runs: {unexercised}"
    for where in EXERCISED.values():
        target = where.split("::")[0].split(" ")[0]
        if "/" in target:
            assert (PROJECT_DIR / target).exists(), where
        if "::" in where:
            function = where.split("::")[1].split(" ")[0]
            assert f"def {function}(" in (PROJECT_DIR / target).read_text(encoding="utf-8"), where
