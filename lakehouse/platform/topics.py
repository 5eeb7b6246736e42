"""Idempotent topic creation with kafka-python's admin client."""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from lakehouse.platform.kafka_probe import PLAINTEXT_SECURITY, quiet_kafka_client
from lakehouse.platform.kafka_security import (
    KafkaSecurity,
    KafkaSecurityError,
    auth_failed_message,
    kafka_python_kwargs,
)

log = logging.getLogger(__name__)


class TopicError(RuntimeError):
    """The topic could not be checked or created."""


def _admin(bootstrap_servers: str, timeout_s: float, security: KafkaSecurity) -> KafkaAdminClient:
    try:
        with quiet_kafka_client():  # a refused login is reported below, once
            return KafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                    request_timeout_ms=int(timeout_s * 1000),
                                    bootstrap_timeout_ms=int(timeout_s * 1000),
                                    client_id="lakehouse-admin", **kafka_python_kwargs(security))
    except KafkaSecurityError as e:
        raise TopicError(str(e)) from e
    except SaslAuthenticationFailedError as e:
        raise TopicError(auth_failed_message(security)) from e
    except (KafkaError, OSError) as e:
        raise TopicError(f"Kafka broker not reachable at {bootstrap_servers}: {e!r}") from e


def topic_exists(bootstrap_servers: str, topic: str, timeout_s: float = 10.0,
                 security: KafkaSecurity = PLAINTEXT_SECURITY) -> bool:
    """True when ``topic`` exists on the cluster."""
    admin = _admin(bootstrap_servers, timeout_s, security)
    try:
        return topic in admin.list_topics()
    except KafkaError as e:
        raise TopicError(f"Could not list topics at {bootstrap_servers}: {e!r}") from e
    finally:
        admin.close()


def topic_configs(replication_factor: int) -> dict[str, str]:
    """The topic's own settings: with three replicas or more, an acknowledged write (acks=all) is on two
    of them at least, whatever the brokers' default, so that one broker may go without losing it."""
    return {"min.insync.replicas": "2"} if replication_factor >= 3 else {}


def ensure_topic(bootstrap_servers: str, topic: str, partitions: int, replication_factor: int = 1,
                 timeout_s: float = 10.0, security: KafkaSecurity = PLAINTEXT_SECURITY) -> bool:
    """Create ``topic`` unless it exists; returns True if this call created it.

    An existing topic is left as it is, even with another partition count (changing partitions would
    move keys between partitions) or replication factor, but a mismatch is logged.
    """
    admin = _admin(bootstrap_servers, timeout_s, security)
    try:
        try:
            admin.create_topics([NewTopic(topic, partitions, replication_factor,
                                          topic_configs=topic_configs(replication_factor))],
                                timeout_ms=int(timeout_s * 1000))
            log.info("Created topic %s with %d partition(s), replication factor %d", topic, partitions,
                     replication_factor)
            return True
        except TopicAlreadyExistsError:
            described = admin.describe_topics([topic])
            actual = len(described[0]["partitions"]) if described else None
            if actual is not None and actual != partitions:
                log.warning("Topic %s exists with %d partition(s), configuration says %d; left as is",
                            topic, actual, partitions)
            replicas = len(described[0]["partitions"][0]["replica_nodes"]) if actual else None
            if replicas is not None and replicas != replication_factor:
                log.warning("Topic %s exists with replication factor %d, configuration says %d; left as is",
                            topic, replicas, replication_factor)
            return False
        except KafkaError as e:
            raise TopicError(f"Could not create topic {topic} at {bootstrap_servers}: {e!r}") from e
    finally:
        admin.close()


def reset_topic(bootstrap_servers: str, topic: str, partitions: int, timeout_s: float = 30.0,
                security: KafkaSecurity = PLAINTEXT_SECURITY, replication_factor: int = 1) -> None:
    """Delete ``topic`` (if it exists) and create it again, empty. The broker deletes asynchronously,
    so creation is retried until the old topic is gone."""
    admin = _admin(bootstrap_servers, timeout_s, security)
    try:
        try:
            admin.delete_topics([topic], timeout_ms=int(timeout_s * 1000))
        except UnknownTopicOrPartitionError:
            pass
        except KafkaError as e:
            raise TopicError(f"Could not delete topic {topic} at {bootstrap_servers}: {e!r}") from e
    finally:
        admin.close()
    deadline = time.monotonic() + timeout_s
    while not ensure_topic(bootstrap_servers, topic, partitions, replication_factor, timeout_s=timeout_s,
                           security=security):
        if time.monotonic() > deadline:
            raise TopicError(f"Topic {topic} at {bootstrap_servers} was deleted but could not be created "
                             f"again within {timeout_s:g} s")
        time.sleep(0.5)
