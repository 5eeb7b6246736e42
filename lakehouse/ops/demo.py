"""The whole pipeline from one command: broker, producer, Bronze stream, continuous Silver, live view,
and the web dashboard.

Usage: python -m lakehouse.ops.demo [--rate N] [--silver-interval SECONDS] [--refresh SECONDS] [--fresh]
                                [--no-broker] [--no-web] [--duration DURATION] [--config PATH]
(`make demo` runs it after setting everything up.)

Each part runs as its own process, in a session of its own (Ctrl-C in the terminal reaches only this
one), with its output in its own log under data/logs/. Ctrl-C or SIGTERM stops them in order: the
producer (it flushes what it sent), the Bronze stream after its current batch, Silver after its current
batch, the web dashboard, then the broker if this command started it. Started again, the parts resume
from their checkpoints on the same data; --fresh deletes the tables, the checkpoints and the topic's
records first. The web dashboard is an extra: when its port is taken, or it stops, the pipeline goes on
without it (the view says so).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

from lakehouse.local.kafka_broker import BrokerError, BrokerSettings, running_pid
from lakehouse.local.kafka_broker import start as start_broker
from lakehouse.local.kafka_broker import stop as stop_broker
from lakehouse.ops.prometheus import INSTALL_HINT, scrape_host
from lakehouse.platform.cli import (
    add_config_flag,
    add_kafka_security_flags,
    config_or_exit,
    kafka_security_overrides,
    security_flag_args,
    setup_logging,
)
from lakehouse.platform.config import PROJECT_DIR, Config, parse_duration
from lakehouse.platform.job_lock import JobAlreadyRunning, job_lock, upkeep_folder
from lakehouse.platform.kafka_probe import broker_problem
from lakehouse.platform.kafka_security import KafkaSecurity
from lakehouse.platform.lake import on_object_storage, remove_tree
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark_jars import jars_resolved
from lakehouse.platform.status import read_json
from lakehouse.platform.topics import TopicError, ensure_topic, reset_topic
from lakehouse.serve.safe_text import for_terminal
from lakehouse.serve.web_server import port_problem, url
from lakehouse.silver.freshness import read_freshness

log = logging.getLogger("lakehouse.ops.demo")

DEFAULT_RATE = 3.0
# How long each part may take to stop cleanly before it is killed (Spark jobs finish a batch or a run).
STOP_TIMEOUTS = {"producer": 30.0, "bronze": 120.0, "silver": 180.0, "dashboard": 20.0, "prometheus": 20.0}
EXIT_PART_FAILED = 1
EXIT_SETUP_FAILED = 3


@dataclass
class Part:
    """One process of the pipeline."""

    name: str
    command: list[str]
    log_file: Path
    proc: subprocess.Popen | None = None
    essential: bool = True  # the pipeline stops when an essential part stops

    def start(self, env: dict[str, str]) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            out.write(f"\n=== {self.name} started at {datetime.now():%Y-%m-%d %H:%M:%S}: "
                      f"{' '.join(self.command)}\n".encode())
            out.flush()
            # A session of its own: the terminal's Ctrl-C reaches the demo only, which stops the parts
            # in order; the process group also holds the part's JVM, so nothing can be left behind.
            self.proc = subprocess.Popen(self.command, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the part has stopped (None while it runs, or before it started)."""
        return None if self.proc is None else self.proc.returncode

    def stop(self, timeout_s: float) -> int | None:
        """SIGTERM to the part's Python process (each part stops cleanly on it; its JVM, which a signal
        would stop mid-batch, follows its parent), wait, then SIGKILL whatever is left in its group."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            log.info("Stopping %s (pid %d)...", self.name, self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s: killed", self.name, timeout_s)
        # Whatever is left in its group (a JVM whose parent is gone) goes too.
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return self.proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(for_terminal(line) for line in
                         path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- the live view -------------------------------------------------------------------------------------

@dataclass
class StreamHealth:
    """Events per second into Bronze, from two readings of the stream's status file."""

    previous: tuple[float, int] | None = None
    rate: float | None = None

    def update(self, status: dict | None) -> dict | None:
        if status is None:
            return None
        reading = (status.get("updated_at", 0.0), status.get("input_rows_total", 0))
        if self.previous is not None and reading[0] > self.previous[0]:
            self.rate = (reading[1] - self.previous[1]) / (reading[0] - self.previous[0])
        if self.previous is None or reading[0] > self.previous[0]:
            self.previous = reading
        return status


