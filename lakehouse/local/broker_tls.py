"""What the secured local broker needs besides its jars: a local CA and a broker certificate (made with
the JDK's keytool), the broker's own secrets, and the SCRAM credentials written when its storage is
formatted.

Everything lives in one directory under the data directory (``data/kafka/tls``, never in git), with
owner-only permissions: ``ca.pem`` (the CA certificate clients trust), ``broker.p12`` (the broker's key
and certificate), ``secrets.json`` (the keystore password and the password of the broker's own SCRAM
user). The CA's private key is deleted once it has signed the broker's certificate: nothing else can
be signed with it. Passwords reach keytool through its environment, never its command line.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lakehouse.platform.config import remember_secret
from lakehouse.platform.kafka_security import environment_without_password

# The broker authenticates to itself (inter-broker traffic, e.g. transaction markers) as this user.
BROKER_USER = "lakehouse-broker"
SCRAM_ITERATIONS = 8192
CERT_VALIDITY_DAYS = 3650
_STORE_PASSWORD_ENV = "KAFKA_LOCAL_STORE_PASSWORD"
_HASHES = {"SCRAM-SHA-512": "sha512", "SCRAM-SHA-256": "sha256"}


class TlsError(RuntimeError):
    """keytool is missing or failed."""


@dataclass(frozen=True)
class BrokerSecrets:
    """The broker's own secrets: never shown, kept in ``secrets.json`` (mode 0600)."""

    store_password: str
    broker_password: str

    def __repr__(self) -> str:
        return "BrokerSecrets(***)"


