"""``--json FILE`` for every benchmark: its figures as one JSON object, with when, at which commit and on which
machine they were measured (what bench/README.md records beside each figure) and the arguments of the run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """The same ``--json FILE`` flag on every benchmark."""
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the figures, with the date, commit and machine, to this JSON file")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine() -> dict[str, Any]:
    """What the figures depend on: cores, CPU, memory, Python, the OS."""
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "memory_gib": memory_gib(),
            "python": platform.python_version(), "system": f"{platform.system()} {platform.release()}"}


def git_commit() -> dict[str, Any]:
    """The checkout's commit, and whether it had uncommitted changes (None when git cannot say)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": None if status is None else bool(status)}


def write_json(path: Path | None, benchmark: str, args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """Write ``figures`` to ``path`` (nothing when it is None) under the benchmark's name and the run's facts."""
    if path is None:
        return
    clash = {"benchmark", "run"} & figures.keys()
    if clash:
        raise ValueError(f"figure names {sorted(clash)} are taken by the report itself")
    run = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **git_commit(), "machine": machine(),
           "arguments": {k: v for k, v in vars(args).items() if k != "json"}}
    path.write_text(json.dumps({"benchmark": benchmark, "run": run, **figures}, indent=1, default=str) + "\n",
                    encoding="utf-8")
    print(f"Figures written to {path}")
