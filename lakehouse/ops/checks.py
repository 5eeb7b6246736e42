"""Environment checks behind setup_utils.py: each returns one ✅/❌ line's worth of facts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from lakehouse.local.kafka_broker import BrokerSettings
from lakehouse.local.kraft import jars_cached
from lakehouse.platform.config import PROJECT_DIR, Config
from lakehouse.platform.kafka_probe import broker_problem
from lakehouse.platform.kafka_security import KafkaSecurity
from lakehouse.platform.lake import remove_tree
from lakehouse.platform.paths import Paths
from lakehouse.platform.topics import TopicError, ensure_topic, topic_exists

MIN_PYTHON = (3, 10)
MIN_JAVA = 17


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'✅' if self.ok else '❌'} {self.name}: {self.detail}"


def check_python() -> CheckResult:
    current = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    return CheckResult("Python", ok, f"{current} (need ≥ {'.'.join(map(str, MIN_PYTHON))})")


def pinned_requirements(path: Path = PROJECT_DIR / "requirements.txt") -> dict[str, str]:
    """``name==version`` pins of requirements.txt (comments and blank lines skipped)."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, pinned = line.partition("==")
            pins[name.strip()] = pinned.strip()
    return pins


def check_packages(path: Path = PROJECT_DIR / "requirements.txt") -> CheckResult:
    problems = []
    pins = pinned_requirements(path)
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            problems.append(f"{name} missing (want {pinned})")
            continue
        if installed != pinned:
            problems.append(f"{name} {installed} (want {pinned})")
    if problems:
        return CheckResult("Python packages", False,
                           "; ".join(problems) + " — run: pip install -r requirements.txt")
    return CheckResult("Python packages", True, f"{len(pins)} pinned packages match requirements.txt")


def java_major(java: str = "java") -> int | None:
    """Major version of ``java`` (e.g. 17), or None if it cannot be run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def check_java() -> CheckResult:
    major = java_major()
    if major is None:
        return CheckResult("Java", False, f"not found on PATH (need ≥ {MIN_JAVA})")
    return CheckResult("Java", major >= MIN_JAVA, f"{major} (need ≥ {MIN_JAVA})")


def check_broker_jars(cfg: Config) -> CheckResult:
    settings = BrokerSettings.from_config(cfg)
    if jars_cached(settings):
        return CheckResult("Kafka broker jars", True, f"cached in {settings.libs_dir}")
    if shutil.which("mvn"):
        return CheckResult("Kafka broker jars", True,
                           f"not cached yet; Maven will fetch Kafka {settings.version} on first start")
    return CheckResult("Kafka broker jars", False, "not cached and Maven (mvn) not installed")


def check_kafka(cfg: Config) -> CheckResult:
    servers = cfg.kafka.bootstrap_servers
    timeout = cfg.kafka.connect_timeout.seconds
    security = KafkaSecurity.from_config(cfg)
    problem = broker_problem(servers, timeout, security)
    if problem is None:
        how = f" ({security.describe()})" if security.secured else ""
        return CheckResult("Kafka broker", True, f"reachable at {servers}{how}")
    if problem.reachable:
        return CheckResult("Kafka broker", False, problem.message)
    return CheckResult("Kafka broker", False,
                       f"not reachable at {servers} within {timeout:g} s — start it: "
                       "python -m lakehouse.local.kafka_broker start (or docker compose up -d)")


def check_topic(cfg: Config, fix: bool) -> CheckResult:
    topic, servers = cfg.kafka.topic, cfg.kafka.bootstrap_servers
    timeout = cfg.kafka.connect_timeout.seconds
    security = KafkaSecurity.from_config(cfg)
    try:
        if fix and ensure_topic(servers, topic, cfg.kafka.partitions, cfg.kafka.replication_factor,
                                timeout, security):
            return CheckResult("Topic", True, f"{topic} created with {cfg.kafka.partitions} partition(s)")
        if topic_exists(servers, topic, timeout, security):
            return CheckResult("Topic", True, f"{topic} exists")
    except TopicError as e:
        return CheckResult("Topic", False, str(e))
    return CheckResult("Topic", False, f"{topic} does not exist — create it: python setup_utils.py --fix")


def check_data_dirs(cfg: Config, fix: bool) -> CheckResult:
    paths = Paths.from_config(cfg)
    problems = []
    for directory in paths.data_dirs():
        if fix:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                problems.append(f"{directory}: {e.strerror}")
                continue
        if not directory.is_dir():
            problems.append(f"{directory} missing")
            continue
        try:
            with tempfile.NamedTemporaryFile(dir=directory):
                pass
        except OSError as e:
            problems.append(f"{directory} not writable ({e.strerror})")
    if problems:
        hint = "" if fix else " — create them: python setup_utils.py --fix"
        return CheckResult("Data directories", False, "; ".join(problems) + hint)
    return CheckResult("Data directories", True, f"writable under {paths.data_dir}")


def check_spark(cfg: Config) -> CheckResult:
    """Start Spark with Kafka and Delta and round-trip a tiny Delta table."""
    from lakehouse.platform.spark import SparkSetupError, build_spark

    try:
        spark = build_spark(cfg, "setup_utils")
    except SparkSetupError as e:
        return CheckResult("Spark + Delta + Kafka jars", False, str(e))
    table = Paths.from_config(cfg).delta_dir / "_setup_check"
    try:
        spark.range(3).write.format("delta").mode("overwrite").save(str(table))
        rows = spark.read.format("delta").load(str(table)).count()
    finally:
        remove_tree(table)
    ok = rows == 3
    return CheckResult("Spark + Delta + Kafka jars", ok,
                       f"Spark {spark.version} wrote and read back {rows}/3 rows of a Delta table")
