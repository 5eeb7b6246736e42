"""The launchers moved from lakehouse.platform to lakehouse.local; their old module paths still run them, for one
release (``python -m lakehouse.platform.kafka_local status`` and the like)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.platform.config import PROJECT_DIR
from tests.conftest import free_port

OLD_TO_NEW = {"kafka_local": "kafka_broker", "kafka_cluster": "kafka_cluster", "object_store": "object_store",
              "spark_cluster": "spark_cluster", "cluster": "cluster"}


def status(module: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "status", "--config", str(config)], cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("old, new", OLD_TO_NEW.items())
def test_an_old_module_path_runs_the_same_launcher(tmp_path: Path, old: str, new: str) -> None:
    # Nothing runs from this data folder: status only reads its pid files, and says so.
    config = tmp_path / "config.ini"
    config.write_text(f"[paths]\ndata_dir = {tmp_path / 'data'}\ncache_dir = {PROJECT_DIR / '.cache'}\n"
                      f"[kafka]\nbootstrap_servers = localhost:{free_port()}\ncontroller_port = {free_port()}\n",
                      encoding="utf-8")
    moved = status(f"lakehouse.local.{new}", config)
    kept = status(f"lakehouse.platform.{old}", config)
    assert moved.returncode == kept.returncode == 3, moved.stderr + kept.stderr
    assert moved.stdout == kept.stdout
    assert "stopped" in moved.stdout or "not running" in moved.stdout
