"""docs/CONFIGURATION.md is what the settings schema gives, and a schema change not carried into it is caught."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lakehouse.platform.config import PROJECT_DIR, SCHEMA, Option, docs, env_var_name

COMMITTED = PROJECT_DIR / "docs" / "CONFIGURATION.md"


def committed_text() -> str:
    return COMMITTED.read_text(encoding="utf-8")


def table_rows(text: str) -> dict[str, list[str]]:
    """The settings' rows of the page, by environment variable: [key, default, allowed, variable, meaning]."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 5 and cells[3].startswith("`LAKEHOUSE_"):
            rows[cells[3].split("`")[1]] = cells
    return rows


def test_the_committed_page_is_what_the_schema_gives() -> None:
    diff = docs.differences(committed_text())
    assert diff == [], "docs/CONFIGURATION.md is out of date, run make docs:\n" + "\n".join(diff)


def test_the_page_has_one_row_per_setting_with_its_default_range_and_meaning() -> None:
    rows = table_rows(committed_text())
    expected = {env_var_name(s, k): [f"`{k}`", f"`{o.default}`" if o.default else "(empty)", o.help]
                for s, opts in SCHEMA.items() for k, o in opts.items()}
    assert {v: [r[0], r[1], r[4]] for v, r in rows.items()} == expected
    assert rows["LAKEHOUSE_KAFKA_PARTITIONS"][2] == "whole number, 1 to 1000"
    assert rows["LAKEHOUSE_STREAMING_WATERMARK_DELAY"][2] == "duration, 0 to 7 days"
    assert rows["LAKEHOUSE_KAFKA_CONNECT_TIMEOUT"][2] == "duration, 100 milliseconds to 10 minutes"
    assert rows["LAKEHOUSE_PRODUCER_SEED"][2] == "whole number, at least 0, or empty"
    assert rows["LAKEHOUSE_PRODUCER_COMPRESSION"][2] == "one of `none`, `gzip`, `lz4`"
    assert rows["LAKEHOUSE_SPARK_UI_ENABLED"][2] == "`true` or `false`"
    assert rows["LAKEHOUSE_KAFKA_TOPIC"][2] == "1 to 249 letters, digits, '.', '_', '-'"
    assert rows["LAKEHOUSE_KAFKA_PASSWORD"][3] == "`LAKEHOUSE_KAFKA_PASSWORD` (only there)"
    assert rows["LAKEHOUSE_KAFKA_TOPIC"][3] == "`LAKEHOUSE_KAFKA_TOPIC`"


def changed(section: str, key: str, **fields: object) -> dict[str, dict[str, Option]]:
    """The schema with one setting changed."""
    schema = {s: dict(opts) for s, opts in SCHEMA.items()}
    schema[section][key] = dataclasses.replace(schema[section][key], **fields)
    return schema


def with_setting(section: str, key: str, option: Option | None) -> dict[str, dict[str, Option]]:
    """The schema with a setting added (``option``) or removed (None)."""
    schema = {s: dict(opts) for s, opts in SCHEMA.items()}
    if option is None:
        del schema[section][key]
    else:
        schema.setdefault(section, {})[key] = option
    return schema


@pytest.mark.parametrize("schema, named", [
    (changed("kafka", "topic", default="ventes"), "`topic`"),
    (changed("kafka", "partitions", max=500), "`partitions`"),
    (changed("streaming", "watermark_delay", min=60), "`watermark_delay`"),
    (changed("producer", "compression", choices=("none", "gzip", "lz4", "zstd")), "`compression`"),
    (changed("query", "sql_timeout", help="a custom SQL statement is cancelled after this"), "`sql_timeout`"),
    (changed("spark", "cores_max", allow_empty=False), "`cores_max`"),
    (changed("s3", "region", env_only=True), "`region`"),
    (with_setting("kafka", "retention", Option(int, "7", "days the topic keeps", min=1)), "`retention`"),
    (with_setting("dashboard", "port", None), "`port`"),
    (with_setting("alerts", "email", Option(str, "", "who is told", allow_empty=True)), "## [alerts]"),
])
def test_a_schema_the_page_does_not_match_is_caught(schema, named: str) -> None:
    diff = docs.differences(committed_text(), schema)
    assert diff, "a changed schema gave the committed page"
    assert any(line.startswith(("-", "+")) and named in line for line in diff[2:]), diff


def test_check_flag_fails_on_a_stale_file_and_output_writes_the_page(tmp_path: Path, capsys) -> None:
    page = tmp_path / "CONFIGURATION.md"
    assert docs.main(["--output", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == docs.render() == committed_text()
    assert docs.main(["--check", str(page)]) == 0
    page.write_text(committed_text().replace("| `ventes_stream` |", "| `ventes` |"), encoding="utf-8")
    assert docs.main(["--check", str(page)]) == 1
    err = capsys.readouterr().err
    assert "-| `topic` | `ventes` |" in err and "+| `topic` | `ventes_stream` |" in err
    assert err.splitlines()[-1] == f"{page} is not what the settings schema gives: run make docs"
