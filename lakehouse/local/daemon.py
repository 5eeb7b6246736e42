"""What the local services share to run in the background: a pid file, and whether the process it names is still
the one started; a start in a session of its own, its output appended to its log; the wait until it is ready;
a stop with SIGTERM, then SIGKILL; its status; its log's end; and the start|stop|status command line.

Whether a pid is "ours" is decided by the process's command line (psutil reads it): a pid file left by a
process that has gone, or naming a pid the system has since given to another program, is stale and removed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import psutil

from lakehouse.platform.cli import (
    add_config_flag,
    add_kafka_security_flags,
    config_or_exit,
    kafka_security_overrides,
    setup_logging,
)
from lakehouse.platform.config import Config

log = logging.getLogger(__name__)

ACTIONS = ("start", "stop", "status")
# What ``status`` exits with when the service (or a part of it) does not run: "program is not running" in the
# exit codes of LSB init scripts' status action.
EXIT_NOT_RUNNING = 3


class StartFailed(Exception):
    """A process started in the background did not become ready."""


class Exited(StartFailed):
    """The process ended while it was starting."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__(f"exited with code {proc.returncode} while starting")
        self.proc = proc
        self.returncode = proc.returncode


class NotReady(StartFailed):
    """Time ran out before the process was ready."""

    def __init__(self, timeout_s: float):
        super().__init__(f"was not ready within {timeout_s:g} s")
        self.timeout_s = timeout_s


@dataclass(frozen=True)
class Daemon:
    """One background process of a service: where its pid and its log go, and how to know it again.

    ``name`` is how a sentence names it ("Kafka broker", "The object store", "spark-master"). Every one of
    ``markers`` is in its command line; together they tell it from another program that got its pid later, and
    from another instance of the same program. With ``group``, signals go to its whole process group: it runs in
    a session of its own, so what it started itself (a Spark worker's executors) goes with it.
    """

    name: str
    pid_file: Path
    log_file: Path
    markers: tuple[str, ...]
    group: bool = False

    def __post_init__(self) -> None:
        if not self.markers or not all(self.markers):
            raise ValueError(f"{self.name}: markers must be non-empty strings, got {self.markers!r} (without them "
                             "any process would pass for this one)")

    def ours(self, pid: int) -> bool:
        """True when ``pid`` is alive and its command line holds every marker (a zombie has gone: its command
        line is empty)."""
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            command_line = "\0".join(process.cmdline())
        except psutil.Error:  # gone, or not readable: not a process this user started
            return False
        return all(marker in command_line for marker in self.markers)

    def running_pid(self) -> int | None:
        """The pid in the pid file if that process is alive and ours; a stale pid file is removed."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (FileNotFoundError, ValueError):
            return None
        if self.ours(pid):
            return pid
        self.forget()
        return None

    def forget(self) -> None:
        """Remove the pid file."""
        self.pid_file.unlink(missing_ok=True)

    def launch(self, command: Sequence[str], *, env: Mapping[str, str] | None = None, umask: int = -1,
               banner: str | None = None) -> subprocess.Popen:
        """Start ``command`` in the background, in a session of its own (Ctrl-C in the terminal that started it
        does not reach it), its output appended to the log (after a ``=== <banner> started at <time>`` line when
        ``banner`` is given), its pid written to the pid file. Does not wait for it."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            if banner is not None:
                out.write(f"\n=== {banner} started at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
                out.flush()
            proc = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, umask=umask, start_new_session=True)
        self.pid_file.write_text(str(proc.pid), encoding="utf-8")
        return proc

    def _signal(self, pid: int, signum: int) -> bool:
        try:
            (os.killpg if self.group else os.kill)(pid, signum)
        except ProcessLookupError:
            return False
        return True

    def terminate(self, pid: int, timeout_s: float) -> bool:
        """SIGTERM (its clean shutdown), then SIGKILL if it is still ours after ``timeout_s``; True if it stopped
        in time. The pid file stays (see ``stop``)."""
        if not self._signal(pid, signal.SIGTERM):
            return True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.ours(pid):
                return True
            time.sleep(0.2)
        self._signal(pid, signal.SIGKILL)
        return False

    def stop(self, timeout_s: float) -> bool:
        """Stop it if it runs (``terminate``), saying so, and remove its pid file; False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        log.info("Stopping %s (pid %d)", _within_sentence(self.name), pid)
        if not self.terminate(pid, timeout_s):
            log.warning("%s did not stop within %g s and was killed", self.name, timeout_s)
        self.forget()
        return True

    def log_size(self) -> int:
        """The log's length now: pass it to ``log_tail`` to see only what was written after."""
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 20, offset: int = 0) -> str:
        """The last ``lines`` lines of the log (of what was written past ``offset``)."""
        return log_tail(self.log_file, lines, offset)


def _within_sentence(name: str) -> str:
    """"The object store" as a sentence's object: "the object store"."""
    return "the " + name[4:] if name.startswith("The ") else name


def log_tail(path: Path, lines: int = 20, offset: int = 0) -> str:
    """The last ``lines`` lines of a log (of what was written past ``offset``)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(nothing written)"


def wait_until_ready(ready: Callable[[], bool], started: Iterable[subprocess.Popen], timeout_s: float,
                     interval_s: float = 0.5) -> None:
    """Return once ``ready()`` is true; ``Exited`` (naming the process) when one of ``started`` ends first,
    ``NotReady`` when ``timeout_s`` has passed. ``ready`` may raise to give up with its own reason."""
    started = list(started)
    deadline = time.monotonic() + timeout_s
    while not ready():
        for proc in started:
            if proc.poll() is not None:
                raise Exited(proc)
        if time.monotonic() > deadline:
            raise NotReady(timeout_s)
        time.sleep(interval_s)


def state(pid: int | None) -> str:
    """What ``status`` says of one process."""
    return f"running (pid {pid})" if pid else "stopped"


def command_line(description: str, handle: Callable[[str, Config], int], argv: list[str] | None = None, *,
                 actions: Sequence[str] = ACTIONS, action_help: str | None = None, dest: str = "action",
                 kafka_security: bool = False) -> int:
    """A service's command line: ``{start,stop,status} [--config PATH]`` (``actions``; with ``kafka_security``,
    the ``[kafka]`` security flags too). Loads the configuration (exit 2 on a bad setting), sets up logging, and
    returns what ``handle(action, cfg)`` returns: the exit code."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(dest, choices=tuple(actions), help=action_help)
    add_config_flag(parser)
    if kafka_security:
        add_kafka_security_flags(parser)
    args = parser.parse_args(argv)
    cfg = config_or_exit(args, kafka_security_overrides(args) if kafka_security else None)
    setup_logging(cfg.monitoring.log_level)
    return handle(getattr(args, dest), cfg)
