"""Is the Kafka broker there, and can this client talk to it? One answer in seconds, with the reason.

Without this, a client whose security settings do not match the broker's listener waits for its whole
timeout and then says only that no broker is available (kafka-python retries a refused SCRAM login
like a lost connection until its bootstrap timeout). The probe looks at the listener first with plain
sockets (a Kafka request in clear; a TLS handshake; one SCRAM login), then asks for metadata with
kafka-python:

- nothing accepts connections                    → unreachable
- PLAINTEXT client, the listener only speaks TLS  → "expects TLS"
- SASL_SSL client, the listener answers in clear  → "does not speak TLS"
- the certificate does not verify against the CA  → "not trusted"
- SCRAM refused                                   → "refused the credentials"
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
import socket
import ssl
import struct
from dataclasses import dataclass
from typing import Iterator

from lakehouse.platform.kafka_security import (
    KafkaSecurity,
    KafkaSecurityError,
    auth_failed_message,
    expects_tls_message,
    kafka_python_kwargs,
    mechanism_refused_message,
    not_tls_message,
    untrusted_certificate_message,
)

PLAINTEXT_SECURITY = KafkaSecurity()
_API_VERSIONS_KEY = 18
_SASL_HANDSHAKE_KEY = 17
_SASL_AUTHENTICATE_KEY = 36
_CORRELATION_ID = 7
_CLIENT_ID = b"lakehouse-probe"
_SASL_AUTHENTICATION_FAILED = 58
_UNSUPPORTED_SASL_MECHANISM = 33
_SCRAM_HASHES = {"SCRAM-SHA-512": "sha512", "SCRAM-SHA-256": "sha256"}


@dataclass(frozen=True)
class BrokerProblem:
    """Why a client cannot use the broker. ``reachable`` is False when nothing answered at all;
    ``refused_login`` is True when the broker refused the SCRAM credentials."""

    reachable: bool
    message: str
    refused_login: bool = False


def first_host_port(bootstrap_servers: str) -> tuple[str, int]:
    """The first ``host:port`` of a bootstrap list, which the local broker listens on."""
    first = bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host.strip("[]") or "localhost", int(port)


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def _kafka_request(sock: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    """Send one request (header v1, as every non-flexible version uses) and return the response's body."""
    header = struct.pack(">hhih", api_key, version, _CORRELATION_ID, len(_CLIENT_ID)) + _CLIENT_ID
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    response = _recv_exact(sock, struct.unpack(">i", _recv_exact(sock, 4))[0])
    if struct.unpack(">i", response[:4])[0] != _CORRELATION_ID:
        raise ConnectionError("not a Kafka response")
    return response[4:]


