"""Helpers shared by the entry points: common flags, config loading with exit code 2, logging."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any, Mapping

from lakehouse.platform.config import Config, ConfigError, load_config, redact

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


def add_kafka_security_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for ``[kafka]``'s security settings. There is no password flag on purpose: a command line
    is visible to every user of the machine; the password comes from LAKEHOUSE_KAFKA_PASSWORD."""
    group = parser.add_argument_group("Kafka security (the password: environment variable "
                                      "LAKEHOUSE_KAFKA_PASSWORD only)")
    group.add_argument("--security-protocol", choices=("PLAINTEXT", "SASL_SSL"), default=None,
                       help="overrides [kafka] security_protocol")
    group.add_argument("--sasl-mechanism", default=None, help="overrides [kafka] sasl_mechanism")
    group.add_argument("--username", default=None, help="SCRAM user (overrides [kafka] username)")
    group.add_argument("--ssl-cafile", default=None,
                       help="PEM file of the CA that signed the broker's certificate "
                            "(overrides [kafka] ssl_cafile)")


def kafka_security_overrides(args: argparse.Namespace) -> dict[tuple[str, str], Any]:
    """The config overrides given by ``add_kafka_security_flags``'s flags (None when not given)."""
    return {("kafka", "security_protocol"): getattr(args, "security_protocol", None),
            ("kafka", "sasl_mechanism"): getattr(args, "sasl_mechanism", None),
            ("kafka", "username"): getattr(args, "username", None),
            ("kafka", "ssl_cafile"): getattr(args, "ssl_cafile", None)}


def security_flag_args(args: argparse.Namespace) -> list[str]:
    """The security flags that were given, as arguments again (to pass them on to a child script)."""
    out = []
    for (_section, key), value in kafka_security_overrides(args).items():
        if value is not None:
            out += [f"--{key.replace('_', '-')}", str(value)]
    return out


class RedactSecrets(logging.Filter):
    """Masks every secret the configuration holds (the Kafka password, the local broker's own secrets)
    in a log record, its arguments and its traceback, whoever logs it (kafka-python logs its whole
    configuration at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class KafkaClientInOneLine(logging.Filter):
    """kafka-python logs some network errors with their traceback (a broker that goes away while a reply is
    read: "Error receiving network data closing socket"); the client recovers or reports the failure itself,
    so the user gets that line with the exception's own message instead of a stack trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] == "kafka" and record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage()} ({type(error).__name__}: {error})", None
            record.exc_info, record.exc_text = None, None
        return True


def setup_logging(level: str = "INFO") -> None:
    """Configure logging once per entry point; Kafka's client chatter stays at WARNING, in one line per
    record; secrets are masked in every line."""
    logging.basicConfig(level=getattr(logging, level), format=LOG_FORMAT, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(KafkaClientInOneLine())
        handler.addFilter(RedactSecrets())
    logging.getLogger("kafka").setLevel(logging.WARNING)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # py4j logs an exception raised in a foreachBatch function with its whole Java stack; the same
    # exception ends the query, which the job reports in one line, and Spark's log keeps it whole.
    logging.getLogger("py4j.clientserver").setLevel(logging.CRITICAL)


def stop_on_signals(logger: logging.Logger, action: str) -> threading.Event:
    """An event set by Ctrl-C (SIGINT) or SIGTERM, so that a loop can finish its current step and stop."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("Signal %d received: %s", signum, action)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop
