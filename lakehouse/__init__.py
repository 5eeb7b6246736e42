"""Shared package of the real-time sales lakehouse: config, Spark, Kafka and table helpers."""