def answers_in_clear(host: str, port: int, timeout_s: float) -> bool:
    """True when a Kafka broker answers an ApiVersions request sent without TLS. A TLS listener reads
    the request as a broken handshake and closes the connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            _kafka_request(sock, _API_VERSIONS_KEY, 0, b"")
            return True
    except OSError:  # ConnectionError and timeouts included
        return False


def speaks_tls(host: str, port: int, timeout_s: float) -> bool:
    """True when the listener completes a TLS handshake (its certificate is not checked here)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            with context.wrap_socket(sock, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False


def tls_problem(host: str, port: int, security: KafkaSecurity, timeout_s: float) -> BrokerProblem | None:
    """Handshake as the clients will (CA file, host name check); None when the certificate verifies."""
    address = f"{host}:{port}"
    context = ssl.create_default_context(cafile=str(security.cafile))
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            with context.wrap_socket(sock, server_hostname=host):
                return None
    except ssl.SSLCertVerificationError as e:
        return BrokerProblem(True, untrusted_certificate_message(address, security.cafile,
                                                                 e.verify_message or e.reason or "rejected"))
    except (OSError, ssl.SSLError):
        pass
    if answers_in_clear(host, port, timeout_s):
        return BrokerProblem(True, not_tls_message(address))
    return BrokerProblem(False, f"The Kafka broker at {address} did not complete a TLS handshake within "
                                f"{timeout_s:g} s")


def _read_string(data: bytes, at: int) -> tuple[str | None, int]:
    size = struct.unpack(">h", data[at:at + 2])[0]
    if size < 0:
        return None, at + 2
    return data[at + 2:at + 2 + size].decode("utf-8", "replace"), at + 2 + size


class _LoginRefused(Exception):
    def __init__(self, error_code: int):
        super().__init__(error_code)
        self.error_code = error_code


def _authenticate(sock: ssl.SSLSocket, message: bytes) -> bytes:
    """One SaslAuthenticate v1 round trip: the client's SASL message out, the server's back."""
    body = _kafka_request(sock, _SASL_AUTHENTICATE_KEY, 1, struct.pack(">i", len(message)) + message)
    error_code = struct.unpack(">h", body[:2])[0]
    _, at = _read_string(body, 2)
    if error_code:
        raise _LoginRefused(error_code)
    size = struct.unpack(">i", body[at:at + 4])[0]
    return body[at + 4:at + 4 + max(size, 0)]


def scram_login(sock: ssl.SSLSocket, mechanism: str, username: str, password: str) -> None:
    """A SCRAM login (RFC 5802) over Kafka's SaslHandshake and SaslAuthenticate requests; raises
    ``_LoginRefused`` with Kafka's error code when the broker says no."""
    name = mechanism.encode()
    handshake = _kafka_request(sock, _SASL_HANDSHAKE_KEY, 1, struct.pack(">h", len(name)) + name)
    error_code = struct.unpack(">h", handshake[:2])[0]
    if error_code:
        raise _LoginRefused(error_code)
    digest = _SCRAM_HASHES[mechanism]
    nonce = base64.b64encode(secrets.token_bytes(18)).decode("ascii")
    first_bare = f"n={username.replace('=', '=3D').replace(',', '=2C')},r={nonce}"
    server_first = _authenticate(sock, f"n,,{first_bare}".encode()).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(",") if "=" in item)
    if not fields.get("r", "").startswith(nonce):
        raise ConnectionError("the broker's SCRAM answer does not carry our nonce")
    salt, iterations = base64.b64decode(fields["s"]), int(fields["i"])
    salted = hashlib.pbkdf2_hmac(digest, password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(hashlib.new(digest, client_key).digest(), auth_message, digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode("ascii")
    _authenticate(sock, f"{without_proof},p={proof}".encode())


def login_problem(host: str, port: int, security: KafkaSecurity, timeout_s: float) -> BrokerProblem | None:
    """Log in once with the configured user (over TLS, as the clients will); None when the broker says yes."""
    address, user = f"{host}:{port}", security.scram_user()
    context = ssl.create_default_context(cafile=str(security.cafile))
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            with context.wrap_socket(raw, server_hostname=host) as sock:
                scram_login(sock, security.mechanism, user.name, user.password.reveal())
                return None
    except _LoginRefused as e:
        if e.error_code == _UNSUPPORTED_SASL_MECHANISM:
            return BrokerProblem(True, mechanism_refused_message(address, security))
        return BrokerProblem(True, auth_failed_message(security), refused_login=True)
    except (OSError, ssl.SSLError, ValueError, KeyError, struct.error):
        # Not a clear refusal (the broker still starting, a connection cut): let the client decide.
        return None


@contextlib.contextmanager
def quiet_kafka_client() -> Iterator[None]:
    """kafka-python logs every failed connection at ERROR; the probe reports the cause itself, once."""
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def broker_problem(bootstrap_servers: str, timeout_s: float,
                   security: KafkaSecurity = PLAINTEXT_SECURITY) -> BrokerProblem | None:
    """None when a broker at ``bootstrap_servers`` answers a metadata request with these security
    settings within about ``timeout_s``; otherwise what is wrong, in one line."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError, SaslAuthenticationFailedError, UnsupportedSaslMechanismError

    settings_problem = security.problem()
    if settings_problem is not None:
        return BrokerProblem(True, settings_problem)
    unreachable = BrokerProblem(False, f"Kafka broker at {bootstrap_servers} is not reachable")
    try:
        addresses = [first_host_port(a) for a in bootstrap_servers.split(",") if a.strip()]
    except ValueError:  # not host:port: let the client report it
        addresses = []
    # Nothing listening: say so without the Kafka client, whose connection errors would fill the
    # terminal with ERROR lines before the caller's own message.
    listening = [(h, p) for h, p in addresses if port_open(h, p, min(timeout_s, 2.0))]
    if addresses and not listening:
        return unreachable
    if listening:
        host, port = listening[0]
        step = min(timeout_s, 5.0)
        if security.secured:
            problem = tls_problem(host, port, security, step) or login_problem(host, port, security, step)
            if problem is not None:
                return problem
        elif not answers_in_clear(host, port, step):
            if speaks_tls(host, port, step):
                return BrokerProblem(True, expects_tls_message(f"{host}:{port}"))
            return unreachable

    try:
        with quiet_kafka_client():
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                     request_timeout_ms=int(timeout_s * 1000),
                                     bootstrap_timeout_ms=int(timeout_s * 1000),
                                     client_id="lakehouse-probe", **kafka_python_kwargs(security))
    except SaslAuthenticationFailedError:
        return BrokerProblem(True, auth_failed_message(security), refused_login=True)
    except UnsupportedSaslMechanismError:
        return BrokerProblem(True, mechanism_refused_message(bootstrap_servers, security))
    except KafkaSecurityError as e:
        return BrokerProblem(True, str(e))
    except (KafkaError, OSError, ValueError):
        return unreachable
    try:
        with quiet_kafka_client():
            admin.list_topics()
        return None
    except SaslAuthenticationFailedError:
        return BrokerProblem(True, auth_failed_message(security), refused_login=True)
    except (KafkaError, OSError):
        return unreachable
    finally:
        admin.close()
