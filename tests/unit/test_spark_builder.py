"""The SparkSession's set-up steps (``platform.spark``): each takes a builder and gives it back with its
settings, without starting a JVM (``build_spark`` itself runs in every Spark test, through conftest)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.platform.local_fs import local_fs_jar, local_fs_settings
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import (
    FILE_SYSTEM_CHECKPOINT_FILES,
    SparkSetupError,
    export_local_ip,
    with_checkpoint_files,
    with_cores_max,
    with_delta,
    with_job_settings,
    with_local_address,
    with_local_file_system,
    with_master,
    with_object_storage,
)
from tests.conftest import make_config


def options(builder: SparkSession.Builder) -> dict[str, str]:
    return dict(builder._options)


def test_delta_and_the_job_settings(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, spark__timezone="Europe/Paris", spark__shuffle_partitions=3,
                      spark__ui_enabled="true")
    builder = with_job_settings(with_delta(SparkSession.builder.appName("t")), cfg)
    assert options(builder) == {
        "spark.app.name": "t",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "Europe/Paris", "spark.sql.shuffle.partitions": "3",
        "spark.ui.enabled": "true", "spark.default.parallelism": "3",
        "spark.databricks.delta.snapshotPartitions": "3", "spark.ui.showConsoleProgress": "false",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.variant.allowDuplicateKeys": "true"}


def test_each_step_adds_only_its_own_settings(tmp_path: Path) -> None:
    assert options(with_checkpoint_files(SparkSession.builder, object_storage=False)) == {
        "spark.sql.streaming.checkpointFileManagerClass": FILE_SYSTEM_CHECKPOINT_FILES}
    assert options(with_checkpoint_files(SparkSession.builder, object_storage=True)) == {}
    assert options(with_local_address(SparkSession.builder, "127.0.0.1")) == {
        "spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}
    assert options(with_cores_max(SparkSession.builder, 1)) == {"spark.cores.max": "1"}
    cfg = make_config(tmp_path, spark__driver_memory="3g")
    assert options(with_master(SparkSession.builder, cfg, Paths.from_config(cfg))) == {
        "spark.master": "local[2]", "spark.driver.memory": "3g",
        "spark.jars.ivy": str(Paths.from_config(cfg).ivy_dir)}


def test_the_local_file_system_class_when_it_can_be_built(tmp_path: Path, monkeypatch) -> None:
    paths = Paths.from_config(make_config(tmp_path))  # the project's cache: the jar the shared session uses
    jar = local_fs_jar(paths.cache_dir)
    assert jar is not None
    assert options(with_local_file_system(SparkSession.builder, paths)) == local_fs_settings(jar)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no javac: Hadoop's own class, nothing set
    elsewhere = Paths.from_config(make_config(tmp_path, paths__cache_dir=str(tmp_path / "cache")))
    assert options(with_local_file_system(SparkSession.builder, elsewhere)) == {}


def test_no_local_file_system_class_when_the_cache_cannot_be_written(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "jvm").write_text("a file where the jar's folder should be")  # root ignores a read-only folder
    paths = Paths.from_config(make_config(tmp_path, paths__cache_dir=str(cache)))
    assert options(with_local_file_system(SparkSession.builder, paths)) == {}  # Hadoop's class, jobs go on


def test_object_storage_settings_need_the_secret(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, env={"LAKEHOUSE_S3_SECRET_KEY": "not-a-real-secret"},
                      s3__endpoint="http://127.0.0.1:8555", s3__access_key="lakehouse")
    settings = options(with_object_storage(SparkSession.builder, cfg))
    assert settings["spark.hadoop.fs.s3a.secret.key"] == "not-a-real-secret"
    assert settings["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:8555"
    assert settings["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert all(key.startswith("spark.hadoop.fs.s3a.") for key in settings)
    with pytest.raises(SparkSetupError, match=r"^\[s3\] secret_key is not set: .* LAKEHOUSE_S3_SECRET_KEY only$"):
        with_object_storage(SparkSession.builder, make_config(tmp_path))


def test_the_web_ui_address_goes_through_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)  # restored as it was after the test
    export_local_ip("127.0.0.1")
    assert os.environ["SPARK_LOCAL_IP"] == "127.0.0.1"
