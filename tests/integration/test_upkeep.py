"""Upkeep on real Delta tables: retention of old Bronze days, compaction, VACUUM. While the Bronze stream and the
Silver job run: tests/system/test_upkeep_while_running.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from decimal import Decimal
from urllib.parse import unquote

import pytest

from lakehouse.ops.upkeep import run_upkeep
from lakehouse.platform.paths import Paths
from lakehouse.silver.job import run_silver
from tests.conftest import make_config
from tests.integration.test_silver_incremental import RULES, append_bronze, assert_silver_equals_full_recompute

TODAY = dt.date(2026, 11, 26)


def sale(i: int, days_ago: int) -> tuple:
    day = TODAY - dt.timedelta(days=days_ago)
    return (f"v{i}", "C1", "P1", dt.datetime(day.year, day.month, day.day, 12), day, 1, Decimal("1.00"),
            "A", "France", "B2C")


def data_files(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*.parquet") if "_delta_log" not in p.parts)


def test_upkeep_deletes_old_days_compacts_and_vacuums(spark, tmp_path) -> None:
    cfg = make_config(tmp_path / "data", analytics__bronze_retention_days=90,
                      analytics__vacuum_retention="0 s")
    paths = Paths.from_config(cfg)
    for i, days_ago in enumerate((100, 91, 90, 1, 1)):  # one small file per append
        append_bronze(spark, paths, [sale(i, days_ago)])
    run_upkeep(spark, cfg, paths, TODAY)

    bronze = spark.read.format("delta").load(str(paths.bronze))
    assert sorted(r.vente_id for r in bronze.collect()) == ["v2", "v3", "v4"]  # 90 days ago is kept
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{paths.bronze}`").first()
    assert detail.numFiles == 2  # one file per remaining day
    # VACUUM with no history kept: only the current files stay on disk.
    assert len(data_files(paths.bronze)) == 2, data_files(paths.bronze)


def age_removed_files(path, days: float) -> list[str]:
    """Make the files the table's last commit removed look removed, and written, ``days`` ago (their
    tombstones' time and the files' own); their paths, relative to the table."""
    last = max((path / "_delta_log").glob("*.json"))
    past_s = time.time() - days * 86400
    actions, removed = [json.loads(line) for line in last.read_text().splitlines()], []
    for action in actions:
        if "remove" in action:
            action["remove"]["deletionTimestamp"] = int(past_s * 1000)
            removed.append(unquote(action["remove"]["path"]))
    last.write_text("".join(json.dumps(a) + "\n" for a in actions))
    (last.parent / f".{last.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old content
    for relative in removed:
        os.utime(path / relative, (past_s, past_s))
    return removed


@pytest.mark.parametrize("retention, removed_days_ago, kept", [("24 hours", 2, False), ("30 days", 10, True)])
def test_vacuum_keeps_the_history_configured_not_deltas_default_week(spark, tmp_path, retention, removed_days_ago,
                                                                     kept) -> None:
    # Delta 4 ignores VACUUM's RETAIN (any value but 0) for its table property, a week by default, unless told
    # otherwise: a shorter setting would then keep files for a week, a longer one lose history after a week.
    cfg = make_config(tmp_path / "data", analytics__vacuum_retention=retention)
    paths = Paths.from_config(cfg)
    for i in range(2):
        append_bronze(spark, paths, [sale(i, 1)])
    spark.sql(f"OPTIMIZE delta.`{paths.bronze}`")
    removed = age_removed_files(paths.bronze, removed_days_ago)
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # read the log as edited
    assert run_upkeep(spark, cfg, paths, TODAY, retention=False, compaction=False, only=[paths.bronze])
    on_disk = data_files(paths.bronze)
    assert len(removed) == 2 and [name in on_disk for name in removed] == [kept, kept], (removed, on_disk)
    assert spark.read.format("delta").load(str(paths.bronze)).count() == 2


def test_silver_keeps_its_own_shorter_history(spark, tmp_path) -> None:
    """A continuous Silver commits a version a second: its tables keep [analytics] silver_history (1 day by
    default), while Bronze keeps vacuum_retention (7 days). Files removed two days ago go from Silver only."""
    cfg = make_config(tmp_path / "data")
    paths = Paths.from_config(cfg)
    assert cfg.analytics.silver_history.seconds == 86400 and cfg.analytics.vacuum_retention.seconds == 7 * 86400
    append_bronze(spark, paths, [sale(0, 1)])
    append_bronze(spark, paths, [sale(1, 1)])
    run_silver(spark, RULES, paths)
    append_bronze(spark, paths, [sale(2, 1)])
    run_silver(spark, RULES, paths)  # rewrites the small tables and the client's row: files removed
    spark.sql(f"OPTIMIZE delta.`{paths.bronze}`")  # Bronze's two files of the day removed too
    pays = paths.silver("pays")
    removed = {"bronze": age_removed_files(paths.bronze, 2), "pays": age_removed_files(pays, 2)}
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # read the logs as edited
    assert run_upkeep(spark, cfg, paths, TODAY, retention=False, compaction=False, only=[paths.bronze, pays])
    assert removed["bronze"] and all(name in data_files(paths.bronze) for name in removed["bronze"])
    assert removed["pays"] and not any(name in data_files(pays) for name in removed["pays"])
    assert_silver_equals_full_recompute(spark, paths)