@dataclass(frozen=True)
class TlsFiles:
    """Where the TLS material of one broker lives."""

    directory: Path

    @property
    def ca_pem(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.directory / "broker.p12"

    @property
    def secrets_file(self) -> Path:
        return self.directory / "secrets.json"

    @property
    def hosts_file(self) -> Path:
        return self.directory / "hosts.txt"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (0600), from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def jdk_tool(name: str) -> str | None:
    """A JDK program (java, keytool): in $JAVA_HOME/bin, else on PATH; None when neither has it."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / name).exists():
        return str(Path(java_home) / "bin" / name)
    return shutil.which(name)


def keytool() -> str:
    """The JDK's keytool."""
    found = jdk_tool("keytool")
    if found is None:
        raise TlsError("keytool (part of Java) is not installed; the secured local broker needs it to make "
                       "its certificate (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)")
    return found


def certificate_hosts(host: str) -> list[str]:
    """The names the broker's certificate is valid for: the listener's host and the loopback names."""
    hosts = ["localhost", "127.0.0.1"]
    return hosts if host in hosts else [host, *hosts]


def _san(hosts: list[str]) -> str:
    entries = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            entries.append(f"ip:{host}")
        except ValueError:
            entries.append(f"dns:{host}")
    return "SAN=" + ",".join(entries)


def _run_keytool(args: list[str], store_password: str) -> None:
    env = dict(environment_without_password(), **{_STORE_PASSWORD_ENV: store_password})
    result = subprocess.run([keytool(), *args], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise TlsError(f"keytool {args[0]} failed (exit {result.returncode}): "
                       f"{(result.stdout + result.stderr).strip()[-1500:]}")


def _make(work: Path, hosts: list[str], store_password: str) -> None:
    """A CA, a broker key pair, the broker certificate signed by the CA, all in ``work``."""
    pw = ["-storepass:env", _STORE_PASSWORD_ENV, "-keypass:env", _STORE_PASSWORD_ENV]
    ca_store = ["-keystore", str(work / "ca.p12"), "-storetype", "PKCS12"]
    broker_store = ["-keystore", str(work / "broker.p12"), "-storetype", "PKCS12"]
    validity = ["-validity", str(CERT_VALIDITY_DAYS)]
    _run_keytool(["-genkeypair", "-alias", "ca", "-dname", "CN=Lakehouse local Kafka CA", "-keyalg", "RSA",
                  "-keysize", "2048", *validity, "-ext", "bc:c=ca:true", "-ext", "ku:c=keyCertSign,cRLSign",
                  *ca_store, *pw], store_password)
    _run_keytool(["-exportcert", "-rfc", "-alias", "ca", "-file", str(work / "ca.pem"), *ca_store,
                  "-storepass:env", _STORE_PASSWORD_ENV], store_password)
    _run_keytool(["-genkeypair", "-alias", "broker", "-dname", f"CN={hosts[0]}", "-keyalg", "RSA",
                  "-keysize", "2048", *validity, *broker_store, *pw], store_password)
    _run_keytool(["-certreq", "-alias", "broker", "-file", str(work / "broker.csr"), *broker_store,
                  "-storepass:env", _STORE_PASSWORD_ENV], store_password)
    _run_keytool(["-gencert", "-alias", "ca", "-infile", str(work / "broker.csr"),
                  "-outfile", str(work / "broker.pem"), "-rfc", *validity, "-ext", _san(hosts),
                  "-ext", "ku:c=digitalSignature,keyEncipherment", "-ext", "eku=serverAuth,clientAuth",
                  *ca_store, "-storepass:env", _STORE_PASSWORD_ENV], store_password)
    # The chain: the CA first (trusted), then the signed certificate replaces the self-signed one.
    _run_keytool(["-importcert", "-noprompt", "-alias", "ca", "-file", str(work / "ca.pem"), *broker_store,
                  "-storepass:env", _STORE_PASSWORD_ENV], store_password)
    _run_keytool(["-importcert", "-alias", "broker", "-file", str(work / "broker.pem"), *broker_store,
                  "-storepass:env", _STORE_PASSWORD_ENV], store_password)
    for leftover in ("ca.p12", "broker.csr", "broker.pem"):  # the CA key signs nothing else
        (work / leftover).unlink()


def read_secrets(files: TlsFiles) -> BrokerSecrets:
    data = json.loads(files.secrets_file.read_text(encoding="utf-8"))
    result = BrokerSecrets(data["store_password"], data["broker_password"])
    remember_secret(result.store_password)
    remember_secret(result.broker_password)
    return result


def ensure_tls(files: TlsFiles, host: str) -> BrokerSecrets:
    """The CA, the broker's keystore and secrets, made the first time (or again when the listener's host
    changed, so that the certificate names it). Returns the broker's secrets."""
    hosts = certificate_hosts(host)
    complete = all(p.exists() for p in (files.ca_pem, files.keystore, files.secrets_file, files.hosts_file))
    if complete and files.hosts_file.read_text(encoding="utf-8").split() == hosts:
        return read_secrets(files)
    work = files.directory.with_name(files.directory.name + ".new")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700, parents=True)
    made = BrokerSecrets(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    remember_secret(made.store_password)
    remember_secret(made.broker_password)
    try:
        _make(work, hosts, made.store_password)
        write_private(work / "secrets.json", json.dumps({"store_password": made.store_password,
                                                         "broker_password": made.broker_password}))
        (work / "hosts.txt").write_text(" ".join(hosts) + "\n", encoding="utf-8")
        for path in work.iterdir():
            path.chmod(0o600)
        (work / "ca.pem").chmod(0o644)  # a certificate is public (the folder stays the owner's only)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(files.directory, ignore_errors=True)
    work.rename(files.directory)
    return made


def scram_credential(mechanism: str, name: str, password: str, iterations: int = SCRAM_ITERATIONS,
                     salt: bytes | None = None) -> str:
    """The ``--add-scram`` value of ``kafka-storage format`` for one user, as a salted password (RFC 5802:
    SaltedPassword = Hi(password, salt, i), i.e. PBKDF2 with HMAC over the mechanism's hash). Only the
    derived keys are stored by the broker; this string is written to a private file, never to argv."""
    salt = salt if salt is not None else secrets.token_bytes(24)
    salted = hashlib.pbkdf2_hmac(_HASHES[mechanism], password.encode("utf-8"), salt, iterations)
    encoded = base64.b64encode(salted).decode("ascii")
    remember_secret(encoded)
    return (f"{mechanism}=[name={name},salt={base64.b64encode(salt).decode('ascii')},"
            f"saltedpassword={encoded},iterations={iterations}]")
