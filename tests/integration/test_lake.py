"""The lake's location: a local folder or a prefix in S3-compatible object storage (the settings accepted and
refused, the secret from the environment only, where each table and checkpoint goes), and the upkeep each
kind of lake allows. The object store itself, its launcher and the pipeline on it:
tests/system/test_object_store.py."""

from __future__ import annotations

from datetime import datetime

import pytest
from deltalake import DeltaTable

from lakehouse.platform.config import ConfigError, load_config
from lakehouse.platform.lake import S3Settings
from lakehouse.platform.paths import Paths
from tests.conftest import make_config, write_config
from tests.support.delta_rs import write_range

SECRET = "test-secret-key-5ef1"
ENV = {"LAKEHOUSE_S3_SECRET_KEY": SECRET}


@pytest.mark.parametrize("lake", ["s3a://lakehouse", "s3a://lakehouse/lake", "s3a://my.bucket-1/a/b_c", "/tmp/lake"])
def test_lake_locations_accepted(lake, tmp_path) -> None:
    assert make_config(tmp_path, env=ENV, paths__lake=lake).paths.lake == lake


@pytest.mark.parametrize("lake, why", [
    ("s3://lakehouse/x", "s3a://"), ("http://host/x", "s3a://"), ("s3a://Upper/x", "bucket 'Upper'"),
    ("s3a://ab/x", "bucket 'ab'"), ("s3a://lakehouse/../x", "prefix"), ("s3a://lakehouse/a//b", "prefix"),
    ("s3a://lakehouse/a b", "prefix"), ("s3a://-bucket/x", "bucket"),
])
def test_bad_lake_locations_are_refused_in_one_line(lake, why, tmp_path) -> None:
    with pytest.raises(ConfigError, match=why):
        make_config(tmp_path, paths__lake=lake)


def test_the_secret_is_read_from_the_environment_only(tmp_path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[s3]\nsecret_key = in-a-file\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="environment"):
        load_config(ini, env={})
    with pytest.raises(ConfigError, match="export LAKEHOUSE_S3_SECRET_KEY"):  # an s3a:// lake needs it at once
        make_config(tmp_path, paths__lake="s3a://lakehouse/l")
    # A local lake does not: the object store's own settings say so only when asked for the secret.
    with pytest.raises(ConfigError, match="LAKEHOUSE_S3_SECRET_KEY"):
        S3Settings.from_config(make_config(tmp_path)).hadoop_options()
    settings = S3Settings.from_config(make_config(tmp_path, env=ENV, paths__lake="s3a://lakehouse/l"))
    assert SECRET not in repr(settings)


def test_a_local_lake_keeps_tables_and_checkpoints_in_the_folder(tmp_path) -> None:
    paths = Paths.from_config(make_config(tmp_path / "data", paths__lake=str(tmp_path / "lake")))
    assert paths.bronze == tmp_path / "lake" / "delta" / "bronze" / "ventes"
    assert paths.bronze_checkpoint == tmp_path / "lake" / "checkpoints" / "bronze_ventes"
    assert paths.logs_dir == tmp_path / "data" / "logs"  # the rest stays under data_dir


def test_an_object_storage_lake_gives_s3a_uris(tmp_path) -> None:
    paths = Paths.from_config(make_config(tmp_path / "data", env=ENV, paths__lake="s3a://lakehouse/prod/"))
    assert str(paths.bronze) == "s3a://lakehouse/prod/delta/bronze/ventes"
    assert str(paths.silver("clients")) == "s3a://lakehouse/prod/delta/silver/clients"
    assert str(paths.silver_checkpoint) == "s3a://lakehouse/prod/checkpoints/silver"
    assert paths.kafka_data == tmp_path / "data" / "kafka"
    assert paths.data_dirs() == [tmp_path / "data" / "kafka", tmp_path / "data" / "logs"]
    with pytest.raises(TypeError, match="object storage"):
        open(paths.bronze / "x", "w")  # never a stray local file named like the URI


# --- upkeep on each kind of lake ------------------------------------------------------------------------

