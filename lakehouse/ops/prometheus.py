"""Prometheus over the pipeline's jobs: the scrape configuration, and a launcher (make monitoring).

Usage: python -m lakehouse.ops.prometheus [--config PATH] [--write-config-only]

The scrape configuration is made from config.ini's ``[monitoring]`` settings: one job per endpoint that is
on (``lakehouse_bronze``, ``lakehouse_silver``, ``lakehouse_producer``), read every ``scrape_interval``, and
the project's alert rules (``monitoring/alerts.yml``). ``monitoring/prometheus.yml`` is that configuration
for the default settings, for a Prometheus of one's own. The launcher writes it under
``data/prometheus/``, then runs Debian's ``prometheus`` on ``metrics_address:prometheus_port`` with its data
in ``data/prometheus/data`` until Ctrl-C or SIGTERM; Prometheus' own web page is the graph view.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from lakehouse.platform.cli import add_config_flag, config_or_exit, setup_logging
from lakehouse.platform.config import PROJECT_DIR, Config
from lakehouse.platform.paths import Paths
from lakehouse.serve.web_server import port_problem

log = logging.getLogger("lakehouse.ops.prometheus")

RULES_FILE = PROJECT_DIR / "monitoring" / "alerts.yml"
SHIPPED_CONFIG = PROJECT_DIR / "monitoring" / "prometheus.yml"
INSTALL_HINT = ("Prometheus is not installed: sudo apt-get install prometheus (Debian, Ubuntu), or put the "
                "prometheus binary of https://prometheus.io/download/ on PATH")
JOBS = (("lakehouse_bronze", "metrics_port_bronze"), ("lakehouse_silver", "metrics_port_silver"),
        ("lakehouse_producer", "metrics_port_producer"))


def scrape_host(address: str) -> str:
    """Where Prometheus, on this machine, reaches an endpoint listening on ``address``."""
    return "127.0.0.1" if address in ("0.0.0.0", "::", "") else address


def _duration(seconds: float) -> str:
    """Prometheus' duration syntax: whole units only ('1m', '5s', '1500ms')."""
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    return f"{int(seconds) // 60}m" if seconds >= 60 and seconds % 60 == 0 else f"{int(seconds)}s"


def scrape_config(cfg: Config, rules: str, scrape_interval_s: float | None = None) -> str:
    """The Prometheus configuration (YAML) for ``cfg``'s endpoints, with ``rules`` as its rule file."""
    interval = _duration(scrape_interval_s or cfg.monitoring.scrape_interval.seconds)
    host = scrape_host(cfg.monitoring.metrics_address)
    host = f"[{host}]" if ":" in host else host
    lines = ["# Prometheus configuration of the lakehouse's jobs (python -m lakehouse.ops.prometheus writes it",
             "# from config.ini's [monitoring] settings; this is it for the defaults).",
             "global:", f"  scrape_interval: {interval}", f"  evaluation_interval: {interval}",
             "rule_files:", f"  - {rules}", "scrape_configs:"]
    for job, setting in JOBS:
        port = getattr(cfg.monitoring, setting)
        if port:
            lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: ['{host}:{port}']"]
    return "\n".join(lines) + "\n"


def prometheus_command(cfg: Config, config_file: Path, data_dir: Path) -> list[str]:
    address = cfg.monitoring.metrics_address
    address = f"[{address}]" if ":" in address else address
    return ["prometheus", f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address={address}:{cfg.monitoring.prometheus_port}",
            "--storage.tsdb.retention.time=7d"]


def write_scrape_config(cfg: Config, paths: Paths) -> Path:
    folder = paths.data_dir / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(scrape_config(cfg, str(RULES_FILE)), encoding="utf-8")
    return config_file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run Prometheus over the pipeline's jobs, with its alert rules.")
    parser.add_argument("--write-config-only", action="store_true",
                        help="write data/prometheus/prometheus.yml and say where, without starting Prometheus")
    add_config_flag(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = config_or_exit(args)
    setup_logging(cfg.monitoring.log_level)
    paths = Paths.from_config(cfg)
    config_file = write_scrape_config(cfg, paths)
    if args.write_config_only:
        print(config_file)
        return 0
    if shutil.which("prometheus") is None:
        log.error("%s", INSTALL_HINT)
        return 1
    problem = port_problem(cfg.monitoring.metrics_address, cfg.monitoring.prometheus_port)
    if problem:
        log.error("Prometheus not started: %s ([monitoring] prometheus_port)", problem)
        return 1
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    log_file = paths.logs_dir / "prometheus.log"
    command = prometheus_command(cfg, config_file, paths.data_dir / "prometheus" / "data")
    host = scrape_host(cfg.monitoring.metrics_address)
    log.info("Prometheus on http://%s:%d (alerts: /alerts), scraping every %s; its log: %s", host,
             cfg.monitoring.prometheus_port, cfg.monitoring.scrape_interval, log_file)
    with open(log_file, "ab") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def forward(signum: int, _frame: object) -> None:
        server.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = server.wait()
    if code not in (0, -signal.SIGTERM):
        log.error("Prometheus exited with code %d: see %s", code, log_file)
        return 1
    log.info("Prometheus stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
