"""Kafka security settings without a broker: the password's rules, the two translations (kafka-python,
Spark), the messages, the masking of secrets in logs, the secured broker's properties."""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import logging
from pathlib import Path

import pytest

from lakehouse.bronze.stream import stream_failure_message
from lakehouse.local.broker_tls import BROKER_USER, BrokerSecrets, certificate_hosts, scram_credential
from lakehouse.local.kafka_broker import BrokerError, BrokerSettings, check_formatted_for, server_properties
from lakehouse.ops.demo import part_commands
from lakehouse.platform.cli import (
    LOG_FORMAT,
    RedactSecrets,
    add_kafka_security_flags,
    kafka_security_overrides,
    security_flag_args,
    setup_logging,
)
from lakehouse.platform.config import PROJECT_DIR, ConfigError, Secret, load_config, redact
from lakehouse.platform.kafka_security import (
    KafkaSecurity,
    cafile_problem,
    jaas_config,
    kafka_python_kwargs,
    security_settings,
    spark_source_options,
)
from lakehouse.platform.paths import Paths

PASSWORD = 'pa ss"wo\\rd-x7Qv'  # a space, a quote and a backslash: the JAAS string must escape them
SECURED = {("kafka", "security_protocol"): "SASL_SSL", ("kafka", "username"): "alice"}
# Any valid PEM certificate does for the settings checks (no connection is made): a throwaway
# self-signed certificate made for these tests (its key was never kept).
THROWAWAY_CA = PROJECT_DIR / "tests" / "support" / "fixtures" / "throwaway-ca.pem"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def secured_config(tmp_path: Path, text: str = "", overrides: dict | None = None):
    """A SASL_SSL configuration for user alice, the password in the (given) environment."""
    values = {**SECURED, ("paths", "data_dir"): str(tmp_path / "data"), **(overrides or {})}
    return load_config(write(tmp_path / "conf" / "config.ini", text),
                       env={"LAKEHOUSE_KAFKA_PASSWORD": PASSWORD}, overrides=values)


def test_password_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    cfg = secured_config(tmp_path)
    assert cfg.kafka.password == Secret(PASSWORD)
    assert cfg.kafka.password.reveal() == PASSWORD
    security = KafkaSecurity.from_config(cfg)
    for shown in (repr(cfg.kafka.password), str(cfg.kafka.password), repr(security), str(security),
                  repr(cfg.kafka.as_dict()), security.describe()):
        assert PASSWORD not in shown
    assert security.describe() == "SASL_SSL, SCRAM-SHA-512 as alice"


def test_password_in_a_file_or_a_flag_is_refused_without_echoing_it(tmp_path: Path) -> None:
    in_ini = write(tmp_path / "c.ini", f"[kafka]\npassword = {PASSWORD}\n")
    with pytest.raises(ConfigError) as in_file:
        load_config(in_ini, env={})
    assert str(in_file.value) == (f"{in_ini}: [kafka] password is read from the environment only (a secret): "
                                  "set LAKEHOUSE_KAFKA_PASSWORD instead")
    with pytest.raises(ConfigError) as on_flag:
        load_config(write(tmp_path / "empty.ini", ""), env={}, overrides={("kafka", "password"): PASSWORD})
    assert str(on_flag.value) == ("command line: [kafka] password is read from the environment only (a secret): "
                                  "set LAKEHOUSE_KAFKA_PASSWORD instead")
    assert PASSWORD not in str(in_file.value) + str(on_flag.value)


def test_the_parsers_have_no_password_flag() -> None:
    parser = argparse.ArgumentParser()
    add_kafka_security_flags(parser)
    args = parser.parse_args(["--security-protocol", "SASL_SSL", "--username", "bob", "--ssl-cafile", "ca.pem"])
    assert kafka_security_overrides(args) == {
        ("kafka", "security_protocol"): "SASL_SSL", ("kafka", "sasl_mechanism"): None,
        ("kafka", "username"): "bob", ("kafka", "ssl_cafile"): "ca.pem"}
    assert security_flag_args(args) == ["--security-protocol", "SASL_SSL", "--username", "bob",
                                        "--ssl-cafile", "ca.pem"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--password", "x"])


def test_kafka_python_kwargs(tmp_path: Path) -> None:
    assert kafka_python_kwargs(KafkaSecurity()) == {"security_protocol": "PLAINTEXT"}
    ca = write(tmp_path / "conf" / "ca.pem", THROWAWAY_CA.read_text())
    cfg = secured_config(tmp_path, "[kafka]\nssl_cafile = ca.pem\n")
    assert kafka_python_kwargs(KafkaSecurity.from_config(cfg)) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "alice",
        "sasl_plain_password": PASSWORD, "ssl_cafile": str(ca), "ssl_check_hostname": True}


