"""Helpers shared by the entry points: common flags, config loading with exit code 2, logging."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any, Mapping

from lakehouse.platform.config import Config, ConfigError, load_config

EXIT_CONFIG = 2
LOG_FORMAT = "%(asctime)s - %(levelname)s - %(name)s - %(message)s"


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` (path of config.ini) to a script's parser."""
    parser.add_argument("--config", default=None,
                        help="path of the configuration file (default: $LAKEHOUSE_CONFIG, then the "
                             "project's config.ini)")


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--verbose``: show the output of Spark's jar resolution (otherwise in data/logs)."""
    parser.add_argument("--verbose", action="store_true",
                        help="show Spark's jar resolution (Ivy) output when it runs (default: written to "
                             "data/logs/spark-jars.log, and its end shown if it fails)")


def config_or_exit(args: argparse.Namespace,
                   overrides: Mapping[tuple[str, str], Any] | None = None) -> Config:
    """Load the configuration for an entry point; a bad setting ends the program with exit code 2."""
    try:
        return load_config(getattr(args, "config", None), overrides=overrides)
    except ConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from e


def setup_logging(level: str = "INFO") -> None:
    """Configure logging once per entry point; Kafka's client chatter stays at WARNING."""
    logging.basicConfig(level=getattr(logging, level), format=LOG_FORMAT, force=True)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("py4j").setLevel(logging.WARNING)


def stop_on_signals(logger: logging.Logger, action: str) -> threading.Event:
    """An event set by Ctrl-C (SIGINT) or SIGTERM, so that a loop can finish its current step and stop."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("Signal %d received: %s", signum, action)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop
