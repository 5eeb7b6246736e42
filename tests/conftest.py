"""Shared fixtures: one real Kafka broker per run, one SparkSession per test process (make test runs two).

The folder decides a test's tier (see TIERS): tests/unit, tests/integration, tests/system; tests/support holds
what they share (the hostile corpus, helpers, fixture files)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest
from kafka import KafkaProducer

from lakehouse.local.kafka_broker import BrokerSettings, broker_answers, start, stop
from lakehouse.platform.config import PROJECT_DIR, Config, load_config
from lakehouse.platform.paths import Paths
from lakehouse.platform.topics import ensure_topic
from tests.support.jvm_archive import (
    SERVICE_FLAGS,
    SHORT_JOB_FLAGS,
    archive_path,
    java_options,
    start_making,
    stop_making,
)

# Jobs started by the tests serve no Prometheus endpoint unless a test asks for one (two workers' jobs would
# compete for the default ports).
NO_METRICS = ("metrics_port_bronze", "metrics_port_silver", "metrics_port_producer")
# Nor does a producer they run send returns or cancellations unless a test asks for them: most tests count
# the records a producer sends and expect sales only.
NO_CORRECTIONS = ("return_ratio", "cancel_ratio")


def make_config(data_dir: Path, env: dict[str, str] | None = None, **overrides: object) -> Config:
    """A test configuration: defaults, the given data directory, the project's jar caches.

    ``overrides`` are ``section__key=value`` pairs. The environment is ignored so that a developer's
    LAKEHOUSE_* variables cannot change what the tests see; ``env`` gives the few a test needs (secrets).
    """
    values = {("paths", "data_dir"): str(data_dir), ("paths", "cache_dir"): str(PROJECT_DIR / ".cache"),
              ("spark", "master"): "local[2]", ("spark", "shuffle_partitions"): 2,
              **{("monitoring", key): 0 for key in NO_METRICS},
              **{("producer", key): 0 for key in NO_CORRECTIONS}}
    for name, value in overrides.items():
        section, key = name.split("__")
        values[(section, key)] = value
    return load_config(PROJECT_DIR / "config.ini", env=env or {}, overrides=values)


def write_config(path: Path, cfg: Config, **extra: dict[str, object]) -> Path:
    """Write ``cfg``'s paths and Kafka settings (plus ``extra`` sections) as a config file for scripts
    run as subprocesses."""
    sections: dict[str, dict[str, object]] = {
        "paths": {"data_dir": cfg.data_dir, "cache_dir": cfg.cache_dir},
        "kafka": {"bootstrap_servers": cfg.kafka.bootstrap_servers, "topic": cfg.kafka.topic},
        "spark": {"master": "local[2]", "shuffle_partitions": 2},
        "monitoring": dict.fromkeys(NO_METRICS, 0),
        "producer": dict.fromkeys(NO_CORRECTIONS, 0),
    }
    for section, values in extra.items():
        sections.setdefault(section, {}).update(values)
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {v}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


TESTS_DIR = Path(__file__).resolve().parent
# The folder is the tier. tests/unit: pure Python and DataFrame transforms in this process's SparkSession, no
# Delta table (make test-fast); tests/integration: real Delta tables and the shared broker too; tests/system:
# processes of their own (Spark jobs, launchers, brokers and clusters, the demo, spark-submit, Chromium). make test
# runs the three.
TIERS = ("system", "integration", "unit")
# Fixtures that bring up the shared broker: not for tests/unit.
BROKER_FIXTURES = {"kafka_bootstrap", "topic"}


# The test files whose tests take longest, slowest first: those that run jobs, brokers and clusters (a minute or
# more each), then the files that write Delta tables, then the unit test files that take longest (make
# test-fast). make test and make test-fast hand whole files to their two workers in collection order (--dist
# loadfile --no-loadscope-reorder): each file's fixtures are built once, and starting with these and leaving the
# many short files for the end lets the two workers finish together. The files not listed follow, tier by tier
# (system, integration, unit).
SLOWEST_FIRST = ["system/test_object_store.py", "system/test_spark_cluster.py", "system/test_bronze_stream.py",
                 "system/test_demo.py", "system/test_spark_submit.py", "system/test_kafka_cluster.py",
                 "system/test_upkeep_while_running.py", "integration/test_silver_incremental.py",
                 "system/test_silver_continuous.py", "system/test_bronze_broker.py",
                 "integration/test_hostile_stream.py", "integration/test_silver_random_histories.py",
                 "integration/test_bronze_restart_and_compaction.py",
                 "integration/test_query_utils.py", "integration/test_bronze_commits.py",
                 "integration/test_web_dashboard.py", "integration/test_corrections_readers.py",
                 "integration/test_bronze_corrections.py", "integration/test_sql_guard.py", "integration/test_lake.py",
                 "unit/test_silver_transforms.py", "unit/test_bronze_transforms.py", "unit/test_contract_corpus.py",
                 "unit/test_simulator.py"]


def where(item: pytest.Item) -> str:
    """A test's file, relative to tests/ ("unit/test_config.py"); its first part is the test's tier."""
    return item.path.relative_to(TESTS_DIR).as_posix() if item.path.is_relative_to(TESTS_DIR) else ""


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A unit test that asks for the broker fails before any fixture is set up (the broker is not started)."""
    if where(item).startswith("unit/") and BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
        pytest.fail("unit tests use no Kafka broker: move this test to tests/integration", pytrace=False)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """A unit test that left a Delta table in its temporary folder fails: the tables belong to tests/integration."""
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if where(item).startswith("unit/") and isinstance(tmp, Path) and next(tmp.rglob("_delta_log"), None):
        pytest.fail("unit tests write no Delta table: move this test to tests/integration", pytrace=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the slowest files first (see SLOWEST_FIRST), then the others tier by tier; within a file, the order
    stays."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    order = {id(item): i for i, item in enumerate(items)}

    def place(item: pytest.Item) -> tuple[int, int]:
        path = where(item)
        if path in rank:
            return rank[path], order[id(item)]
        folder = path.split("/")[0]
        return len(rank) + (TIERS.index(folder) if folder in TIERS else len(TIERS)), order[id(item)]

    items.sort(key=place)


def unit_only(config: pytest.Config) -> bool:
    """Whether the run holds unit tests only (make test-fast), by the paths it was given."""
    unit = TESTS_DIR / "unit"
    paths = [(config.invocation_params.dir / arg.split("::")[0]).resolve() for arg in config.args]
    return bool(paths) and all(path == unit or unit in path.parents for path in paths)


@pytest.fixture(autouse=True)
def _no_handler_left_behind():
    """Entry points called in-process (``main()``) configure logging for themselves: their handlers write
    to the stream pytest captured for that test, closed afterwards. Left on the root logger, they turn
    every later log call into a "Logging error" on stderr; remove them after each test."""
    root = logging.getLogger()
    before = set(root.handlers)
    level = root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lakehouse")


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder ``name``, filled by ``build(folder)`` once per test run: by the first process of the run that
    asks for it, the run's other worker (pytest-xdist) waiting for it, then reading the same folder. For what
    the tests only read (a lake), which several test files need."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder = root / f"shared-{name}"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / f"shared-{name}.built"
        if not done.exists():
            if folder.exists():  # left half-built by a process that failed
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def corrections_lake(spark, tmp_path_factory: pytest.TempPathFactory) -> tuple[Paths, Path]:
    """The small lake of returns and cancellations (``tests.support.corrections_lake``), built once per run
    (its tests only read it): its paths and its configuration file."""
    from tests.support.corrections_lake import build_corrections_lake, lake_files

    return lake_files(built_once(tmp_path_factory, "corrections", lambda root: build_corrections_lake(spark, root)))


def _broker_note(config: pytest.Config) -> Path:
    """The file where a test run notes the broker it started, named after the run and so the same for
    all its workers (pytest-xdist): the broker is stopped once, by the process that ran the whole run."""
    run = config.workerinput["testrunuid"] if hasattr(config, "workerinput") else config.lakehouse_run
    return Path(tempfile.gettempdir()) / f"lakehouse-tests-{run}.broker"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the run itself (with or without workers)
        run = getattr(config.option, "testrunuid", None) or uuid.uuid4().hex
        if hasattr(config.option, "testrunuid"):  # pytest-xdist hands it to the workers it starts
            config.option.testrunuid = run
        config.lakehouse_run = run
        # The Spark jobs the tests run as subprocesses inherit the environment (so do the workers, started
        # after this): JVM options for short jobs, and the class archive, made in the background on a first
        # run; jobs started before it is ready run without it. Unit tests alone start no such job.
        # The brokers, Kafka nodes and Spark daemons the tests start: the first JIT tier (see SERVICE_FLAGS);
        # Spark's daemons the serial collector too, as the jobs.
        os.environ.setdefault("KAFKA_OPTS", SERVICE_FLAGS)
        os.environ.setdefault("SPARK_DAEMON_JAVA_OPTS", SHORT_JOB_FLAGS)
        if "SPARK_SUBMIT_OPTS" not in os.environ:
            archive = archive_path()
            os.environ["SPARK_SUBMIT_OPTS"] = java_options(archive)
            if not unit_only(config):
                config.lakehouse_archive = archive, start_making(archive, archive.parent / "make.log")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the broker a test started for this run, once every worker is done (and the class archive's
    maker, if the run ended first)."""
    if hasattr(config, "workerinput"):
        return
    archive, job = getattr(config, "lakehouse_archive", (None, None))
    if job is not None:
        stop_making(job, archive)
    note = _broker_note(config)
    if note.exists():
        stop(BrokerSettings.from_config(make_config(Path(note.read_text(encoding="utf-8")))))
        note.unlink()


@pytest.fixture(scope="session")
def kafka_bootstrap(session_dir: Path, request: pytest.FixtureRequest) -> str:
    """A real broker: the one already running at the configured address (CI starts it with the
    user-facing launcher), or one this run starts with the same launcher, shared by every worker of
    the run and stopped at its end."""
    cfg = make_config(session_dir / "broker")
    servers = cfg.kafka.bootstrap_servers
    with open(Path(tempfile.gettempdir()) / "lakehouse-tests-broker.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two workers must not both start one
        if not broker_answers(servers, 2.0):
            start(BrokerSettings.from_config(cfg))
            _broker_note(request.config).write_text(str(cfg.data_dir), encoding="utf-8")
    return servers


# PySpark's setting for the Python call sites of column expressions (see the spark fixture).
CALL_SITES = "spark.python.sql.dataFrameDebugging.enabled"


@pytest.fixture(scope="session")
def spark(session_dir: Path):
    from pyspark.errors.utils import is_debugging_enabled

    from lakehouse.platform.spark import build_spark

    # This session lives as long as the test process, but make test keeps both cores busy from start to end:
    # it gets the short-job flags (the JIT's first tier, the serial collector), which cut make test-fast's CPU
    # time in the same wall time. And the class archive once it exists, as the jobs: its class path is theirs
    # (PySpark's jars; this project's come through spark.jars, loaded later).
    options = os.environ.get("SPARK_SUBMIT_OPTS")
    # And PySpark does not note, for each column expression built, the Python line that built it (for the
    # "DataFrame query context" of Spark's error messages): four or five JVM calls per expression, some hundred
    # thousand in a run, the Bronze contract check's large expressions above all. A static setting, given to the
    # JVM as a system property (Spark reads spark.* ones); PySpark reads it once per process, at the first
    # expression built, hence the check below.
    os.environ["SPARK_SUBMIT_OPTS"] = f"{java_options(archive_path())} -D{CALL_SITES}=false"
    try:
        # One partition for shuffles, for Delta's log and for new data (spark.default.parallelism): the tests'
        # tables hold a handful of rows, and each task of a stage has a cost of its own (serialised, scheduled,
        # its results gathered). Files are still read by two tasks at once.
        session = build_spark(make_config(session_dir / "spark", spark__shuffle_partitions=1), "tests")
    finally:
        if options is not None:
            os.environ["SPARK_SUBMIT_OPTS"] = options
        else:
            del os.environ["SPARK_SUBMIT_OPTS"]
    # Its queries run on a handful of rows: Spark's interpreted expressions rather than the Java code it would
    # generate and compile for each new query (make test-fast is shorter that way). The jobs run as
    # subprocesses keep Spark's default.
    session.conf.set("spark.sql.codegen.wholeStage", "false")
    session.conf.set("spark.sql.codegen.factoryMode", "NO_CODEGEN")
    # Nor does it re-plan its queries between stages (adaptive execution), which on a handful of rows costs more
    # than it finds. Streaming queries never used it.
    session.conf.set("spark.sql.adaptive.enabled", "false")
    assert session.conf.get(CALL_SITES) == "false" and not is_debugging_enabled(), \
        "PySpark notes the call site of each column expression"
    yield session
    session.stop()


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    """A fresh single-use topic with 3 partitions."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    ensure_topic(kafka_bootstrap, name, partitions=3)
    return name


def wait_for(condition, timeout_s: float, what: str) -> None:
    """Poll ``condition`` every second until it holds; fail saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def free_port() -> int:
    """A port free on 127.0.0.1 (the system's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_kafka_base() -> int:
    """A first port for a local three-node Kafka cluster: the six ports from it on (a client and a controller
    port per node) free on 127.0.0.1."""
    for _ in range(50):
        base = free_port()
        if base + 6 < 65535 and all(not _taken(base + i) for i in range(6)):
            return base
    raise AssertionError("no six free ports in a row")


def _taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def produce(bootstrap: str, topic: str, records: list[tuple[str | None, bytes]]) -> None:
    """Send raw (key, value) records and wait until every one is acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [producer.send(topic, key=k.encode() if k is not None else None, value=v)
                   for k, v in records]
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()


def sale_json(**fields: object) -> bytes:
    return json.dumps(fields).encode("utf-8")
