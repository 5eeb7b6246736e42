"""The daemon helper of the local services, on real processes (small Python programs, ``sleep``): the pid file,
which pid is "ours", the stop from SIGTERM to SIGKILL, the status, the log's end, the wait until ready and the
command line."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lakehouse.local.daemon import (
    EXIT_NOT_RUNNING,
    Daemon,
    Exited,
    NotReady,
    command_line,
    log_tail,
    state,
    wait_until_ready,
)
from lakehouse.platform.config import PROJECT_DIR

# A program that says it is ready once its SIGTERM disposition is set, then waits; argv[1] is its marker.
SERVICE = """
import signal, sys, time
if sys.argv[2] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""
# The same, which first starts a child of its own (``sleep``) and prints the child's pid.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen(["sleep", "120"])
print("child", child.pid, flush=True)
print("ready", flush=True)
time.sleep(120)
"""


def make_daemon(tmp_path: Path, name: str = "test service", group: bool = False) -> Daemon:
    # The marker is this test's own folder: no other process on the machine has it in its command line.
    return Daemon(name, tmp_path / "service.pid", tmp_path / "logs" / "service.log", (str(tmp_path), "daemon-test"),
                  group=group)


def start_service(daemon: Daemon, tmp_path: Path, term: str = "obey-term",
                  program: str = SERVICE) -> subprocess.Popen:
    """Launch the program and return once it said it is ready."""
    offset = daemon.log_size()
    proc = daemon.launch([sys.executable, "-c", program, f"{tmp_path}/daemon-test", term], banner="test service")
    wait_until_ready(lambda: "ready" in log_tail(daemon.log_file, offset=offset), [proc], 30, 0.05)
    return proc


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def reap():
    """Processes a test started: killed at its end if it failed before stopping them."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_launch_writes_the_pid_file_and_appends_to_the_log_in_a_session_of_its_own(tmp_path: Path, reap) -> None:
    daemon = make_daemon(tmp_path)
    daemon.log_file.parent.mkdir()
    daemon.log_file.write_text("an earlier run\n", encoding="utf-8")
    proc = start_service(daemon, tmp_path)
    reap.append(proc)
    assert daemon.pid_file.read_text(encoding="utf-8") == str(proc.pid)
    assert daemon.running_pid() == proc.pid and daemon.ours(proc.pid)
    lines = daemon.log_file.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "an earlier run" and lines[1] == ""
    assert lines[2].startswith("=== test service started at ") and lines[3] == "ready"
    assert psutil.Process(proc.pid).cmdline()[-2:] == [f"{tmp_path}/daemon-test", "obey-term"]
    assert os.getpgid(proc.pid) == os.getsid(proc.pid) == proc.pid  # a session of its own
    assert not make_daemon(tmp_path / "elsewhere").ours(proc.pid)  # the same program for another service
    assert state(daemon.running_pid()) == f"running (pid {proc.pid})"


def test_no_pid_file_or_an_unreadable_one_is_not_running(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    assert daemon.running_pid() is None and state(daemon.running_pid()) == "stopped"
    daemon.pid_file.write_text("not a pid", encoding="utf-8")
    assert daemon.running_pid() is None


def test_a_stale_pid_file_is_not_ours_and_is_removed(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())", f"{tmp_path}/daemon-test"],
                           capture_output=True, text=True, check=True)
    pid = int(ended.stdout)
    daemon.pid_file.write_text(str(pid), encoding="utf-8")
    assert not daemon.ours(pid)
    assert daemon.running_pid() is None
    assert not daemon.pid_file.exists()


def test_a_pid_reused_by_another_program_is_not_ours_and_that_program_is_left_alone(tmp_path: Path, reap) -> None:
    daemon = make_daemon(tmp_path)
    other = subprocess.Popen(["sleep", "120"])  # alive, but without this service's markers
    reap.append(other)
    daemon.pid_file.write_text(str(other.pid), encoding="utf-8")
    assert not daemon.ours(other.pid)
    assert daemon.running_pid() is None and not daemon.pid_file.exists()
    daemon.pid_file.write_text(str(other.pid), encoding="utf-8")
    assert daemon.stop(timeout_s=1) is False  # nothing of ours to stop...
    assert other.poll() is None  # ...and the other program was not signalled


