"""One running instance per job and data set (issue #32): the lock, its one-line refusal, a stale lock
after SIGKILL, the entry points refusing before Spark starts. No JVM: a refused start never reaches it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lakehouse.ops.demo import reset_data
from lakehouse.platform import job_lock
from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.job_lock import EXIT_ALREADY_RUNNING, JobAlreadyRunning, lock_file_for, upkeep_folder
from lakehouse.platform.paths import Paths
from tests.conftest import make_config, write_config

S3_ENV = {"LAKEHOUSE_S3_SECRET_KEY": "not-used-here"}  # the paths need it; no store is reached

HOLDER = """
import sys, time
from pathlib import Path
from lakehouse.platform.job_lock import acquire
from lakehouse.platform.paths import Paths
if sys.argv[1] == "--config":  # the folder named by the configuration (an s3a:// lake: its URI)
    from lakehouse.platform.config import load_config
    paths = Paths.from_config(load_config(sys.argv[2]))
    folder = getattr(paths, sys.argv[3])
else:
    paths = Paths(data_dir=Path(sys.argv[1]), cache_dir=Path(sys.argv[1]))
    folder = Path(sys.argv[2])
acquire("A test holder", paths, folder)
print("held", flush=True)
time.sleep(600)
"""


def hold(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Another process holding the lock of a folder: ``data_dir, folder``, or ``"--config", file,
    Paths attribute``. It says so once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, args)], cwd=PROJECT_DIR,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_take_is_refused_naming_the_holder_and_a_sigkill_frees_it(tmp_path: Path) -> None:
    paths = Paths(data_dir=tmp_path, cache_dir=tmp_path)
    folder = paths.bronze_checkpoint
    holder = hold(tmp_path, folder)
    try:
        with pytest.raises(JobAlreadyRunning) as refused:
            job_lock.acquire("The Bronze stream", paths, folder)
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith(f"The Bronze stream already runs on {folder} (pid {holder.pid} on host "
                                  f"{socket.gethostname()}, since ")
        assert message.endswith(f"(lock {folder.parent / 'bronze_ventes.lock'})")
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up: the lock file stays, with the dead holder's pid
        holder.wait(timeout=30)
    assert (folder.parent / "bronze_ventes.lock").exists()
    with job_lock.job_lock("The Bronze stream", paths, folder) as lock_file:  # the kernel released it
        assert job_lock.read_holder(lock_file)["pid"] == os.getpid()
        # The same process may take it again (the entry point, then start_bronze_stream).
        with job_lock.job_lock("The Bronze stream", paths, folder):
            pass
        assert job_lock.read_holder(lock_file)["pid"] == os.getpid()
    # Released: another process takes it.
    hold(tmp_path, folder).kill()


def test_locks_are_per_folder_and_on_object_storage_on_this_machine(tmp_path: Path) -> None:
    local = Paths.from_config(make_config(tmp_path / "data"))
    assert lock_file_for(local, local.bronze_checkpoint) == tmp_path / "data/checkpoints/bronze_ventes.lock"
    assert lock_file_for(local, local.silver_checkpoint) == tmp_path / "data/checkpoints/silver.lock"
    assert lock_file_for(local, upkeep_folder(local)) == tmp_path / "data/checkpoints/upkeep.lock"
    on_s3 = Paths.from_config(make_config(tmp_path / "data", env=S3_ENV, paths__lake="s3a://ventes/lake"))
    bronze, silver = lock_file_for(on_s3, on_s3.bronze_checkpoint), lock_file_for(on_s3, on_s3.silver_checkpoint)
    assert bronze.parent == silver.parent == tmp_path / "data/locks" and bronze != silver
    assert bronze.name.startswith("ventes_lake_checkpoints_bronze_ventes-")
    other_lake = Paths.from_config(make_config(tmp_path / "data", env=S3_ENV, paths__lake="s3a://autres/lake"))
    assert lock_file_for(other_lake, other_lake.bronze_checkpoint) != bronze
    with job_lock.job_lock("The Bronze stream", on_s3, on_s3.bronze_checkpoint):
        with job_lock.job_lock("The Silver job", on_s3, on_s3.silver_checkpoint):  # another folder: free
            pass


@pytest.mark.parametrize("entry_point, folder", [
    (["spark_streaming_delta.py"], "bronze_ventes"),
    (["streaming_silver.py", "--no-dashboard"], "silver"),
    (["-m", "lakehouse.ops.upkeep"], "upkeep"),
])
def test_a_second_start_is_refused_at_once_in_one_line(tmp_path: Path, entry_point: list[str], folder: str) -> None:
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers="127.0.0.1:1")  # never reached
    config = write_config(tmp_path / "config.ini", cfg)
    holder = hold(cfg.data_dir, Paths.from_config(cfg).checkpoints_dir / folder)
    try:
        started = time.monotonic()
        result = subprocess.run([sys.executable, *entry_point, "--config", str(config)], cwd=PROJECT_DIR,
                                capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert result.returncode == EXIT_ALREADY_RUNNING, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert " - ERROR - " in lines[0] and f"already runs on {cfg.data_dir / 'checkpoints'}" in lines[0]
    assert f"(pid {holder.pid} on host {socket.gethostname()}" in lines[0]
    assert elapsed < 30  # refused before Spark or the broker check: no JVM, no timeout


def test_upkeep_of_an_object_storage_lake_refuses_while_its_stream_runs_here(tmp_path: Path) -> None:
    # --pipeline-stopped is the user's word; on this machine the Bronze stream's lock says otherwise.
    cfg = make_config(tmp_path / "data", env=S3_ENV, paths__lake="s3a://ventes/lake")
    config = write_config(tmp_path / "config.ini", cfg, paths={"lake": "s3a://ventes/lake"})
    holder = hold("--config", config, "bronze_checkpoint", env=S3_ENV)
    try:
        result = subprocess.run([sys.executable, "-m", "lakehouse.ops.upkeep", "--pipeline-stopped", "--config",
                                 str(config)], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
                                env={**os.environ, **S3_ENV})
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert result.returncode == EXIT_ALREADY_RUNNING, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "The Bronze stream already runs on s3a://ventes/lake/checkpoints/bronze_ventes (pid " \
        f"{holder.pid} on host" in lines[0] and str(cfg.data_dir / "locks") in lines[0]


def test_a_fresh_demo_deletes_nothing_while_a_job_runs_on_the_data(tmp_path: Path) -> None:
    paths = Paths.from_config(make_config(tmp_path / "data"))
    paths.bronze_checkpoint.mkdir(parents=True)
    paths.bronze.mkdir(parents=True)
    holder = hold(paths.data_dir, paths.silver_checkpoint)
    try:
        with pytest.raises(JobAlreadyRunning, match=rf"^The Silver job already runs on .* \(pid {holder.pid} on"):
            reset_data(paths, "127.0.0.1:1", "ventes_stream", 3)  # refused before the topic is touched
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert paths.bronze_checkpoint.is_dir() and paths.bronze.is_dir()
