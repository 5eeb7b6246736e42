"""Checkpoints and tables that no longer belong together, and Kafka offsets that are gone: each job
refuses with a message that says what happened and what to do, instead of skipping or recounting data."""

from __future__ import annotations

import shutil

import pytest
from pyspark.errors import StreamingQueryException

from lakehouse.bronze.stream import BronzeStateError, start_bronze_stream, stream_failure_message
from lakehouse.platform.paths import Paths
from lakehouse.platform.topics import reset_topic
from lakehouse.silver.job import SilverInputError, run_silver
from tests.conftest import make_config, produce, sale_json
from tests.integration.test_silver_incremental import RULES, assert_silver_equals_full_recompute


def sales(start: int, n: int) -> list[tuple[str, bytes]]:
    return [("C1", sale_json(vente_id=f"s{i}", client_id="C1", produit_id="P1",
                             timestamp="2026-11-26T10:00:00+00:00", quantite=1, montant=10.0, client_nom="A",
                             produit_nom="B", categorie="C", pays="France", segment="B2C"))
            for i in range(start, start + n)]


def drain(spark, cfg) -> None:
    start_bronze_stream(spark, cfg, Paths.from_config(cfg), available_now=True).awaitTermination()


def test_bronze_refuses_a_checkpoint_without_tables_and_tables_without_checkpoint(
        spark, kafka_bootstrap, topic, tmp_path) -> None:
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    paths = Paths.from_config(cfg)
    produce(kafka_bootstrap, topic, sales(0, 10))
    drain(spark, cfg)

    shutil.copytree(paths.bronze_checkpoint, tmp_path / "checkpoint_copy")
    shutil.rmtree(paths.bronze_checkpoint)
    with pytest.raises(BronzeStateError, match="but the checkpoint .* does not: starting would read the topic "
                                               "again"):
        drain(spark, cfg)

    shutil.copytree(tmp_path / "checkpoint_copy", paths.bronze_checkpoint)
    shutil.rmtree(paths.delta_dir / "bronze")
    shutil.rmtree(paths.delta_dir / "monitoring")
    with pytest.raises(BronzeStateError, match="has committed batches but the Bronze tables .* are gone"):
        drain(spark, cfg)


def test_offsets_gone_from_kafka_stop_the_stream_with_the_fix(spark, kafka_bootstrap, topic, tmp_path) -> None:
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    paths = Paths.from_config(cfg)
    produce(kafka_bootstrap, topic, sales(0, 20))
    drain(spark, cfg)
    reset_topic(kafka_bootstrap, topic, 3)  # as if retention had deleted what the checkpoint points past
    produce(kafka_bootstrap, topic, sales(20, 3))
    with pytest.raises(StreamingQueryException) as failure:
        drain(spark, cfg)
    message = stream_failure_message(str(failure.value), kafka_bootstrap, paths.bronze_checkpoint, True)
    assert message.startswith(f"Kafka no longer holds records that the checkpoint {paths.bronze_checkpoint} "
                              "expects to read next")
    assert message.endswith("set [streaming] fail_on_data_loss = false (the gap is logged); to start over, "
                            "make demo ARGS=--fresh.")


def test_silver_refuses_mismatch_and_full_refresh_repairs(spark, tmp_path) -> None:
    import random

    from tests.integration.test_silver_incremental import append_bronze, random_sales

    paths = Paths.from_config(make_config(tmp_path / "data"))
    append_bronze(spark, paths, random_sales(random.Random(3), 0, 20))
    run_silver(spark, RULES, paths)
    shutil.rmtree(paths.silver_checkpoint)  # the next run would add every Bronze sale a second time
    with pytest.raises(SilverInputError, match="do not match .* run streaming_silver.py --full-refresh"):
        run_silver(spark, RULES, paths)
    run_silver(spark, RULES, paths, full_refresh=True)
    shutil.rmtree(paths.silver("pays"))  # the next run would count only the new sales
    with pytest.raises(SilverInputError, match="do not match"):
        run_silver(spark, RULES, paths)
    run_silver(spark, RULES, paths, full_refresh=True)
    assert_silver_equals_full_recompute(spark, paths)
