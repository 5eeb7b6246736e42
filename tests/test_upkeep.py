"""Upkeep on real Delta tables: retention of old Bronze days, compaction, VACUUM."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from lakehouse.paths import Paths
from lakehouse.upkeep import run_upkeep
from tests.conftest import make_config
from tests.test_silver_incremental import append_bronze

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
