"""A real SASL_SSL broker (TLS + SCRAM-SHA-512) started by the launcher: the whole path producer → Kafka →
Bronze works over it; a wrong password, a plaintext client and a wrong CA each fail in seconds with one
line and exit 1; the password is in no log line, no output, no file and no command line.

One broker for this file (ports 19096/19097, data in a temporary folder), stopped at the end; one
Spark stream run (the session's SparkSession).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from kafka import KafkaConsumer
from pyspark.sql import functions as F

from lakehouse.bronze.stream import start_bronze_stream
from lakehouse.local.kafka_broker import BrokerSettings
from lakehouse.platform.config import PROJECT_DIR, Config, load_config
from lakehouse.platform.kafka_security import KafkaSecurity, kafka_python_kwargs
from lakehouse.platform.paths import Paths
from tests.conftest import write_config

PORT, CONTROLLER_PORT = 19096, 19097
USER = "ventes-app"
PASSWORD = "Tr0ub4dor-" + secrets.token_urlsafe(12)  # unique: any occurrence anywhere is a leak
TOPIC = "ventes_secured"
THROWAWAY_CA = PROJECT_DIR / "tests" / "support" / "fixtures" / "throwaway-ca.pem"
# Python's start and the imports take a few seconds on a busy 2-core machine while the broker runs; the
# failure itself must come in seconds, not after Kafka's one-minute default timeouts.
FAST_S = 15.0


class Run:
    """Every output of every process this file starts, for the final leak check."""

    outputs: list[str] = []

    @classmethod
    def script(cls, config: Path, *args: str, password: str | None = PASSWORD,
               timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
        if password is not None:
            env["LAKEHOUSE_KAFKA_PASSWORD"] = password
        started = time.monotonic()
        result = subprocess.run([sys.executable, *args, "--config", str(config)], cwd=PROJECT_DIR, env=env,
                                capture_output=True, text=True, timeout=timeout)
        cls.outputs += [result.stdout, result.stderr, " ".join(result.args)]
        return result, time.monotonic() - started


def secured_cfg(data_dir: Path, password: str = PASSWORD, **kafka: object) -> Config:
    overrides = {("paths", "data_dir"): str(data_dir), ("paths", "cache_dir"): str(PROJECT_DIR / ".cache"),
                 ("kafka", "bootstrap_servers"): f"localhost:{PORT}",
                 ("kafka", "controller_port"): CONTROLLER_PORT,
                 ("kafka", "topic"): TOPIC, ("kafka", "security_protocol"): "SASL_SSL",
                 ("kafka", "username"): USER, ("kafka", "connect_timeout"): "5 seconds",
                 ("spark", "master"): "local[2]", ("spark", "shuffle_partitions"): 2}
    overrides.update({("kafka", k): v for k, v in kafka.items()})
    return load_config(PROJECT_DIR / "config.ini", env={"LAKEHOUSE_KAFKA_PASSWORD": password}, overrides=overrides)


def config_file(path: Path, cfg: Config, **kafka: object) -> Path:
    values = {"controller_port": CONTROLLER_PORT, "security_protocol": cfg.kafka.security_protocol,
              "username": cfg.kafka.username or "", "connect_timeout": "5 seconds", **kafka}
    return write_config(path, cfg, kafka=values)


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory):
    """The secured broker, started with the user-facing launcher (a subprocess, like a user would)."""
    root = tmp_path_factory.mktemp("secured")
    cfg = secured_cfg(root / "data")
    config = config_file(root / "secured.ini", cfg)
    result, elapsed = Run.script(config, "-m", "lakehouse.local.kafka_broker", "start", timeout=240)
    try:
        assert result.returncode == 0, result.stderr[-3000:]
        print(f"\nsecured broker: first start (CA, certificate, SCRAM users, format, start) took {elapsed:.1f} s")
        yield root, cfg, config
    finally:
        stop, _ = Run.script(config, "-m", "lakehouse.local.kafka_broker", "stop", password=None)
        assert stop.returncode == 0, stop.stderr


def test_launcher_keeps_secrets_private_and_reports_the_protocol(secured) -> None:
    root, cfg, config = secured
    settings = BrokerSettings.from_config(cfg)
    for private in (settings.tls.keystore, settings.tls.secrets_file, settings.properties_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert stat.S_IMODE(settings.tls.directory.stat().st_mode) == 0o700
    assert settings.tls.ca_pem.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert not (settings.tls.directory / "ca.p12").exists()  # the CA's key signed once, then went
    assert not (settings.data_dir / "format.args").exists()
    status, _ = Run.script(config, "-m", "lakehouse.local.kafka_broker", "status", password=None)
    assert status.returncode == 0
    assert f"on localhost:{PORT} (SASL_SSL, SCRAM-SHA-512 as {USER})" in status.stdout
    pid = int(settings.pid_file.read_text())
    assert PASSWORD.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert PASSWORD.encode() not in Path(f"/proc/{pid}/environ").read_bytes()


def records_in_topic(cfg: Config, expected: int) -> dict[tuple[int, int], str]:
    """Every record of the configuration's topic, read back over its secured connection: (partition, offset) →
    vente_id. Reads until ``expected`` came, then one more second (an extra record would show)."""
    consumer = KafkaConsumer(cfg.kafka.topic, bootstrap_servers=cfg.kafka.bootstrap_servers,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             **kafka_python_kwargs(KafkaSecurity.from_config(cfg)))
    records, deadline = {}, time.monotonic() + 60
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.update({(r.partition, r.offset): json.loads(r.value)["vente_id"] for r in batch})
        for batch in consumer.poll(timeout_ms=1000).values():
            records.update({(r.partition, r.offset): json.loads(r.value)["vente_id"] for r in batch})
    finally:
        consumer.close()
    return records


def test_producer_to_bronze_over_sasl_ssl(secured, spark, caplog, capfd) -> None:
    root, cfg, config = secured
    caplog.set_level(logging.DEBUG, logger="lakehouse")
    check, _ = Run.script(config, "setup_utils.py", "--fix")
    assert f"✅ Kafka broker: reachable at localhost:{PORT} (SASL_SSL, SCRAM-SHA-512 as {USER})" in check.stdout
    assert f"✅ Topic: {TOPIC} created with 3 partition(s)" in check.stdout

    produced, elapsed = Run.script(config, "producer_ventes.py", "--max", "--count", "300", "--seed", "5")
    assert produced.returncode == 0, produced.stderr[-3000:]
    assert "Summary: generated=300 delivered=300 failed=0 unsent=0" in produced.stderr
    print(f"\nproducer over SASL_SSL: 300 sales in {elapsed:.1f} s (process included)")

    paths = Paths.from_config(cfg)
    started = time.monotonic()
    query = start_bronze_stream(spark, cfg, paths, available_now=True)
    query.awaitTermination(300)
    assert query.exception() is None, str(query.exception())
    print(f"Bronze available-now run over SASL_SSL: {time.monotonic() - started:.1f} s")
    bronze = spark.read.format("delta").load(str(paths.bronze))
    # Exactly the sales sent: each record of the topic (read back over SASL_SSL) is in Bronze with its vente_id,
    # at its partition and offset, and nothing else is.
    sent = records_in_topic(cfg, 300)
    assert len(sent) == len(set(sent.values())) == 300
    landed = [((r.kafka_partition, r.kafka_offset), r.vente_id)
              for r in bronze.select("kafka_partition", "kafka_offset", "vente_id").collect()]
    assert len(landed) == 300 and dict(landed) == sent
    assert bronze.filter(F.col("kafka_topic") != TOPIC).count() == 0
    captured = capfd.readouterr()
    Run.outputs += [caplog.text, captured.out, captured.err]


def one_error_line(stderr: str) -> str:
    """The run printed one log line and no traceback (Python's or Java's)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and "Exception" not in stderr and "\tat " not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