def test_spark_source_options(tmp_path: Path) -> None:
    assert spark_source_options(KafkaSecurity()) == {"kafka.security.protocol": "PLAINTEXT"}
    ca = THROWAWAY_CA
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "alice", Secret(PASSWORD), ca)
    assert spark_source_options(security) == {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                                  'username="alice" password="pa ss\\"wo\\\\rd-x7Qv";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": str(ca),
    }
    assert jaas_config("a", Secret("p")) == \
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="a" password="p";'


def test_ca_file_defaults_to_the_local_brokers_and_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    default = secured_config(tmp_path)
    assert KafkaSecurity.from_config(default).cafile == Paths.from_config(default).kafka_ca == \
        tmp_path / "data" / "kafka" / "tls" / "ca.pem"
    cfg = secured_config(tmp_path, "[kafka]\nssl_cafile = certs/ca.pem\n")
    assert KafkaSecurity.from_config(cfg).cafile == tmp_path / "conf" / "certs" / "ca.pem"
    # Benchmarks move the data directory but keep pointing at the same CA file.
    assert security_settings(cfg) == {("kafka", "security_protocol"): "SASL_SSL",
                                      ("kafka", "sasl_mechanism"): "SCRAM-SHA-512", ("kafka", "username"): "alice",
                                      ("kafka", "ssl_cafile"): str(tmp_path / "conf" / "certs" / "ca.pem")}


def test_settings_problems_name_what_to_set(tmp_path: Path) -> None:
    ca = THROWAWAY_CA
    no_user = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", None, Secret(PASSWORD), ca)
    no_password = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "alice", None, ca)
    assert no_user.problem() == \
        "[kafka] security_protocol = SASL_SSL needs [kafka] username (LAKEHOUSE_KAFKA_USERNAME)"
    assert no_password.problem() == (
        "[kafka] security_protocol = SASL_SSL needs the password of user alice: set the environment variable "
        "LAKEHOUSE_KAFKA_PASSWORD (it is never read from config.ini or a flag)")
    missing = tmp_path / "nope.pem"
    assert cafile_problem(missing).startswith(f"CA file {missing} ([kafka] ssl_cafile) does not exist: ")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n", encoding="utf-8")
    assert cafile_problem(garbage).startswith(f"CA file {garbage} ([kafka] ssl_cafile) is not a readable PEM "
                                              "certificate (")
    assert cafile_problem(ca) is None
    assert KafkaSecurity().problem() is None


def test_secrets_are_masked_in_every_log_line() -> None:
    Secret("hunter2-masked")  # read secrets are remembered for masking
    assert redact("user alice hunter2-masked") == "user alice ***"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("test_kafka_security.masking")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("config: %s", {"sasl_plain_password": "hunter2-masked"})
        try:
            raise ValueError("bad password hunter2-masked")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "hunter2-masked" not in text
    assert "{'sasl_plain_password': '***'}" in text and "ValueError: bad password ***" in text