def test_a_zombie_is_not_ours(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    proc = daemon.launch([sys.executable, "-c", "pass", f"{tmp_path}/daemon-test"])
    try:
        assert wait_for(lambda: gone(proc.pid))  # ended, not reaped yet: a zombie
        assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
        assert not daemon.ours(proc.pid) and daemon.running_pid() is None
    finally:
        proc.wait(10)


def test_stop_ends_a_process_with_sigterm_and_removes_its_pid_file(tmp_path: Path, reap, caplog) -> None:
    caplog.set_level(logging.INFO)
    daemon = make_daemon(tmp_path, "The test service")
    proc = start_service(daemon, tmp_path)
    reap.append(proc)
    assert daemon.stop(timeout_s=10) is True
    assert proc.wait(10) == -signal.SIGTERM
    assert not daemon.pid_file.exists() and daemon.running_pid() is None
    assert f"Stopping the test service (pid {proc.pid})" in caplog.messages
    assert not [m for m in caplog.messages if "was killed" in m]
    assert daemon.stop(timeout_s=10) is False  # stopped already: nothing to do


def test_stop_escalates_to_sigkill_for_a_process_that_ignores_sigterm(tmp_path: Path, reap, caplog) -> None:
    caplog.set_level(logging.INFO)
    daemon = make_daemon(tmp_path, "test service")
    proc = start_service(daemon, tmp_path, term="ignore-term")
    reap.append(proc)
    began = time.monotonic()
    assert daemon.stop(timeout_s=1.0) is True
    assert time.monotonic() - began >= 1.0  # it was given its time after SIGTERM
    assert proc.wait(10) == -signal.SIGKILL
    assert "test service did not stop within 1 s and was killed" in caplog.messages
    assert not daemon.pid_file.exists()


def test_terminate_says_whether_the_stop_was_clean(tmp_path: Path, reap) -> None:
    daemon = make_daemon(tmp_path)
    obeys = start_service(daemon, tmp_path)
    reap.append(obeys)
    assert daemon.terminate(obeys.pid, 10) is True
    ignores = start_service(daemon, tmp_path, term="ignore-term")
    reap.append(ignores)
    assert daemon.terminate(ignores.pid, 0.5) is False
    assert ignores.wait(10) == -signal.SIGKILL
    assert daemon.pid_file.exists()  # terminate leaves the pid file to its caller; stop removes it


def test_a_group_stop_ends_what_the_process_started_too(tmp_path: Path, reap) -> None:
    daemon = make_daemon(tmp_path, group=True)
    proc = start_service(daemon, tmp_path, program=PARENT)
    reap.append(proc)
    (child,) = [int(line.split()[1]) for line in daemon.log_file.read_text().splitlines() if line.startswith("child")]
    assert psutil.Process(child).cmdline() == ["sleep", "120"]
    assert daemon.stop(timeout_s=10) is True
    assert proc.wait(10) == -signal.SIGTERM
    assert wait_for(lambda: gone(child))


def test_log_tail_gives_the_last_lines_after_an_offset(tmp_path: Path) -> None:
    log_file = tmp_path / "service.log"
    assert log_tail(log_file) == "(no log written)"
    log_file.write_text("", encoding="utf-8")
    assert log_tail(log_file) == "(nothing written)"
    log_file.write_text("".join(f"line {i}\n" for i in range(1, 31)), encoding="utf-8")
    assert log_tail(log_file) == "\n".join(f"line {i}" for i in range(11, 31))
    assert log_tail(log_file, lines=2) == "line 29\nline 30"
    daemon = Daemon("test service", tmp_path / "service.pid", log_file, ("daemon-test",))
    offset = daemon.log_size()
    assert daemon.log_tail(offset=offset) == "(nothing written)"
    with open(log_file, "a", encoding="utf-8") as out:
        out.write("after\n")
    assert daemon.log_tail(offset=offset) == "after"


def test_wait_until_ready_names_a_process_that_exits_and_gives_up_in_time(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    proc = daemon.launch([sys.executable, "-c", "raise SystemExit(3)", f"{tmp_path}/daemon-test"])
    with pytest.raises(Exited) as exited:
        wait_until_ready(lambda: False, [proc], 30, 0.05)
    assert exited.value.proc is proc and exited.value.returncode == 3
    began = time.monotonic()
    with pytest.raises(NotReady, match="was not ready within 0.3 s"):
        wait_until_ready(lambda: False, [], 0.3, 0.05)
    assert time.monotonic() - began >= 0.3
    calls = iter([False, False, True])
    wait_until_ready(lambda: next(calls), [], 5, 0.01)  # ready on the third look


def test_a_daemon_needs_markers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="markers must be non-empty"):
        Daemon("test service", tmp_path / "p", tmp_path / "l", ())
    with pytest.raises(ValueError, match="markers must be non-empty"):
        Daemon("test service", tmp_path / "p", tmp_path / "l", ("",))


def test_the_command_line_loads_the_configuration_and_hands_the_action_over(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.ini"
    config.write_text(f"[paths]\ndata_dir = {tmp_path / 'data'}\n", encoding="utf-8")
    seen = []

    def handle(action, cfg) -> int:
        seen.append((action, cfg.data_dir))
        return EXIT_NOT_RUNNING

    assert command_line("A test service.", handle, ["status", "--config", str(config)]) == EXIT_NOT_RUNNING
    assert seen == [("status", tmp_path / "data")]
    with pytest.raises(SystemExit) as refused:
        command_line("A test service.", handle, ["restart", "--config", str(config)])
    assert refused.value.code == 2 and "invalid choice: 'restart'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad_config:
        command_line("A test service.", handle, ["status", "--config", str(PROJECT_DIR / "no-such.ini")])
    assert bad_config.value.code == 2 and "Configuration error" in capsys.readouterr().err
    assert command_line("A test service.", lambda action, cfg: 0, ["fetch", "--config", str(config)],
                        actions=("fetch",), kafka_security=True) == 0
    assert len(seen) == 1
