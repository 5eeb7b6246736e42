"""One running instance per job and data set: an exclusive OS file lock tied to the job's checkpoint.

The Bronze stream, the Silver job and upkeep each take the lock of their folder before Spark starts; a
second start on the same data is refused at once, in one line naming the process that runs (pid, host),
with exit code ``EXIT_ALREADY_RUNNING``. The lock is ``fcntl.flock`` on a small file: the kernel releases
it when the process ends in any way (SIGKILL, a crash, a reboot), so a stale lock file never blocks a
restart; its content (pid, host, start time) is only there to name the holder.

Where the lock file lives:
- a local lake: next to the folder it guards (``data/checkpoints/bronze_ventes.lock`` for the Bronze
  checkpoint ``data/checkpoints/bronze_ventes``), so two configurations pointing at the same lake share it;
- an ``s3a://`` lake: an object store has no lock a crash releases, so the lock file is on this machine's
  disk (``data/locks/``), named after the folder's URI. It keeps two starts on this machine apart; the
  documented rule is that one machine runs each job of a lake (docs/OPERATIONS.md, "The lake on object storage").
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lakehouse.platform.lake import LakePath
from lakehouse.platform.paths import Paths

log = logging.getLogger(__name__)

EXIT_ALREADY_RUNNING = 3

# Locks this process holds, by lock file: a second take in the same process (the entry point, then
# start_bronze_stream) shares the first one. flock would refuse it (each open() is its own lock).
_held: dict[Path, list] = {}  # lock file -> [open file, count]
_held_guard = threading.Lock()


class JobAlreadyRunning(RuntimeError):
    """Another process holds the job's lock."""

    def __init__(self, job: str, folder: LakePath, lock_file: Path, holder: dict | None):
        self.job, self.folder, self.lock_file, self.holder = job, folder, lock_file, holder
        super().__init__(
            f"{job} already runs on {folder} ({describe_holder(holder)}): one instance per job and data set; "
            f"stop that one first, or give this one another data folder (lock {lock_file})")


def describe_holder(holder: dict | None) -> str:
    """``pid 1234 on host h, since 2025-01-01 10:00:00``, from the lock file's content."""
    if not holder:
        return "a process that has not written its pid yet"
    since = holder.get("started")
    when = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{when}"


def lock_file_for(paths: Paths, folder: LakePath) -> Path:
    """The lock file guarding ``folder`` (a checkpoint, or a pseudo-folder under the lake for jobs
    without one): beside it on a local disk, under ``data/locks`` for a folder on object storage."""
    if isinstance(folder, Path):
        return folder.parent / f"{folder.name}.lock"
    uri = str(folder)
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", uri.split("://", 1)[-1]).strip("_")[-60:]
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:12]
    return paths.data_dir / "locks" / f"{readable}-{digest}.lock"


def read_holder(lock_file: Path) -> dict | None:
    """What the holder wrote in the lock file (pid, host, start time), or None."""
    try:
        data = json.loads(lock_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def acquire(job: str, paths: Paths, folder: LakePath) -> Path:
    """Take the lock guarding ``folder`` for ``job`` (a name for messages), or raise ``JobAlreadyRunning``
    at once. Re-entrant within this process; each ``acquire`` needs its ``release``."""
    lock_file = lock_file_for(paths, folder)
    with _held_guard:
        if lock_file in _held:
            _held[lock_file][1] += 1
            return lock_file
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        # Not truncated on open: the holder's content must stay readable for a refused start.
        handle = open(lock_file, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise JobAlreadyRunning(job, folder, lock_file, read_holder(lock_file)) from None
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "job": job,
                                 "folder": str(folder), "started": time.time()}))
        handle.flush()
        _held[lock_file] = [handle, 1]
    log.debug("Lock %s taken for %s", lock_file, job)
    return lock_file


def release(lock_file: Path) -> None:
    """Give back one ``acquire``; the last one unlocks. The file stays (deleting it could let a process
    that opened it just before lock a file no longer on disk while a third locks a new one)."""
    with _held_guard:
        entry = _held.get(lock_file)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[lock_file]
        handle = entry[0]
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


@contextmanager
def job_lock(job: str, paths: Paths, folder: LakePath) -> Iterator[Path]:
    """``acquire`` for the duration of a ``with`` block."""
    lock_file = acquire(job, paths, folder)
    try:
        yield lock_file
    finally:
        release(lock_file)


def upkeep_folder(paths: Paths) -> LakePath:
    """What upkeep's lock is named after: it has no checkpoint of its own."""
    return paths.checkpoints_dir / "upkeep"


@contextmanager
def lock_or_exit(job: str, paths: Paths, folder: LakePath, logger: logging.Logger) -> Iterator[Path]:
    """For an entry point: hold the job's lock for the ``with`` block; when another process holds it, log
    the one line that names it and end with ``EXIT_ALREADY_RUNNING``."""
    try:
        lock_file = acquire(job, paths, folder)
    except JobAlreadyRunning as e:
        logger.error("%s", e)
        raise SystemExit(EXIT_ALREADY_RUNNING) from None
    try:
        yield lock_file
    finally:
        release(lock_file)
