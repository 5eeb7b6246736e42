"""Kafka security settings without a broker: the password's rules and the masking of secrets in logs."""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import pytest

from lakehouse.platform.cli import (LOG_FORMAT, RedactSecrets, add_kafka_security_flags, kafka_security_overrides,
                                    security_flag_args)
from lakehouse.platform.config import ConfigError, Secret, load_config, redact

PASSWORD = 'pa ss"wo\\rd-x7Qv'  # a space, a quote and a backslash
SECURED = {("kafka", "security_protocol"): "SASL_SSL", ("kafka", "username"): "alice"}


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
    for shown in (repr(cfg.kafka.password), str(cfg.kafka.password), repr(cfg.kafka.as_dict())):
        assert PASSWORD not in shown


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
