"""The Kafka side of the sales producer: configuration, the paced send loop, delivery accounting."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

from kafka import KafkaProducer
from kafka.errors import KafkaError, SaslAuthenticationFailedError

from lakehouse.ingest.simulator import Record
from lakehouse.platform.config import Config
from lakehouse.platform.kafka_probe import PLAINTEXT_SECURITY, quiet_kafka_client
from lakehouse.platform.kafka_security import (
    KafkaSecurity,
    KafkaSecurityError,
    auth_failed_message,
    kafka_python_kwargs,
)

log = logging.getLogger("producer_ventes")

# The kinds of records that are events of the business (Record.kind → the summary's field); every other
# kind is a fault injected for tests, counted under "injected".
EVENT_KINDS = {"sale": "sales", "return": "returns", "cancel": "cancellations"}

# Above this rate each sale is no longer logged; a periodic summary is logged instead.
PER_SALE_LOG_MAX_RATE = 5.0
SUMMARY_EVERY_S = 5.0
FLUSH_TIMEOUT_MAX_S = 20.0


class ProducerError(RuntimeError):
    """The producer could not start (broker unreachable, topic missing...)."""


@dataclass(frozen=True)
class ProducerSettings:
    bootstrap_servers: str
    topic: str
    rate: float | None  # None: as fast as possible
    count: int | None
    duration_s: float | None
    linger_ms: int
    batch_size: int
    compression: str
    connect_timeout_s: float
    max_event_bytes: int
    delivery_timeout_s: float = 120.0
    security: KafkaSecurity = PLAINTEXT_SECURITY

    @classmethod
    def from_config(cls, cfg: Config, rate: float | None, count: int | None,
                    duration_s: float | None) -> "ProducerSettings":
        """Settings from the configuration plus this run's pace and bounds."""
        return cls(bootstrap_servers=cfg.kafka.bootstrap_servers, topic=cfg.kafka.topic, rate=rate,
                   count=count, duration_s=duration_s, linger_ms=cfg.producer.linger_ms,
                   batch_size=cfg.producer.batch_size, compression=cfg.producer.compression,
                   connect_timeout_s=cfg.kafka.connect_timeout.seconds,
                   max_event_bytes=cfg.streaming.max_event_bytes,
                   delivery_timeout_s=cfg.producer.delivery_timeout.seconds,
                   security=KafkaSecurity.from_config(cfg))


def kafka_config(settings: ProducerSettings) -> dict:
    """The producer configuration, in one place."""
    delivery_ms = int(settings.delivery_timeout_s * 1000)
    # kafka-python wants delivery >= linger + request timeout; a request may take 30 s at most.
    request_ms = max(100, min(30_000, delivery_ms - settings.linger_ms))
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": "producer_ventes",
        # Durability: every in-sync replica must have the record, and retries cannot duplicate it.
        "acks": "all",
        "enable_idempotence": True,
        # Throughput: fill large batches for a few milliseconds before sending them.
        "linger_ms": settings.linger_ms,
        "batch_size": settings.batch_size,
        "compression_type": None if settings.compression == "none" else settings.compression,
        # Oversized test records must reach the broker so the pipeline can quarantine them.
        "max_request_size": max(1_048_576, 2 * settings.max_event_bytes + 1024),
        "bootstrap_timeout_ms": int(settings.connect_timeout_s * 1000),
        # send() blocks this long at most when the buffer is full or metadata is missing.
        "max_block_ms": int(max(settings.connect_timeout_s, 10) * 1000),
        # A record Kafka has not acknowledged after this long fails (counted), instead of waiting for a
        # broker that may never come back; it also bounds the final flush.
        "delivery_timeout_ms": max(delivery_ms, settings.linger_ms + request_ms),
        "request_timeout_ms": request_ms,
        # Back within seconds of a broker's return (kafka-python's default backs off up to 30 s).
        "reconnect_backoff_max_ms": 5000,
        # TLS and SCRAM when [kafka] security_protocol = SASL_SSL (kafka_security.py).
        **kafka_python_kwargs(settings.security),
    }