def test_wrong_password_fails_fast_with_one_line(secured) -> None:
    root, cfg, config = secured
    expected = (f"Kafka refused the credentials for user {USER} (SASL authentication failed): check "
                "LAKEHOUSE_KAFKA_PASSWORD and [kafka] username")
    produced, elapsed = Run.script(config, "producer_ventes.py", "--count", "5", password="not-" + PASSWORD[4:])
    assert produced.returncode == 1
    assert one_error_line(produced.stderr).endswith(f"ERROR - producer_ventes - {expected}")
    print(f"\nwrong password: producer_ventes.py exited 1 after {elapsed:.1f} s")
    assert elapsed < FAST_S

    checked, elapsed = Run.script(config, "setup_utils.py", password="not-" + PASSWORD[4:])
    assert checked.returncode == 1 and checked.stderr == ""
    assert f"❌ Kafka broker: {expected}" in checked.stdout
    assert "❌ Topic: not checked: see the Kafka broker line" in checked.stdout
    print(f"wrong password: setup_utils.py exited 1 after {elapsed:.1f} s")
    assert elapsed < FAST_S

    streamed, elapsed = Run.script(config, "spark_streaming_delta.py", "--available-now",
                                   password="not-" + PASSWORD[4:])
    assert streamed.returncode == 1
    assert one_error_line(streamed.stderr).endswith(expected)
    print(f"wrong password: spark_streaming_delta.py exited 1 after {elapsed:.1f} s")
    assert elapsed < FAST_S