def test_make_upkeep_refuses_an_object_storage_lake(tmp_path, monkeypatch, capfd) -> None:
    from lakehouse.ops import upkeep

    ini = write_config(tmp_path / "c.ini", make_config(tmp_path / "data"), paths={"lake": "s3a://lakehouse/l"})
    monkeypatch.setenv("LAKEHOUSE_S3_SECRET_KEY", SECRET)
    assert upkeep.main(["--config", str(ini)]) == 2  # before any Spark starts
    said = capfd.readouterr().err
    assert "--pipeline-stopped" in said and "s3a://lakehouse/l" in said and len(said.strip().splitlines()) == 1


def ops(path) -> list[str]:
    """The operations in a local table's history."""
    return [r["operation"] for r in DeltaTable(str(path)).history()]


def test_a_job_runs_its_own_upkeep_when_due_and_only_on_its_tables(spark, tmp_path) -> None:
    from lakehouse.ops.upkeep import OwnUpkeep, bronze_tables, silver_tables

    cfg = make_config(tmp_path / "data", analytics__vacuum_retention="0 s", analytics__silver_history="0 s")
    paths = Paths.from_config(cfg)
    write_range(paths.silver("pays"), 3)  # through delta-rs: the upkeep is what is tested
    write_range(paths.bronze_metrics, 3)
    now = [100.0]
    own = OwnUpkeep(spark, cfg, paths, silver_tables(paths), interval_s=60, clock=lambda: now[0])
    assert own.run_if_due() is None and own.runs == 0  # not before an interval has passed
    now[0] = 161.0
    assert own.run_if_due() is True and own.runs == 1
    assert own.run_if_due() is None  # the next one an interval later
    assert "VACUUM END" in ops(paths.silver("pays")) or "VACUUM START" in ops(paths.silver("pays"))
    assert not any(op.startswith("VACUUM") for op in ops(paths.bronze_metrics))  # not its table
    assert paths.bronze_metrics in bronze_tables(paths) and paths.bronze_metrics not in silver_tables(paths)


def test_a_job_leaves_out_the_vacuum_of_a_table_younger_than_the_history_kept(spark, tmp_path, caplog) -> None:
    """With a week of history kept (the default), a table created today has no file VACUUM may delete: its
    removed files and any file a failed write left are younger than the table. A job's own upkeep (an
    S3 listing of every file, each interval) leaves it out and says so; make upkeep, asked for, runs it."""
    from lakehouse.ops.upkeep import OwnUpkeep, bronze_tables, created_ms, run_upkeep, younger_than_history

    cfg = make_config(tmp_path / "data")
    paths = Paths.from_config(cfg)
    table = paths.bronze_metrics
    for _ in range(2):  # the second write removes the first one's files: what VACUUM deletes, once old enough
        spark.range(3).write.format("delta").mode("overwrite").save(str(table))
    (table / "part-00000-left-by-a-failed-write.snappy.parquet").write_bytes(b"PAR1")
    kept = cfg.analytics.vacuum_retention.seconds / 3600
    assert kept == 168 and younger_than_history(spark, table, kept)
    assert spark.sql(f"VACUUM delta.`{table}` RETAIN {kept:g} HOURS DRY RUN").count() == 0  # nothing to delete
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    before = spark.conf.get(check, None)
    spark.conf.set(check, "false")
    try:  # what it would delete were they old enough: the overwritten file(s) and the failed write's
        assert spark.sql(f"VACUUM delta.`{table}` RETAIN 0 HOURS DRY RUN").count() >= 2
    finally:
        spark.conf.unset(check) if before is None else spark.conf.set(check, before)
    created = created_ms(spark, table)
    assert abs(created - DeltaTable(str(table)).history()[-1]["timestamp"]) < 60_000  # its first commit's time
    assert not younger_than_history(spark, table, kept, now_ms=created + kept * 3_600_000)  # a week later
    assert younger_than_history(spark, table, kept, now_ms=created + kept * 3_600_000 - 1)

    own = OwnUpkeep(spark, cfg, paths, bronze_tables(paths), interval_s=0)
    with caplog.at_level("INFO", logger="lakehouse.ops.upkeep"):
        assert own.run_now() is True
    assert not any(op.startswith("VACUUM") for op in ops(table))
    assert f"VACUUM {table}: not needed yet (the table is younger than the 168 hours of history kept)" \
        in caplog.text
    assert run_upkeep(spark, cfg, paths, datetime.now().date(), only=[table]) is True  # make upkeep's way
    assert "VACUUM END" in ops(table) or "VACUUM START" in ops(table)