def format_health(status: dict | None, rate: float | None) -> str:
    """One line on the Bronze stream: rate in, last batch latency, quarantined, Kafka lag."""
    if status is None:
        return "Stream: starting (Spark and the first batch take up to a minute)..."
    last = status.get("last_batch") or {}
    latency = last.get("latency_p50_ms")
    lag = status.get("kafka_lag")
    return (f"Stream: {'—' if rate is None else f'{rate:.1f}'} events/s in · "
            f"{status.get('bronze_rows_total', 0):,} sales and {status.get('correction_rows_total', 0):,} "
            "returns or cancellations into Bronze this run · "
            f"last batch latency {'—' if latency is None else f'{latency / 1000:.1f} s'} · "
            f"quarantined {status.get('quarantined_rows_total', 0):,} · "
            f"duplicates {status.get('duplicate_rows_total', 0):,} · Kafka lag {'—' if lag is None else lag}")


def render(parts: list[Part], broker_note: str, health: str, silver_freshness: str, silver_text: str | None,
           logs_dir: Path, started: float, silver_interval: float | None, web_note: str | None = None) -> str:
    """The whole screen. ``silver_freshness`` is Silver's status line, read at this refresh: the dashboard
    text under it is only as recent as Silver's last batch (a stopped Silver leaves its last one behind)."""
    elapsed = timedelta(seconds=int(time.monotonic() - started))
    states = " · ".join(f"{p.name} {'running' if p.running else 'stopped'}" for p in parts)
    lines = [f"Sales lakehouse — live demo, running {elapsed} (Ctrl-C stops everything cleanly)",
             f"Parts: broker {broker_note} · {states}",
             health,
             *([web_note] if web_note else []),
             f"Logs: {logs_dir}/{{{','.join(p.name for p in parts)}}}.log",
             "",
             for_terminal(silver_freshness)]  # it may quote the job's last error
    # The dashboard file holds names from the data: shown through safe_text, whoever wrote it.
    lines.append("\n".join(for_terminal(line) for line in silver_text.rstrip().split("\n")) if silver_text else
                 "Silver: waiting for its first batch (Spark starts, then " +
                 ("a batch every few seconds" if silver_interval is None else f"a run every {silver_interval:g} s")
                 + ")...")
    return "\n".join(lines)


# --- set-up ----------------------------------------------------------------------------------------

def reset_data(paths: Paths, servers: str, topic: str, partitions: int,
               security: KafkaSecurity | None = None, replication_factor: int = 1) -> None:
    """--fresh: delete the tables, checkpoints and status files, and empty the topic; ``JobAlreadyRunning``,
    before anything is deleted, while a job runs on this data (its checkpoint would go under it)."""
    with ExitStack() as locks:
        for job, folder in (("The Bronze stream", paths.bronze_checkpoint), ("The Silver job", paths.silver_checkpoint),
                            ("Upkeep", upkeep_folder(paths))):
            locks.enter_context(job_lock(job, paths, folder))
        for path in (paths.delta_dir, paths.checkpoints_dir, paths.status_dir):
            remove_tree(path)
    reset_topic(servers, topic, partitions, security=security or KafkaSecurity(),
                replication_factor=replication_factor)
    log.info("Fresh start: tables, checkpoints and topic %s emptied", topic)


