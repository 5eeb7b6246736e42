"""Kafka client security in one place: from the [kafka] settings to kafka-python's arguments and to the
Spark Kafka source's options, and the one-line messages users read when those settings are wrong.

Two protocols: PLAINTEXT (the default: no TLS, no authentication) and SASL_SSL (traffic encrypted with
TLS, the broker's certificate checked against a CA file and its host name, clients authenticated with
SCRAM-SHA-512). The password comes from the environment only (LAKEHOUSE_KAFKA_PASSWORD, see
lakehouse/platform/config/schema.py) and is handed to the client libraries, never to a log line or a
command line.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from lakehouse.platform.config import Config, Secret, env_var_name
from lakehouse.platform.paths import Paths

PLAINTEXT = "PLAINTEXT"
SASL_SSL = "SASL_SSL"
PASSWORD_ENV = env_var_name("kafka", "password")
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def environment_without_password(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a process that has no use for the clients' password (the broker, keytool)."""
    return {k: v for k, v in (os.environ if env is None else env).items() if k != PASSWORD_ENV}


class KafkaSecurityError(RuntimeError):
    """The security settings are incomplete, or the CA file is missing or unreadable."""


@dataclass(frozen=True)
class ScramUser:
    """The SCRAM user of a secured connection and its password (printing it shows ``***``)."""

    name: str
    password: Secret


@dataclass(frozen=True)
class KafkaSecurity:
    """How clients talk to the broker. ``password`` is a ``Secret``: printing this object shows ``***``."""

    protocol: str = PLAINTEXT
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: Secret | None = None
    cafile: Path | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> "KafkaSecurity":
        """The [kafka] security settings; an empty ssl_cafile means the local broker's own CA."""
        kafka = cfg.kafka
        if kafka.security_protocol == PLAINTEXT:
            return cls()
        cafile = (cfg.resolve_path(kafka.ssl_cafile) if kafka.ssl_cafile
                  else Paths.from_config(cfg).kafka_ca)
        return cls(protocol=kafka.security_protocol, mechanism=kafka.sasl_mechanism,
                   username=kafka.username or None, password=kafka.password, cafile=cafile)

    @property
    def secured(self) -> bool:
        return self.protocol == SASL_SSL

    def describe(self) -> str:
        """A short, secret-free description for status lines, e.g. ``SASL_SSL, SCRAM-SHA-512 as alice``."""
        if not self.secured:
            return "PLAINTEXT, no TLS, no authentication"
        return f"{self.protocol}, {self.mechanism} as {self.username}"

    def problem(self) -> str | None:
        """What is missing or wrong in the settings themselves (before any connection), or None."""
        if not self.secured:
            return None
        return self.credentials_problem() or cafile_problem(self.cafile)

    def credentials_problem(self) -> str | None:
        """A missing user name or password with SASL_SSL, or None."""
        if not self.secured:
            return None
        # The variable names are written out (not built) so that docs/TROUBLESHOOTING.md can quote them.
        if not self.username:
            return "[kafka] security_protocol = SASL_SSL needs [kafka] username (LAKEHOUSE_KAFKA_USERNAME)"
        if self.password is None:
            return (f"[kafka] security_protocol = SASL_SSL needs the password of user {self.username}: set the "
                    "environment variable LAKEHOUSE_KAFKA_PASSWORD (it is never read from config.ini or a flag)")
        return None

    def require(self) -> None:
        """Raise ``KafkaSecurityError`` with ``problem()``'s message, if there is one."""
        message = self.problem()
        if message is not None:
            raise KafkaSecurityError(message)

    def scram_user(self) -> ScramUser:
        """The user name and password to log in with; ``KafkaSecurityError`` with ``credentials_problem()``'s
        message when either is missing."""
        if self.username and self.password is not None:
            return ScramUser(self.username, self.password)
        raise KafkaSecurityError(self.credentials_problem()
                                 or f"[kafka] security_protocol = {self.protocol} has no SCRAM user")


def cafile_problem(cafile: Path | None) -> str | None:
    """Why ``cafile`` cannot be used to check the broker's certificate, or None."""
    if cafile is None or not cafile.is_file():
        return (f"CA file {cafile} ([kafka] ssl_cafile) does not exist: start the secured local broker once "
                "(python -m lakehouse.local.kafka_broker start writes it), or set [kafka] ssl_cafile to "
                "the PEM file of the CA that signed your broker's certificate")
    try:
        ssl.create_default_context(cafile=str(cafile))
    except (ssl.SSLError, OSError, ValueError) as e:
        return (f"CA file {cafile} ([kafka] ssl_cafile) is not a readable PEM certificate "
                f"({getattr(e, 'reason', None) or e.__class__.__name__}): give the CA's certificate in PEM "
                "form (-----BEGIN CERTIFICATE-----)")
    return None