def test_the_kafka_client_s_tracebacks_reach_the_terminal_as_one_line(capsys) -> None:
    """A broker stopped while the producer read a reply: kafka-python logged a stack trace on the user's
    terminal (seen once in a full run of tests/test_producer.py's broker-stopped test)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging()
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError:
            logging.getLogger("kafka.net.transport").exception("<Transport node=1>: Error receiving network data"
                                                               " closing socket")
            logging.getLogger("lakehouse.mine").exception("ours keep theirs")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("kafka.net.transport - <Transport node=1>: Error receiving network data closing "
                             "socket (ConnectionResetError: [Errno 104] Connection reset by peer)")
    assert "ours keep theirs" in lines[1] and lines[2] == "Traceback (most recent call last):"


def test_scram_credential_holds_a_salted_password_not_the_password() -> None:
    salt = bytes(range(24))
    text = scram_credential("SCRAM-SHA-512", "alice", "s3cret", iterations=8192, salt=salt)
    expected = base64.b64encode(hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 8192)).decode()
    assert text == (f"SCRAM-SHA-512=[name=alice,salt={base64.b64encode(salt).decode()},"
                    f"saltedpassword={expected},iterations=8192]")
    assert "s3cret" not in text


def test_certificate_names_the_listeners_host() -> None:
    assert certificate_hosts("localhost") == ["localhost", "127.0.0.1"]
    assert certificate_hosts("kafka.example") == ["kafka.example", "localhost", "127.0.0.1"]


def test_secured_broker_properties(tmp_path: Path) -> None:
    cfg = secured_config(tmp_path, overrides={("kafka", "bootstrap_servers"): "localhost:19500",
                                              ("kafka", "controller_port"): 19501})
    settings = BrokerSettings.from_config(cfg)
    text = server_properties(settings, BrokerSecrets("store-pw-1", "broker-pw-1"))
    lines = set(text.splitlines())
    tls = tmp_path / "data" / "kafka" / "tls"
    assert {
        "controller.quorum.voters=1@localhost:19501",
        "listeners=SASL_SSL://localhost:19500,CONTROLLER://localhost:19501",
        "advertised.listeners=SASL_SSL://localhost:19500",
        "inter.broker.listener.name=SASL_SSL",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram."
        f'ScramLoginModule required username="{BROKER_USER}" password="broker-pw-1";',
        f"ssl.keystore.location={tls / 'broker.p12'}", "ssl.keystore.password=store-pw-1",
        "ssl.truststore.type=PEM", f"ssl.truststore.location={tls / 'ca.pem'}",
    } <= lines
    assert PASSWORD not in text  # the clients' password is never in the broker's files
    assert "PLAINTEXT://" not in text.replace("CONTROLLER:PLAINTEXT", "")


def test_secured_start_refuses_storage_formatted_otherwise(tmp_path: Path) -> None:
    settings = BrokerSettings.from_config(secured_config(tmp_path))
    (settings.log_dirs).mkdir(parents=True)
    (settings.log_dirs / "meta.properties").write_text("", encoding="utf-8")
    with pytest.raises(BrokerError, match=r"was formatted for PLAINTEXT, without SCRAM users: to start it "
                                          r"with SASL_SSL, wipe it"):
        check_formatted_for(settings)
    settings.formatted_for_file.write_text(json.dumps({"security_protocol": "SASL_SSL", "username": "bob"}))
    with pytest.raises(BrokerError, match="was formatted with SCRAM user bob, not alice: set"):
        check_formatted_for(settings)
    settings.formatted_for_file.write_text(json.dumps({"security_protocol": "SASL_SSL", "username": "alice"}))
    check_formatted_for(settings)


def test_stream_failure_names_refused_credentials(tmp_path: Path) -> None:
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "alice", Secret(PASSWORD), tmp_path / "ca.pem")
    error = ("org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed during "
             "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512")
    assert stream_failure_message(error, "localhost:1", tmp_path / "ckpt", True, security) == (
        "Kafka refused the credentials for user alice (SASL authentication failed): check "
        "LAKEHOUSE_KAFKA_PASSWORD and [kafka] username. The Bronze stream stopped after its last committed "
        "batch; nothing is lost: fix the setting, then start this job again (it resumes from "
        f"{tmp_path / 'ckpt'})")


def test_demo_passes_security_flags_to_the_kafka_clients_never_the_password(tmp_path: Path) -> None:
    commands = part_commands("c.ini", 3.0, 30.0, Paths(tmp_path, tmp_path),
                             ["--security-protocol", "SASL_SSL", "--username", "alice"])
    assert commands["producer"][-6:] == ["--config", "c.ini", "--security-protocol", "SASL_SSL", "--username",
                                         "alice"]
    assert commands["bronze"][-6:] == commands["producer"][-6:]
    assert all("password" not in arg.lower() for command in commands.values() for arg in command)