def part_commands(cfg_file: str | None, rate: float, silver_interval: float | None, paths: Paths,
                  security_args: list[str] | None = None) -> dict[str, list[str]]:
    """The parts' command lines; the Kafka clients get the security flags the demo was given (the
    password reaches them through the environment they inherit, never through these lines). Silver runs
    continuously, or every ``silver_interval`` seconds when given."""
    config = ["--config", cfg_file] if cfg_file else []
    kafka = [*config, *(security_args or [])]
    py = sys.executable
    return {
        "producer": [py, "producer_ventes.py", "--rate", f"{rate:g}", "--summary-json",
                     str(paths.producer_summary), *kafka],
        "bronze": [py, "spark_streaming_delta.py", *kafka],
        "silver": [py, "streaming_silver.py",
                   *(["--continuous"] if silver_interval is None else ["--interval", f"{silver_interval:g}"]),
                   "--no-dashboard", *config],
        "dashboard": [py, "streamlit_dashboard.py", *config],
        "prometheus": [py, "-m", "lakehouse.ops.prometheus", *config],
    }


def _seconds(text: str) -> float:
    """A number of seconds, or a duration with its unit ('300', '300 s', '5 min')."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text).seconds
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from e


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the whole pipeline with a live view; Ctrl-C stops it.")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE,
                        help=f"sales per second sent by the producer (default {DEFAULT_RATE:g})")
    parser.add_argument("--silver-interval", type=_seconds, default=None, metavar="SECONDS",
                        help="run Silver every SECONDS seconds instead of continuously (default: one continuous "
                             "Silver stream, a batch every [analytics] silver_trigger)")
    parser.add_argument("--refresh", type=float, default=None, metavar="SECONDS",
                        help="seconds between two refreshes of the view (default [monitoring] dashboard_refresh)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the tables, checkpoints and the topic's records before starting")
    parser.add_argument("--no-web", action="store_true",
                        help="do not start the web dashboard (streamlit_dashboard.py)")
    parser.add_argument("--prometheus", action="store_true",
                        help="also start Prometheus over the jobs' metrics, with the alert rules (make monitoring "
                             "alone; needs the prometheus package)")
    parser.add_argument("--no-broker", action="store_true",
                        help="use the broker already running at [kafka] bootstrap_servers (e.g. docker "
                             "compose) and never start or stop one")
    parser.add_argument("--duration", type=_seconds, default=None, metavar="DURATION",
                        help="stop by itself after this long, in seconds or with a unit ('300', '5 min'; "
                             "default: run until Ctrl-C)")
    add_config_flag(parser)
    add_kafka_security_flags(parser)
    args = parser.parse_args(argv)
    for name in ("rate", "silver_interval", "refresh", "duration"):
        value = getattr(args, name)
        if value is not None and not 0 < value < float("inf"):  # 0 or nan would never end or never run
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value:g}")
    return args


class Demo:
    def __init__(self, cfg: Config, args: argparse.Namespace, out: TextIO):
        self.cfg, self.args, self.out = cfg, args, out
        self.paths = Paths.from_config(cfg)
        self.broker = BrokerSettings.from_config(cfg)
        self.security = KafkaSecurity.from_config(cfg)
        self.owns_broker = False
        self.parts: list[Part] = []
        self.stop = threading.Event()
        self.silver_interval = args.silver_interval  # None: Silver runs continuously

    def setup(self) -> str:
        """Broker and topic; returns how the broker was found, for the view."""
        cfg, servers = self.cfg, self.cfg.kafka.bootstrap_servers
        problem = broker_problem(servers, cfg.kafka.connect_timeout.seconds, self.security)
        if problem is not None and problem.reachable:  # a broker is there, but refuses these settings
            raise BrokerError(problem.message)
        if problem is None:
            note = "already running (left running at the end)" if running_pid(self.broker) is None \
                else "local (left running at the end)"
        elif self.args.no_broker:
            raise BrokerError(f"Kafka broker at {servers} is not reachable: start it (docker compose up -d) "
                              "or run without --no-broker")
        elif "," in servers:
            # Several addresses: a cluster (the local three-node one, say), which one local broker cannot stand in for.
            raise BrokerError(f"Kafka brokers at {servers} are not reachable: start them (the local cluster: python "
                              "-m lakehouse.local.kafka_cluster start); the demo starts a single local broker only "
                              "for a single address")
        else:
            start_broker(self.broker)
            self.owns_broker, note = True, "started here"
        if self.args.fresh:
            reset_data(self.paths, servers, cfg.kafka.topic, cfg.kafka.partitions, self.security,
                       cfg.kafka.replication_factor)
        else:
            ensure_topic(servers, cfg.kafka.topic, cfg.kafka.partitions, cfg.kafka.replication_factor,
                         security=self.security)
        for directory in self.paths.data_dirs():
            directory.mkdir(parents=True, exist_ok=True)
        return note

    def wait_for_bronze_start(self, timeout_s: float = 300.0) -> None:
        """Until the Bronze query runs (its status file appears with its first progress report, within
        about 10 s of the start even without data), the Bronze job has exited, or a stop is asked."""
        deadline = time.monotonic() + timeout_s
        self.out.write("Starting the Bronze stream (the first start also downloads Spark's jars)...\n")
        self.out.flush()
        while time.monotonic() < deadline and not self.stop.is_set():
            if self.paths.bronze_status.exists() or not self.parts[0].running:
                return
            self.stop.wait(1)

    def run(self) -> int:
        try:
            broker_note = self.setup()
        except (BrokerError, TopicError, JobAlreadyRunning) as e:
            log.error("%s", e)
            if self.owns_broker:
                stop_broker(self.broker)
            return EXIT_SETUP_FAILED
        started = time.monotonic()
        for status_file in (self.paths.bronze_status, self.paths.producer_summary):
            status_file.unlink(missing_ok=True)  # this run's figures only
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        commands = part_commands(self.args.config, self.args.rate, self.silver_interval, self.paths,
                                 security_flag_args(self.args))
        # Jars already resolved: both Spark jobs start at once (Silver's first run waits for Bronze's first
        # sales by itself). Otherwise one Spark start at a time: the first one resolves the jars into the
        # shared Ivy cache, which two starting jobs must not write at once.
        one_at_a_time = not jars_resolved(self.paths, self.cfg.spark.jars_repositories,
                                           on_object_storage(self.cfg))
        for name in ("bronze", "producer", "silver"):
            if name == "silver" and one_at_a_time:
                self.wait_for_bronze_start()
                if self.stop.is_set():
                    break
            part = Part(name, commands[name], self.paths.logs_dir / f"{name}.log")
            part.start(env)
            self.parts.append(part)
        web_note = None if self.args.no_web or self.stop.is_set() else self.start_web(commands["dashboard"], env)
        prometheus_note = (self.start_prometheus(commands["prometheus"], env)
                           if self.args.prometheus and not self.stop.is_set() else None)
        log.info("Started %s; logs in %s", ", ".join(f"{p.name} (pid {p.pid})" for p in self.parts),
                 self.paths.logs_dir)
        refresh = self.args.refresh or self.cfg.monitoring.dashboard_refresh.seconds
        health, failed, last_screen = StreamHealth(), None, None
        tty = self.out.isatty()
        try:
            while not self.stop.is_set():
                failed = next((p for p in self.parts if p.essential and not p.running), None)
                if failed is not None:
                    break
                web_note = self.check_web(web_note)
                status = health.update(read_json(self.paths.bronze_status))
                silver = self.paths.silver_dashboard.read_text(encoding="utf-8") \
                    if self.paths.silver_dashboard.exists() else None
                now = datetime.now(timezone.utc)
                freshness = read_freshness(self.paths.silver_status, now).summary(now)
                notes = "\n".join(n for n in (web_note, prometheus_note) if n) or None
                screen = render(self.parts, broker_note, format_health(status, health.rate), freshness, silver,
                                self.paths.logs_dir, started, self.silver_interval, notes)
                if tty:
                    self.out.write("\033[H\033[2J" + screen + "\n")
                elif screen.split("\n", 1)[1] != last_screen:  # logs and pipes: only what changed
                    self.out.write(screen + "\n\n")
                last_screen = screen.split("\n", 1)[1]
                self.out.flush()
                if self.args.duration and time.monotonic() - started >= self.args.duration:
                    break
                self.stop.wait(refresh)
        finally:
            code = self.shutdown(failed)
        return code

    def _start_extra(self, name: str, command: list[str], env: dict[str, str], address: str, port: int) -> str | None:
        """Start a part the pipeline can do without, unless its port is taken; why not, or None."""
        problem = port_problem(address, port)
        if problem is None:
            part = Part(name, command, self.paths.logs_dir / f"{name}.log", essential=False)
            part.start(env)
            self.parts.append(part)
        return problem

    def start_web(self, command: list[str], env: dict[str, str]) -> str:
        """Start the web dashboard unless its port is taken; returns the view's line about it."""
        problem = self._start_extra("dashboard", command, env, self.cfg.dashboard.address, self.cfg.dashboard.port)
        if problem:
            log.warning("Web dashboard not started: %s ([dashboard] port, or --no-web)", problem)
            return f"Web dashboard: not started ({problem})"
        address = url(self.cfg)
        log.info("Web dashboard: %s", address)
        return f"Web dashboard: {address}"

    def start_prometheus(self, command: list[str], env: dict[str, str]) -> str:
        """Start Prometheus over the jobs' endpoints if it is installed and its port is free; the view's line."""
        monitoring = self.cfg.monitoring
        if shutil.which("prometheus") is None:
            log.warning("%s; the demo goes on without it", INSTALL_HINT)
            return "Prometheus: not installed (sudo apt-get install prometheus)"
        problem = self._start_extra("prometheus", command, env, monitoring.metrics_address,
                                    monitoring.prometheus_port)
        if problem:
            log.warning("Prometheus not started: %s ([monitoring] prometheus_port)", problem)
            return f"Prometheus: not started ({problem})"
        address = f"http://{scrape_host(monitoring.metrics_address)}:{monitoring.prometheus_port}"
        log.info("Prometheus: %s (alerts: %s/alerts)", address, address)
        return f"Prometheus: {address} (alerts: {address}/alerts)"

    def check_web(self, note: str | None) -> str | None:
        """The web dashboard is not essential: when it stops, say so once and go on."""
        web = next((p for p in self.parts if p.name == "dashboard"), None)
        if web is None or web.running or (note or "").startswith("Web dashboard: stopped"):
            return note
        log.warning("The web dashboard stopped (exit %s); the pipeline goes on. Last lines of %s:\n%s",
                    web.returncode, web.log_file, tail(web.log_file))
        return f"Web dashboard: stopped (exit {web.returncode}; see {web.log_file})"

    def shutdown(self, failed: Part | None) -> int:
        """Producer, then Bronze after its batch, then Silver after its run, the web page, then our broker."""
        if failed is not None:
            log.error("%s exited with code %s; last lines of %s:\n%s", failed.name, failed.returncode,
                      failed.log_file, tail(failed.log_file))
        by_name = {p.name: p for p in self.parts}
        codes = {}
        for name in ("producer", "bronze", "silver", "dashboard", "prometheus"):
            if name in by_name:
                codes[name] = by_name[name].stop(STOP_TIMEOUTS[name])
        if self.owns_broker:
            stop_broker(self.broker)
        summary = read_json(self.paths.producer_summary)
        if summary:
            log.info("Producer: %s sales delivered this run", f"{summary.get('delivered', 0):,}")
        kept = (str(self.paths.data_dir) if self.paths.lake_dir == self.paths.data_dir
                else f"{self.paths.data_dir} and the tables in {self.paths.lake_dir}")
        log.info("Stopped: %s. Data kept in %s; run again to resume, or with --fresh to start over.",
                 ", ".join(f"{n} (exit {c})" for n, c in codes.items()), kept)
        return EXIT_PART_FAILED if failed is not None else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = config_or_exit(args, kafka_security_overrides(args))
    setup_logging(cfg.monitoring.log_level)
    demo = Demo(cfg, args, sys.stdout)

    def request_stop(signum: int, _frame: object) -> None:
        log.info("Signal %d received: stopping the pipeline in order", signum)
        demo.stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return demo.run()


if __name__ == "__main__":
    sys.exit(main())