@dataclass
class DeliveryStats:
    """Outcome of every generated record, updated from kafka-python's I/O thread: delivered
    (acknowledged), failed (Kafka or the client reported an error) or unsent (no answer before the
    producer closed, or never handed to Kafka); delivered + failed + unsent == generated.

    What was handed to Kafka, by kind: ``events`` counts the ``EVENT_KINDS`` (sales, returns,
    cancellations), ``injected`` the faults (late sales, duplicates, bad records), ``early_corrections``
    the returns and cancellations sent before their sale (counted in ``events`` too)."""

    generated: int = 0
    delivered: int = 0
    failed: int = 0
    events: Counter = field(default_factory=Counter)
    early_corrections: int = 0
    injected: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    closing: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_success(self, _metadata) -> None:
        with self._lock:
            self.delivered += 1

    def on_error(self, exc: BaseException) -> None:
        with self._lock:
            if self.closing:  # aborted by the forced close: never answered by Kafka, so unsent
                return
            self.failed += 1
            self.errors[type(exc).__name__] += 1
            first = self.failed == 1
        if first:  # one line per failure would flood the terminal when the broker is gone
            log.error("Delivery failed: %r (further failures are counted in the summary)", exc)

    @property
    def unsent(self) -> int:
        """Records Kafka never answered for: still buffered or in flight when the producer closed, or
        never handed to the client (send() itself failed)."""
        return self.generated - self.delivered - self.failed


@dataclass
class RunResult:
    stats: DeliveryStats
    elapsed_s: float
    bytes_sent: int
    interrupted: bool

    def as_dict(self) -> dict:
        """The summary; ``sales + returns + cancellations + sum(injected) == generated`` (up to a record
        whose send() raised, counted in generated and unsent only)."""
        s = self.stats
        return {"generated": s.generated, "delivered": s.delivered, "failed": s.failed,
                "unsent": s.unsent, **{name: s.events[kind] for kind, name in EVENT_KINDS.items()},
                "early_corrections": s.early_corrections, "injected": dict(sorted(s.injected.items())),
                "errors": dict(s.errors), "elapsed_s": round(self.elapsed_s, 3),
                "events_per_s": round(s.generated / self.elapsed_s, 1) if self.elapsed_s else 0.0,
                "mb_per_s": round(self.bytes_sent / 1e6 / self.elapsed_s, 2) if self.elapsed_s else 0.0,
                "interrupted": self.interrupted}

    def summary_line(self) -> str:
        d = self.as_dict()
        injected = ",".join(f"{k}:{v}" for k, v in d["injected"].items()) or "none"
        return (f"Summary: generated={d['generated']} delivered={d['delivered']} failed={d['failed']} "
                f"unsent={d['unsent']} injected={injected} sales={d['sales']} returns={d['returns']} "
                f"cancellations={d['cancellations']} early_corrections={d['early_corrections']} "
                f"events/s={d['events_per_s']} MB/s={d['mb_per_s']} elapsed={d['elapsed_s']}s")


def connect(settings: ProducerSettings) -> KafkaProducer:
    """Open the producer; an unreachable broker is a ``ProducerError`` after the connect timeout."""
    try:
        with quiet_kafka_client():  # a refused login is reported below, once
            return KafkaProducer(**kafka_config(settings))
    except KafkaSecurityError as e:
        raise ProducerError(str(e)) from e
    except SaslAuthenticationFailedError as e:
        raise ProducerError(auth_failed_message(settings.security)) from e
    except (KafkaError, OSError) as e:
        raise ProducerError(f"Kafka broker not reachable at {settings.bootstrap_servers} within "
                            f"{settings.connect_timeout_s:g} s ({e.__class__.__name__}); start it with "
                            "'python -m lakehouse.local.kafka_broker start' or 'docker compose up -d'") from e