def test_plaintext_client_fails_fast_with_one_line(secured) -> None:
    root, cfg, _ = secured
    plain = write_config(root / "plain.ini", cfg, kafka={"controller_port": CONTROLLER_PORT,
                                                         "connect_timeout": "5 seconds"})
    expected = (f"The Kafka broker at localhost:{PORT} expects TLS (a SASL_SSL listener) but [kafka] "
                "security_protocol = PLAINTEXT: set security_protocol = SASL_SSL, username and "
                "LAKEHOUSE_KAFKA_PASSWORD")
    produced, elapsed = Run.script(plain, "producer_ventes.py", "--count", "5", password=None)
    assert produced.returncode == 1
    assert one_error_line(produced.stderr).endswith(expected)
    print(f"\nplaintext client: producer_ventes.py exited 1 after {elapsed:.1f} s")
    assert elapsed < FAST_S
    checked, elapsed = Run.script(plain, "setup_utils.py", password=None)
    assert checked.returncode == 1 and f"❌ Kafka broker: {expected}" in checked.stdout
    print(f"plaintext client: setup_utils.py exited 1 after {elapsed:.1f} s")
    assert elapsed < FAST_S


def test_wrong_or_missing_ca_file_is_named(secured) -> None:
    root, cfg, config = secured
    wrong = config_file(root / "wrong-ca.ini", cfg, ssl_cafile=THROWAWAY_CA)
    checked, elapsed = Run.script(wrong, "setup_utils.py")
    assert checked.returncode == 1
    line = next(line for line in checked.stdout.splitlines() if line.startswith("❌ Kafka broker"))
    assert line.startswith(f"❌ Kafka broker: The TLS certificate of the Kafka broker at localhost:{PORT} is "
                           "not trusted (")
    assert line.endswith(f"): [kafka] ssl_cafile = {THROWAWAY_CA} must be the CA that signed it, and the "
                         "certificate must name the host in [kafka] bootstrap_servers")
    assert elapsed < FAST_S
    missing = config_file(root / "missing-ca.ini", cfg, ssl_cafile=root / "nowhere.pem")
    produced, _ = Run.script(missing, "producer_ventes.py", "--count", "5")
    assert produced.returncode == 1
    assert one_error_line(produced.stderr).endswith(
        f"CA file {root / 'nowhere.pem'} ([kafka] ssl_cafile) does not exist: start the secured local broker "
        "once (python -m lakehouse.local.kafka_broker start writes it), or set [kafka] ssl_cafile to the PEM "
        "file of the CA that signed your broker's certificate")


def normalized(properties: str, root: str) -> list[str]:
    """A server.properties with its data folder, its secrets and its bind address made comparable."""
    lines = []
    for line in properties.replace(root, "<root>").replace("0.0.0.0:", "localhost:").splitlines():
        if line.startswith("ssl.keystore.password="):
            line = "ssl.keystore.password=<secret>"
        elif ".sasl.jaas.config=" in line:
            line = line.split(" password=")[0] + " password=<secret>"
        lines.append(line)
    return lines