def security_settings(cfg: Config) -> dict[tuple[str, str], str]:
    """``cfg``'s [kafka] security settings as overrides for a derived configuration with another data
    directory (benchmarks): the CA file as an absolute path, so that it still points at the same file.
    The password is not among them: it stays in the environment, which child processes inherit."""
    security = KafkaSecurity.from_config(cfg)
    settings = {("kafka", "security_protocol"): security.protocol}
    if security.secured:
        settings.update({("kafka", "sasl_mechanism"): security.mechanism,
                         ("kafka", "username"): security.username or "",
                         ("kafka", "ssl_cafile"): str(security.cafile)})
    return settings


# --- the two translations ----------------------------------------------------------------------------

def kafka_python_kwargs(security: KafkaSecurity) -> dict:
    """kafka-python client arguments (producer, admin, consumer); ``KafkaSecurityError`` when the
    settings are incomplete."""
    if not security.secured:
        return {"security_protocol": PLAINTEXT}
    security.require()
    user = security.scram_user()
    return {
        "security_protocol": SASL_SSL,
        "sasl_mechanism": security.mechanism,
        "sasl_plain_username": user.name,
        "sasl_plain_password": user.password.reveal(),
        "ssl_cafile": str(security.cafile),
        # The broker's certificate must name the host we connect to (kafka-python's default, stated).
        "ssl_check_hostname": True,
    }


def spark_source_options(security: KafkaSecurity) -> dict[str, str]:
    """Options of Spark's Kafka source (``kafka.``-prefixed consumer settings); ``KafkaSecurityError``
    when the settings are incomplete. The JAAS string holds the password: never log these options."""
    if not security.secured:
        return {"kafka.security.protocol": PLAINTEXT}
    security.require()
    user = security.scram_user()
    return {
        "kafka.security.protocol": SASL_SSL,
        "kafka.sasl.mechanism": security.mechanism,
        "kafka.sasl.jaas.config": jaas_config(user.name, user.password),
        # A PEM CA file needs no Java truststore and no truststore password.
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": str(security.cafile),
    }


def jaas_config(username: str, password: Secret) -> str:
    """The JAAS line of Kafka's Java clients for SCRAM (quotes and backslashes escaped)."""
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"{SCRAM_LOGIN_MODULE} required username={quoted(username)} password={quoted(password.reveal())};"


# --- messages ------------------------------------------------------------------------------------------

def auth_failed_message(security: KafkaSecurity) -> str:
    return (f"Kafka refused the credentials for user {security.username} (SASL authentication failed): "
            "check LAKEHOUSE_KAFKA_PASSWORD and [kafka] username")


def untrusted_certificate_message(address: str, cafile: Path | None, reason: str) -> str:
    return (f"The TLS certificate of the Kafka broker at {address} is not trusted ({reason}): [kafka] "
            f"ssl_cafile = {cafile} must be the CA that signed it, and the certificate must name the host "
            "in [kafka] bootstrap_servers")


def expects_tls_message(address: str) -> str:
    return (f"The Kafka broker at {address} expects TLS (a SASL_SSL listener) but [kafka] security_protocol "
            "= PLAINTEXT: set security_protocol = SASL_SSL, username and LAKEHOUSE_KAFKA_PASSWORD")


def not_tls_message(address: str) -> str:
    return (f"The Kafka broker at {address} does not speak TLS (a PLAINTEXT listener) but [kafka] "
            "security_protocol = SASL_SSL: set security_protocol = PLAINTEXT, or point bootstrap_servers at "
            "the broker's SASL_SSL listener")


def mechanism_refused_message(address: str, security: KafkaSecurity) -> str:
    return (f"The Kafka broker at {address} does not accept SASL mechanism {security.mechanism}: enable it "
            "on the broker (sasl.enabled.mechanisms)")


def explain_java_error(error: str, security: KafkaSecurity, servers: str) -> str | None:
    """A one-line message for a security failure in a Java client's error text (Spark's Kafka source),
    or None when the error is about something else."""
    if "SaslAuthenticationException" in error or "Authentication failed during authentication" in error:
        return auth_failed_message(security)
    if "SSLHandshakeException" in error or "PKIX path" in error or "No subject alternative" in error:
        return untrusted_certificate_message(servers, security.cafile, "TLS handshake failed")
    return None