class _Progress:
    """A one-line progress bar on a terminal for --count runs."""

    def __init__(self, total: int):
        self.total, self.last = total, 0.0
        self.enabled = sys.stderr.isatty()

    def update(self, done: int, started: float, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 0.2):
            return
        self.last = now
        share = done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        rate = done / (now - started) if now > started else 0.0
        sys.stderr.write(f"\r[{bar:<30}] {share:6.1%} {done}/{self.total} {rate:,.0f} events/s")
        if force:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(producer: KafkaProducer, records: Iterator[Record], settings: ProducerSettings,
        stop: threading.Event, flush_timeout_s: float | None = None,
        stats: DeliveryStats | None = None) -> RunResult:
    """Send records until count, duration or ``stop``; then flush and close. Never drops silently:
    every record ends counted as delivered, failed or unsent, whatever Kafka does. The final flush
    waits ``flush_timeout_s`` at most (default: the delivery timeout, at most 20 s, so that a stop
    asked during a broker outage ends in time). ``stats``: the counters to update (read by the metrics
    endpoint while the run goes on); new ones by default."""
    if flush_timeout_s is None:
        flush_timeout_s = min(settings.delivery_timeout_s, FLUSH_TIMEOUT_MAX_S)
    stats = stats if stats is not None else DeliveryStats()
    per_sale_log = settings.rate is not None and settings.rate <= PER_SALE_LOG_MAX_RATE
    progress = _Progress(settings.count) if settings.count else None
    started = time.monotonic()
    deadline = started + settings.duration_s if settings.duration_s else None
    next_summary = started + SUMMARY_EVERY_S
    bytes_sent = 0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if settings.count is not None and stats.generated >= settings.count:
                break
            if settings.rate is None:
                due = 1000
            else:
                due = int((now - started) * settings.rate) + 1 - stats.generated
                if due <= 0:
                    wait = (stats.generated / settings.rate) - (now - started)
                    stop.wait(min(max(wait, 0.001), 0.5))
                    continue
            if settings.count is not None:
                due = min(due, settings.count - stats.generated)
            for _ in range(due):
                record = next(records)
                stats.generated += 1  # counted first: if send() raises, the record is unsent
                future = producer.send(settings.topic, key=record.key, value=record.value)
                future.add_callback(stats.on_success)
                future.add_errback(stats.on_error)
                bytes_sent += len(record.value)
                if record.kind in EVENT_KINDS:
                    stats.events[record.kind] += 1
                else:
                    stats.injected[record.kind] += 1
                stats.early_corrections += record.early
                if per_sale_log:
                    _log_event(stats.generated, record)
            if progress:
                progress.update(stats.generated, started)
            if not per_sale_log and time.monotonic() >= next_summary:
                next_summary += SUMMARY_EVERY_S
                elapsed = time.monotonic() - started
                log.info("Sent %d (delivered %d, failed %d) — %.0f events/s", stats.generated, stats.delivered,
                         stats.failed, stats.generated / elapsed)
    except KafkaError as e:
        # send() itself failed (e.g. metadata unavailable for max_block_ms): stop, but still account.
        log.error("Sending stopped: %r", e)
    except Exception as e:  # anything else stops sending too; the summary still counts every record
        log.error("Sending stopped by an unexpected error: %r", e)
    finally:
        interrupted = stop.is_set()
        close(producer, stats, flush_timeout_s)
        elapsed = time.monotonic() - started
        if progress:
            progress.update(stats.generated, started, force=True)
    return RunResult(stats, elapsed, bytes_sent, interrupted)


def _log_event(number: int, record: Record) -> None:
    e = record.event
    early = " (before its sale)" if record.early else ""
    if record.kind == "sale":
        log.info("📤 Sale #%d: %s - %s - €%.2f", number, e["client_nom"], e["produit_nom"], e["montant"])
    elif record.kind == "return":
        log.info("↩️ Return #%d%s: %d unit(s) of sale %s - €%.2f refunded", number, early, e["quantite"],
                 e["vente_id"], e["montant"])
    elif record.kind == "cancel":
        log.info("✖️ Cancellation #%d%s of sale %s", number, early, e["vente_id"])


def close(producer: KafkaProducer, stats: DeliveryStats, flush_timeout_s: float) -> None:
    """Wait up to ``flush_timeout_s`` in all for Kafka's answers, then close without raising: what is
    still pending stays counted as unsent."""
    deadline = time.monotonic() + flush_timeout_s
    try:
        producer.flush(timeout=flush_timeout_s)
    except KafkaError as e:
        log.error("Kafka did not answer for every record within %g s (%s): closing anyway", flush_timeout_s,
                  e.__class__.__name__)
    try:
        producer.close(timeout=max(deadline - time.monotonic(), 1.0))
    except KafkaError:
        # kafka-python's close() flushes first and raises when records are still pending, before it
        # stops its I/O thread; stop that thread without sending them (their futures fail, ignored).
        with stats._lock:
            stats.closing = True
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
            sender.join(5)


def write_summary(path: str, result: RunResult) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result.as_dict(), f, indent=2)