def test_docker_prepare_makes_what_the_secured_service_runs_from(secured) -> None:
    root, cfg, _ = secured
    docker_cfg = secured_cfg(root / "docker-data")
    config = config_file(root / "docker.ini", docker_cfg)
    prepared, elapsed = Run.script(config, "-m", "lakehouse.local.kafka_broker", "docker-prepare", timeout=240)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    print(f"\ndocker-prepare: {elapsed:.1f} s")
    target = Paths.from_config(docker_cfg).kafka_docker
    assert (target / "kraft-logs" / "meta.properties").exists()
    # The metadata checkpoint written by the format holds the SCRAM users.
    assert list((target / "kraft-logs" / "__cluster_metadata-0").glob("*.checkpoint"))
    assert (target / "tls" / "ca.pem").exists() and not (target / "format.properties").exists()
    assert stat.S_IMODE((target / "server.properties").stat().st_mode) == 0o600
    # The same broker as the launcher's: only the folder, the secrets and the bind address differ.
    docker = (target / "server.properties").read_text()
    local = BrokerSettings.from_config(cfg).properties_file.read_text()
    assert "listeners=SASL_SSL://0.0.0.0:19096,CONTROLLER://localhost:19097" in docker
    assert normalized(docker, "/var/lib/kafka/lakehouse") == \
        normalized(local, str(BrokerSettings.from_config(cfg).data_dir))
    # docker-compose.yml runs exactly that folder and that file.
    compose = (PROJECT_DIR / "docker-compose.yml").read_text()
    assert "- ./data/kafka-docker:/var/lib/kafka/lakehouse" in compose
    assert '"/opt/kafka/bin/kafka-server-start.sh", "/var/lib/kafka/lakehouse/server.properties"' in compose


def test_the_password_is_nowhere(secured) -> None:
    """The launcher, the setup check, the producer and the Bronze job run here against the secured broker (a
    topic and a data folder of their own), with the password and with a wrong one; then no output of any process
    this file started (the other tests' too, if they ran before), no log and no file holds it: the broker's,
    the jobs', the tables and checkpoints, the configurations."""
    root, cfg, broker_config = secured
    ca = BrokerSettings.from_config(cfg).tls.ca_pem
    jobs_cfg = secured_cfg(root / "leak-check", topic=f"{TOPIC}_leak_check", ssl_cafile=str(ca))
    config = config_file(root / "leak-check.ini", jobs_cfg, ssl_cafile=ca)
    status, _ = Run.script(broker_config, "-m", "lakehouse.local.kafka_broker", "status", password=None)
    assert status.returncode == 0 and f"(SASL_SSL, SCRAM-SHA-512 as {USER})" in status.stdout
    checked, _ = Run.script(config, "setup_utils.py", "--fix")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    produced, _ = Run.script(config, "producer_ventes.py", "--max", "--count", "20", "--seed", "7")
    assert produced.returncode == 0 and "delivered=20 failed=0" in produced.stderr, produced.stderr[-3000:]
    streamed, _ = Run.script(config, "spark_streaming_delta.py", "--available-now")
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    assert DeltaTable(str(Paths.from_config(jobs_cfg).bronze)).to_pyarrow_table().num_rows == 20
    refused, _ = Run.script(config, "producer_ventes.py", "--count", "5", password="not-" + PASSWORD[4:])
    assert refused.returncode == 1

    assert all(PASSWORD not in text for text in Run.outputs)
    # The broker's log, its data (SCRAM keeps salted keys only), the tables and checkpoints, the configs.
    leaking = [path for path in root.rglob("*") if path.is_file() and PASSWORD.encode() in path.read_bytes()]
    assert leaking == []
    assert (Paths.from_config(cfg).logs_dir / "kafka.log").stat().st_size > 0
    # The wrong passwords tried above share the real one's tail: they are nowhere either.
    assert all(PASSWORD[4:] not in text for text in Run.outputs)
