"""A local Spark standalone cluster: one master and N workers from the installed pyspark (``spark-class``).

Usage: python -m lakehouse.local.spark_cluster start|stop|status [--config PATH]
(make spark-cluster-start, make spark-cluster-stop, make spark-cluster-status.)

The jobs run on it unchanged with ``[spark] master = spark://127.0.0.1:7077`` (the address ``start``
prints); ``[spark] cores_max`` keeps one application from taking every worker, so that the Bronze stream
and Silver run side by side; ``[spark] jars_on_workers`` lets the executors load the jars from this
machine's cache rather than each receive a copy. Each process runs in a session of its own (Ctrl-C in the
terminal that started it does not stop it), with its pid and work folder under <data_dir>/cluster/spark
and its log under <data_dir>/logs/cluster/. ``start`` and ``stop`` are idempotent. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lakehouse.local.daemon import EXIT_NOT_RUNNING, Daemon, Exited, NotReady, command_line, state, wait_until_ready
from lakehouse.platform.config import Config
from lakehouse.platform.kafka_probe import port_open
from lakehouse.platform.paths import Paths

log = logging.getLogger("lakehouse.local.spark_cluster")

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
MASTER_READY = "I have been elected leader! New state: ALIVE"
WORKER_READY = "Successfully registered with master"


class ClusterError(RuntimeError):
    """The cluster could not be started as asked; the message says why, with the log's last lines."""


@dataclass(frozen=True)
class ClusterSettings:
    host: str
    master_port: int
    workers: int
    worker_cores: int
    worker_memory: str
    start_timeout_s: float
    state_dir: Path  # pid files and work folders
    logs_dir: Path

    @classmethod
    def from_config(cls, cfg: Config) -> "ClusterSettings":
        paths = Paths.from_config(cfg)
        c = cfg.cluster
        return cls(host="127.0.0.1", master_port=c.spark_master_port, workers=c.spark_workers,
                   worker_cores=c.spark_worker_cores, worker_memory=c.spark_worker_memory,
                   start_timeout_s=c.start_timeout.seconds, state_dir=paths.data_dir / "cluster" / "spark",
                   logs_dir=paths.logs_dir / "cluster")

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    def names(self) -> list[str]:
        return ["spark-master", *[f"spark-worker-{i}" for i in range(1, self.workers + 1)]]

    def pid_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def work_dir(self, name: str) -> Path:
        return self.state_dir / f"{name}-work"

    def daemon(self, name: str) -> Daemon:
        """The process ``name`` of this cluster (not a reused pid): its command line names its class and the
        master's port, or a worker's own work folder. Signals go to its process group (a worker's executors)."""
        markers = ((MASTER_CLASS, str(self.master_port)) if name == "spark-master"
                   else (WORKER_CLASS, str(self.work_dir(name))))
        return Daemon(name, self.pid_file(name), self.log_file(name), markers, group=True)


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _command(settings: ClusterSettings, name: str) -> list[str]:
    spark_class = str(spark_home() / "bin" / "spark-class")
    # Web UIs on ports the system picks: nothing else on the machine is assumed free.
    if name == "spark-master":
        return [spark_class, MASTER_CLASS, "--host", settings.host, "--port", str(settings.master_port),
                "--webui-port", "0"]
    return [spark_class, WORKER_CLASS, settings.master_url, "--host", settings.host,
            "--cores", str(settings.worker_cores), "--memory", settings.worker_memory,
            "--work-dir", str(settings.work_dir(name)), "--webui-port", "0"]


def running_pid(settings: ClusterSettings, name: str) -> int | None:
    """The pid of this cluster's ``name`` if it is alive (a stale pid file is removed)."""
    return settings.daemon(name).running_pid()


def _launch(settings: ClusterSettings, name: str) -> subprocess.Popen:
    # SPARK_LOCAL_IP: the web UIs too listen on this machine only (they bind to every interface otherwise).
    env = dict(os.environ, SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP=settings.host)
    return settings.daemon(name).launch(_command(settings, name), env=env, banner=name)


