"""Simulate realistic sales, their returns and cancellations, and send them to Kafka, one JSON event per
message.

Usage: python producer_ventes.py [--rate N | --max] [--count N] [--duration S] [--seed N]
                                 [--return-ratio R] [--cancel-ratio R] [--early-corrections [R]]
Example:
    python producer_ventes.py                      # one event every 2 seconds until Ctrl-C
    python producer_ventes.py --max --count 100000 # as fast as possible, then a summary
    python producer_ventes.py --rate 50 --bad-ratio 0.05 --duplicate-ratio 0.02 --late-ratio 0.01
    python producer_ventes.py --rate 20 --return-ratio 0.1 --cancel-ratio 0.05 --early-corrections
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from datetime import timedelta

from lakehouse.ingest.producer import DeliveryStats, ProducerError, ProducerSettings, connect, run, write_summary
from lakehouse.ingest.simulator import BAD_KINDS, SalesSimulator
from lakehouse.ops.metrics import ProducerMetrics, serve_metrics
from lakehouse.platform.cli import (
    EXIT_CONFIG,
    add_config_flag,
    add_kafka_security_flags,
    config_or_exit,
    kafka_security_overrides,
    setup_logging,
    stop_on_signals,
)
from lakehouse.platform.config import SCHEMA, parse_duration
from lakehouse.platform.kafka_probe import broker_problem
from lakehouse.platform.topics import TopicError, ensure_topic

log = logging.getLogger("producer_ventes")
EXIT_NOT_ALL_DELIVERED = 4  # ran to the end, but some records failed or were never sent (see the summary)
# What a bare --early-corrections stands for.
EARLY_CORRECTIONS_FLAG_ONLY = 0.1


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not a ratio between 0 and 1")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number ≥ 1")
    return value


def _duration(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text).seconds)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from e


def _positive_duration(text: str) -> timedelta:
    value = _duration(text)
    if value <= timedelta(0):  # a zero duration would mean "no limit" and run until Ctrl-C
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration")
    return value


def _bad_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in BAD_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown kind(s) {unknown}; allowed: {', '.join(BAD_KINDS)}")
    return kinds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Send simulated sales, returns and cancellations to Kafka.")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, default=None,
                      help="events per second (overrides [producer] rate; default one sale every 2 s)")
    pace.add_argument("--max", action="store_true", help="send as fast as possible")
    parser.add_argument("--count", type=_positive_int, default=None, help="stop after this many records")
    parser.add_argument("--duration", type=_positive_duration, default=None,
                        help="stop after this long, e.g. '60 s' or '5 min'")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the events (overrides [producer] seed; the client pool comes "
                             "from [producer] pool_seed)")
    parser.add_argument("--clients", type=_positive_int, default=None,
                        help="size of the client pool (overrides [producer] clients)")
    parser.add_argument("--topic", default=None, help="Kafka topic (overrides [kafka] topic)")
    parser.add_argument("--bootstrap-servers", default=None,
                        help="Kafka brokers host:port[,...] (overrides [kafka] bootstrap_servers)")
    faults = parser.add_argument_group("fault injection (off by default; for tests)")
    faults.add_argument("--bad-ratio", type=_ratio, default=0.0,
                        help=f"share of malformed records, of kinds: {', '.join(BAD_KINDS)}")
    faults.add_argument("--bad-kinds", type=_bad_kinds, default=BAD_KINDS,
                        help="comma-separated subset of the malformed kinds to send (default: all)")
    faults.add_argument("--duplicate-ratio", type=_ratio, default=0.0,
                        help="share of records that re-send an already sent sale (same vente_id)")
    faults.add_argument("--late-ratio", type=_ratio, default=0.0,
                        help="share of sales whose timestamp lies --late-by in the past")
    faults.add_argument("--late-by", type=_duration, default=timedelta(hours=1),
                        help="how far in the past late sales are dated (default '1 h')")
    corrections = parser.add_argument_group(
        "returns and cancellations", "A sale gets one at most. Each is sent 3 to 300 records after its sale, "
        "or a minute after it if that comes first; those still waiting when a --count or --duration run ends "
        "are not sent (the summary counts what was sent).")
    corrections.add_argument("--return-ratio", type=_ratio, default=None, metavar="RATIO",
                             help="share of the sales that a return of some of their units follows (overrides "
                                  "[producer] return_ratio, default "
                                  f"{SCHEMA['producer']['return_ratio'].default})")
    corrections.add_argument("--cancel-ratio", type=_ratio, default=None, metavar="RATIO",
                             help="share of the sales that a cancellation follows (overrides [producer] "
                                  f"cancel_ratio, default {SCHEMA['producer']['cancel_ratio'].default})")
    corrections.add_argument("--early-corrections", type=_ratio, nargs="?", const=EARLY_CORRECTIONS_FLAG_ONLY,
                             default=0.0, metavar="RATIO",
                             help="share of the returns and cancellations sent a few records before their "
                                  "sale, as when a sale is delayed on its way (default 0; the flag alone "
                                  f"means {EARLY_CORRECTIONS_FLAG_ONLY:g})")
    parser.add_argument("--summary-json", default=None,
                        help="also write the final summary as JSON to this file")
    add_config_flag(parser)
    add_kafka_security_flags(parser)
    args = parser.parse_args(argv)
    if args.bad_ratio + args.duplicate_ratio + args.late_ratio > 1:
        parser.error("--bad-ratio, --duplicate-ratio and --late-ratio add up to more than 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = config_or_exit(args, {
        ("producer", "rate"): args.rate, ("producer", "seed"): args.seed,
        ("producer", "clients"): args.clients, ("producer", "return_ratio"): args.return_ratio,
        ("producer", "cancel_ratio"): args.cancel_ratio, ("kafka", "topic"): args.topic,
        ("kafka", "bootstrap_servers"): args.bootstrap_servers, **kafka_security_overrides(args)})
    return_ratio, cancel_ratio = cfg.producer.return_ratio, cfg.producer.cancel_ratio
    if return_ratio + cancel_ratio > 1:  # each is checked alone where it is read; their sum only here
        print(f"Configuration error: the return ratio ({return_ratio:g}) and the cancel ratio ({cancel_ratio:g}) "
              "add up to more than 1: a sale gets one return or cancellation at most (--return-ratio, "
              "--cancel-ratio, or [producer] return_ratio and cancel_ratio)", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.monitoring.log_level)
    seed = cfg.producer.seed if cfg.producer.seed is not None else random.SystemRandom().randrange(2**31)
    settings = ProducerSettings.from_config(
        cfg, rate=None if args.max else cfg.producer.rate, count=args.count,
        duration_s=args.duration.total_seconds() if args.duration else None)
    simulator = SalesSimulator(seed, cfg.producer.clients, bad_ratio=args.bad_ratio,
                               duplicate_ratio=args.duplicate_ratio, late_ratio=args.late_ratio,
                               late_by=args.late_by, max_event_bytes=cfg.streaming.max_event_bytes,
                               bad_kinds=args.bad_kinds, pool_seed=cfg.producer.pool_seed,
                               return_ratio=return_ratio, cancel_ratio=cancel_ratio,
                               early_corrections=args.early_corrections)
    # A broker that refuses these security settings is said so in seconds, in one line (an unreachable
    # one is reported by the topic check below, as before).
    problem = broker_problem(settings.bootstrap_servers, settings.connect_timeout_s, settings.security)
    if problem is not None and problem.reachable:
        log.error("%s", problem.message)
        return 1
    try:
        ensure_topic(settings.bootstrap_servers, settings.topic, cfg.kafka.partitions,
                     cfg.kafka.replication_factor, settings.connect_timeout_s, settings.security)
        producer = connect(settings)
    except (TopicError, ProducerError) as e:
        log.error("%s", e)
        return 1

    stop = stop_on_signals(log, "flushing and stopping")
    pace = "as fast as possible" if settings.rate is None else f"{settings.rate:g} events/s"
    log.info("Producing to %s on %s, %s, seed %d, %d clients (pool seed %d), %d products, returns %g and "
             "cancellations %g of the sales (%g of them early)", settings.topic, settings.bootstrap_servers, pace,
             seed, len(simulator.clients), cfg.producer.pool_seed, len(simulator.catalog), return_ratio,
             cancel_ratio, args.early_corrections)
    stats = DeliveryStats()
    if settings.rate is not None:  # paced: a long run that Prometheus may scrape
        serve_metrics(ProducerMetrics(stats, settings.rate), cfg.monitoring.metrics_address,
                      cfg.monitoring.metrics_port_producer, "Producer", "metrics_port_producer")
    result = run(producer, simulator.records(), settings, stop, stats=stats)
    log.info("%s", result.summary_line())
    if args.summary_json:
        write_summary(args.summary_json, result)
    stats = result.stats
    if stats.failed or stats.unsent:
        log.error("Not every record reached Kafka: %d failed, %d never sent (no answer from Kafka before "
                  "the producer closed)", stats.failed, stats.unsent)
        return EXIT_NOT_ALL_DELIVERED
    return 0


if __name__ == "__main__":
    sys.exit(main())
