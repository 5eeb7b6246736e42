"""A local S3-compatible object store for the lake: s3proxy (``org.gaul:s3proxy`` from Maven Central) over
a folder of this machine, with credentials.

Usage: python -m lakehouse.local.object_store start|stop|status [--config PATH]
(``make cluster-start`` starts it with the rest of the local cluster.)

It serves ``[s3] endpoint`` (which must then be ``http://127.0.0.1:<port>`` or ``http://localhost:<port>``)
to the key pair ``[s3] access_key`` / ``LAKEHOUSE_S3_SECRET_KEY``, and creates the bucket of ``[paths] lake``
(``lakehouse`` when the lake is not on object storage yet). Objects are files under
``<data_dir>/cluster/s3/<bucket>``. The store's filesystem backend treats a file any local user can read as
public-read (anonymous GET and LIST), so the store runs with umask 077 and the bucket folder is 0700:
without the key pair, every request is refused. Its pid, properties (0600: they hold the secret) and blobs
live under ``<data_dir>/cluster``, its log in ``<data_dir>/logs/cluster/s3proxy.log``. ``start`` and
``stop`` are idempotent.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lakehouse.local.broker_tls import jdk_tool
from lakehouse.local.daemon import EXIT_NOT_RUNNING, Daemon, Exited, NotReady, command_line, state, wait_until_ready
from lakehouse.platform.config import Config, ConfigError
from lakehouse.platform.kafka_probe import port_open
from lakehouse.platform.lake import S3Settings, on_object_storage, split_uri
from lakehouse.platform.paths import Paths

log = logging.getLogger("lakehouse.local.object_store")

MAIN_CLASS = "org.gaul.s3proxy.Main"
DEFAULT_BUCKET = "lakehouse"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


class ObjectStoreError(RuntimeError):
    """The local object store could not be fetched or started; the message says why."""


@dataclass(frozen=True)
class StoreSettings:
    version: str
    host: str
    port: int
    bucket: str
    access_key: str
    secret_key: str | None
    heap: str
    start_timeout_s: float
    jar_dir: Path
    state_dir: Path
    log_file: Path

    @classmethod
    def from_config(cls, cfg: Config) -> "StoreSettings":
        paths = Paths.from_config(cfg)
        s3 = S3Settings.from_config(cfg)
        url = urlsplit(s3.endpoint)
        if url.scheme != "http" or url.hostname not in LOCAL_HOSTS or not url.port:
            raise ConfigError(f"[s3] endpoint = {s3.endpoint!r}: the local object store serves "
                              "http://127.0.0.1:<port> only (set that, or use your own S3 endpoint without it)")
        bucket = split_uri(cfg.paths.lake or "")[0] if on_object_storage(cfg) else DEFAULT_BUCKET
        return cls(version=cfg.cluster.s3proxy_version, host="127.0.0.1", port=url.port, bucket=bucket,
                   access_key=s3.access_key, secret_key=s3.secret_key, heap="256m",
                   start_timeout_s=cfg.cluster.start_timeout.seconds, jar_dir=paths.cache_dir / "s3proxy",
                   state_dir=paths.data_dir / "cluster" / "s3", log_file=paths.logs_dir / "cluster" / "s3proxy.log")

    @property
    def jar(self) -> Path:
        return self.jar_dir / f"s3proxy-{self.version}-jar-with-dependencies.jar"

    @property
    def blobs(self) -> Path:
        return self.state_dir / "blobs"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "s3proxy.pid"

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "s3proxy.properties"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def daemon(self) -> Daemon:
        """The store's process: s3proxy with this store's own properties file. Signals go to its process group."""
        return Daemon("The object store", self.pid_file, self.log_file, ("s3proxy", str(self.properties_file)),
                      group=True)


def fetch_jar(settings: StoreSettings) -> Path:
    """s3proxy's self-contained jar, downloaded once with Maven into the cache."""
    if settings.jar.is_file():
        return settings.jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ObjectStoreError("Maven (mvn) is not installed; it is needed once to fetch s3proxy from Maven "
                               "Central (Debian/Ubuntu: apt-get install maven)")
    settings.jar_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.jar_dir / "fetch.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two starts at once: the second waits, then finds the jar
        if settings.jar.is_file():
            return settings.jar
        artifact = f"org.gaul:s3proxy:{settings.version}:jar:jar-with-dependencies"
        log.info("Fetching %s from Maven Central into %s", artifact, settings.jar_dir)
        partial = settings.jar_dir / "partial"
        result = subprocess.run([mvn, "-B", "-q", "dependency:copy", f"-Dartifact={artifact}",
                                 f"-DoutputDirectory={partial}"], cwd=settings.jar_dir, capture_output=True,
                                text=True, check=False)
        fetched = partial / settings.jar.name
        if result.returncode != 0 or not fetched.is_file():
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise ObjectStoreError(f"Could not download {artifact} with Maven (exit {result.returncode}); Maven "
                                   f"reads proxies and mirrors from ~/.m2/settings.xml.\n{tail}")
        os.replace(fetched, settings.jar)  # complete or absent: an interrupted download is never taken
    return settings.jar


