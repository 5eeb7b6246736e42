"""End-to-end smoke run: a few sales through a real Kafka broker into Bronze Delta, printed back.

Usage: python -m lakehouse.smoke [--count N] [--config config.ini]
It expects the broker to be running (``python -m lakehouse.kafka_local start``) and creates the topic
if needed.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import uuid
from datetime import datetime, timezone

from kafka import KafkaProducer
from kafka.errors import KafkaError

from lakehouse.bronze import start_bronze_stream
from lakehouse.cli import add_config_flag, config_or_exit, setup_logging
from lakehouse.config import Config
from lakehouse.paths import Paths
from lakehouse.spark import SparkSetupError, build_spark
from lakehouse.topics import TopicError, ensure_topic

log = logging.getLogger("lakehouse.smoke")

_SAMPLE_CLIENTS = [("C001", "Jean Dupont", "France", "B2C"), ("C002", "Maria Garcia", "Espagne", "B2C"),
                   ("C003", "Müller GmbH", "Allemagne", "B2B")]
_SAMPLE_PRODUCTS = [("P01", "Ordinateur portable", "Informatique", "899.99"),
                    ("P02", "Clavier mécanique", "Accessoires", "75.00")]


def sample_sale(rng: random.Random) -> dict:
    """One contract-shaped sale from a tiny fixed pool (the real simulator is producer_ventes.py)."""
    client_id, client_nom, pays, segment = rng.choice(_SAMPLE_CLIENTS)
    produit_id, produit_nom, categorie, prix = rng.choice(_SAMPLE_PRODUCTS)
    quantite = rng.randint(1, 3)
    return {
        "vente_id": str(uuid.UUID(int=rng.getrandbits(128))), "client_id": client_id,
        "produit_id": produit_id, "timestamp": datetime.now(timezone.utc).isoformat(),
        "quantite": quantite, "montant": round(float(prix) * quantite, 2), "client_nom": client_nom,
        "produit_nom": produit_nom, "categorie": categorie, "pays": pays, "segment": segment,
    }


def send_samples(cfg: Config, count: int, seed: int | None) -> list[dict]:
    """Send ``count`` sample sales and wait for every acknowledgement."""
    rng = random.Random(seed)
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, acks="all",
                             bootstrap_timeout_ms=int(cfg.kafka.connect_timeout.seconds * 1000),
                             key_serializer=str.encode,
                             value_serializer=lambda v: json.dumps(v).encode("utf-8"))
    try:
        sales = [sample_sale(rng) for _ in range(count)]
        futures = [producer.send(cfg.kafka.topic, key=s["client_id"], value=s) for s in sales]
        for future in futures:
            future.get(timeout=cfg.kafka.connect_timeout.seconds)
        return sales
    finally:
        producer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send a few sales through Kafka into Delta and show them.")
    parser.add_argument("--count", type=int, default=5, help="number of sales to send (default 5)")
    add_config_flag(parser)
    args = parser.parse_args(argv)
    cfg = config_or_exit(args)
    setup_logging(cfg.monitoring.log_level)
    paths = Paths.from_config(cfg)
    try:
        ensure_topic(cfg.kafka.bootstrap_servers, cfg.kafka.topic, cfg.kafka.partitions,
                     cfg.kafka.replication_factor, cfg.kafka.connect_timeout.seconds)
        sent = send_samples(cfg, args.count, cfg.producer.seed)
        log.info("Sent %d sales to %s", len(sent), cfg.kafka.topic)
        spark = build_spark(cfg, "smoke")
    except (TopicError, KafkaError, SparkSetupError) as e:
        log.error("%s", e)
        return 1
    query = start_bronze_stream(spark, cfg, paths.smoke_table, paths.checkpoints_dir / "smoke_ventes",
                                available_now=True)
    query.awaitTermination()
    table = spark.read.format("delta").load(str(paths.smoke_table))
    ids = [s["vente_id"] for s in sent]
    landed = table.filter(table.vente_id.isin(ids))
    print(f"\nDelta table {paths.smoke_table}: {table.count()} rows in total; the {len(ids)} just sent:")
    landed.select("vente_id", "client_nom", "pays", "segment", "produit_nom", "quantite", "montant",
                  "jour", "kafka_partition", "kafka_offset").orderBy("kafka_partition", "kafka_offset") \
        .show(truncate=False)
    found = landed.count()
    if found != len(ids):
        log.error("Only %d of %d sent sales reached the Delta table", found, len(ids))
        return 1
    print(f"✅ {found}/{len(ids)} sales went Kafka → Spark → Delta and were read back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
