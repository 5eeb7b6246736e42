"""Check that this machine can run the sales lakehouse, and create what is missing with --fix.

Usage: python setup_utils.py [--fix] [--spark] [--config config.ini]
Example: python setup_utils.py --fix --spark
"""

from __future__ import annotations

import argparse
import sys

from lakehouse.ops import checks
from lakehouse.platform.cli import (
    add_config_flag,
    add_kafka_security_flags,
    config_or_exit,
    kafka_security_overrides,
    setup_logging,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true",
                        help="create what is missing: data directories and the Kafka topic")
    parser.add_argument("--spark", action="store_true",
                        help="also start Spark with the Kafka and Delta jars and round-trip a Delta table")
    parser.add_argument("--bootstrap-servers", default=None,
                        help="Kafka brokers to check (overrides [kafka] bootstrap_servers)")
    add_config_flag(parser)
    add_kafka_security_flags(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = config_or_exit(args, {("kafka", "bootstrap_servers"): args.bootstrap_servers,
                                **kafka_security_overrides(args)})
    setup_logging("WARNING")
    results = [
        checks.check_python(),
        checks.check_packages(),
        checks.check_java(),
        checks.check_broker_jars(cfg),
        checks.check_data_dirs(cfg, args.fix),
    ]
    kafka = checks.check_kafka(cfg)
    results.append(kafka)
    if kafka.ok:
        results.append(checks.check_topic(cfg, args.fix))
    elif kafka.detail.startswith("not reachable"):
        results.append(checks.CheckResult("Topic", False, "not checked: Kafka broker not reachable"))
    else:
        results.append(checks.CheckResult("Topic", False, "not checked: see the Kafka broker line"))
    if args.spark:
        results.append(checks.check_spark(cfg))
    for result in results:
        print(result.line())
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