def _properties(settings: StoreSettings) -> str:
    return "\n".join([
        f"s3proxy.endpoint={settings.endpoint}",
        "s3proxy.authorization=aws-v2-or-v4",
        f"s3proxy.identity={settings.access_key}",
        f"s3proxy.credential={settings.secret_key}",
        "jclouds.provider=filesystem-nio2",
        # The backend's own credentials are not used by a local folder, but must be set.
        "jclouds.identity=local",
        "jclouds.credential=local",
        f"jclouds.filesystem.basedir={settings.blobs}",
        "",
    ])


def _serves(settings: StoreSettings) -> tuple[str | None, str | None]:
    """The key pair the running store was started with (from its private properties file)."""
    try:
        lines = settings.properties_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None, None
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    return values.get("s3proxy.identity"), values.get("s3proxy.credential")


def running_pid(settings: StoreSettings) -> int | None:
    """The store's pid if it runs (a stale pid file is removed)."""
    return settings.daemon.running_pid()


def _private_folder(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def start(settings: StoreSettings) -> str:
    """Start the store unless it runs, wait until it answers; returns its endpoint. Idempotent."""
    if not settings.secret_key:
        raise ObjectStoreError("The object store's secret key is not set: export LAKEHOUSE_S3_SECRET_KEY "
                               "(the clients read the same variable)")
    pid = running_pid(settings)
    if pid is not None:
        if _serves(settings) != (settings.access_key, settings.secret_key):
            raise ObjectStoreError(f"The object store already runs (pid {pid}) at {settings.endpoint} with another "
                                   "key pair than [s3] access_key / LAKEHOUSE_S3_SECRET_KEY: the clients would be "
                                   "refused. Stop it first to change the keys (the objects stay)")
        log.info("The object store already runs (pid %d) at %s", pid, settings.endpoint)
        return settings.endpoint
    if port_open(settings.host, settings.port):
        raise ObjectStoreError(f"Port {settings.port} on {settings.host} is already in use by another process; "
                               "stop it or change the port of [s3] endpoint")
    java = jdk_tool("java")
    if java is None:
        raise ObjectStoreError("Java is not installed; s3proxy needs Java 17 or newer")
    jar = fetch_jar(settings)
    _private_folder(settings.state_dir)
    _private_folder(settings.blobs)
    _private_folder(settings.blobs / settings.bucket)  # the bucket: a folder of the backend
    fd = os.open(settings.properties_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(_properties(settings))
    daemon = settings.daemon
    offset = daemon.log_size()
    command = [java, f"-Xmx{settings.heap}", "-jar", str(jar), "--properties", str(settings.properties_file)]
    proc = daemon.launch(command, umask=0o077, banner="s3proxy")
    try:
        wait_until_ready(lambda: port_open(settings.host, settings.port, timeout=0.5), [proc],
                         settings.start_timeout_s, interval_s=0.2)
    except (Exited, NotReady):
        if proc.poll() is None:
            daemon.terminate(proc.pid, 10.0)
        daemon.forget()
        what = (f"exited with code {proc.returncode}" if proc.returncode is not None
                else f"did not answer within {settings.start_timeout_s:g} s")
        raise ObjectStoreError(f"The object store {what} while starting; last lines of {settings.log_file}:\n"
                               f"{daemon.log_tail(offset=offset)}") from None
    log.info("Object store (s3proxy %s) at %s, bucket %s, pid %d; log: %s", settings.version, settings.endpoint,
             settings.bucket, proc.pid, settings.log_file)
    return settings.endpoint


def stop(settings: StoreSettings, timeout_s: float = 30.0) -> bool:
    """Stop the store; False if it was not running. Idempotent. The objects stay."""
    if settings.daemon.stop(timeout_s):
        return True
    log.info("The object store is not running")
    return False


def main(argv: list[str] | None = None) -> int:
    return command_line("A local S3-compatible object store (s3proxy) for the lake.", run_command, argv)


def run_command(action: str, cfg: Config) -> int:
    """Carry out ``start``, ``stop`` or ``status``; returns the exit code."""
    try:
        settings = StoreSettings.from_config(cfg)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    if action == "start":
        try:
            endpoint = start(settings)
        except ObjectStoreError as e:
            log.error("%s", e)
            return 1
        print(f"Object store: {endpoint} (bucket {settings.bucket}; set [paths] lake = s3a://{settings.bucket}/… "
              f"and [s3] endpoint = {endpoint})")
        return 0
    if action == "stop":
        stop(settings)
        return 0
    pid = running_pid(settings)
    print(f"s3proxy: {state(pid)}")
    return 0 if pid else EXIT_NOT_RUNNING


if __name__ == "__main__":
    sys.exit(main())