def _wait_for(settings: ClusterSettings, name: str, proc: subprocess.Popen, ready: str, offset: int) -> None:
    """Until the log (past ``offset``) says ``ready``; ``ClusterError`` if the process exits or time runs out."""
    daemon = settings.daemon(name)

    def said_ready() -> bool:
        with open(daemon.log_file, "rb") as f:
            f.seek(offset)
            return ready.encode() in f.read()

    try:
        wait_until_ready(said_ready, [proc], settings.start_timeout_s, interval_s=0.3)
    except Exited:
        daemon.forget()
        raise ClusterError(f"{name} exited with code {proc.returncode} while starting; last lines of "
                           f"{daemon.log_file}:\n{daemon.log_tail()}") from None
    except NotReady:
        raise ClusterError(f"{name} was not ready within {settings.start_timeout_s:g} s; last lines of "
                           f"{daemon.log_file}:\n{daemon.log_tail()}") from None


def start(settings: ClusterSettings) -> str:
    """Start what is not running (master first, then the workers) and wait until every worker has
    registered; returns the master URL. Idempotent."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    master = running_pid(settings, "spark-master")
    if master is None and port_open(settings.host, settings.master_port):
        raise ClusterError(f"Port {settings.master_port} on {settings.host} is already in use by another process; "
                           "stop it or change [cluster] spark_master_port")
    started: list[str] = []
    for name in settings.names():
        pid = running_pid(settings, name)
        if pid is not None:
            log.info("%s already running (pid %d)", name, pid)
            continue
        offset = settings.daemon(name).log_size()
        proc = _launch(settings, name)
        try:
            _wait_for(settings, name, proc, MASTER_READY if name == "spark-master" else WORKER_READY, offset)
        except ClusterError:
            for begun in reversed([*started, name]):  # what this call started goes; what ran before stays
                daemon = settings.daemon(begun)
                pid = daemon.running_pid()
                if pid is not None:
                    daemon.terminate(pid, 10.0)
                daemon.forget()
            raise
        started.append(name)
        log.info("%s started (pid %d); log: %s", name, proc.pid, settings.log_file(name))
    log.info("Spark standalone cluster at %s: %d worker(s) of %d core(s) and %s each%s", settings.master_url,
             settings.workers, settings.worker_cores, settings.worker_memory,
             "" if started else " (already running)")
    return settings.master_url


def stop(settings: ClusterSettings, timeout_s: float = 30.0) -> bool:
    """Stop the workers, then the master, each with what it started (its process group: a worker's
    executors); False if nothing was running. Idempotent."""
    stopped = False
    for name in reversed(settings.names()):
        stopped = settings.daemon(name).stop(timeout_s) or stopped
    if not stopped:
        log.info("The Spark standalone cluster is not running")
    return stopped


def status(settings: ClusterSettings) -> dict[str, int | None]:
    """Each process's pid, or None when it does not run."""
    return {name: running_pid(settings, name) for name in settings.names()}


def main(argv: list[str] | None = None) -> int:
    return command_line("A local Spark standalone cluster (master and workers).", run_command, argv)


def run_command(action: str, cfg: Config) -> int:
    """Carry out ``start``, ``stop`` or ``status``; returns the exit code."""
    settings = ClusterSettings.from_config(cfg)
    if action == "start":
        try:
            url = start(settings)
        except ClusterError as e:
            log.error("%s", e)
            return 1
        print(f"Spark master: {url} (set [spark] master = {url}, [spark] cores_max so that two jobs fit, and "
              "[spark] jars_on_workers = true: the workers read this machine's jar cache)")
        return 0
    if action == "stop":
        stop(settings)
        return 0
    pids = status(settings)
    for name, pid in pids.items():
        print(f"{name}: {state(pid)}")
    return 0 if all(pids.values()) else EXIT_NOT_RUNNING


if __name__ == "__main__":
    sys.exit(main())
