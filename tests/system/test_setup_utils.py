"""setup_utils.py against a running broker (all ✅) and an unreachable one (❌, exit ≠ 0)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.topics import topic_exists
from tests.conftest import make_config, write_config


def run_setup(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "setup_utils.py", *args], cwd=PROJECT_DIR, capture_output=True,
                          text=True, timeout=300)


def test_all_checks_pass_with_fix_and_spark(tmp_path: Path, kafka_bootstrap: str) -> None:
    topic = f"setup_{uuid.uuid4().hex[:10]}"
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    config = write_config(tmp_path / "config.ini", cfg)

    before = run_setup("--config", str(config))
    assert before.returncode == 1
    assert f"❌ Topic: {topic} does not exist" in before.stdout

    result = run_setup("--config", str(config), "--fix", "--spark")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    checks = [line for line in lines if line.startswith(("✅", "❌"))]
    assert [c.split(":")[0] for c in checks] == [
        "✅ Python", "✅ Python packages", "✅ Java", "✅ Kafka broker jars", "✅ Data directories",
        "✅ Kafka broker", "✅ Topic", "✅ Spark + Delta + Kafka jars"]
    assert f"✅ Topic: {topic} created with 3 partition(s)" in result.stdout
    assert "wrote and read back 3/3 rows" in result.stdout
    assert lines[-1] == "8 passed, 0 failed"
    assert topic_exists(kafka_bootstrap, topic)
    assert (tmp_path / "data" / "checkpoints").is_dir()

    after = run_setup("--config", str(config))
    assert after.returncode == 0 and f"✅ Topic: {topic} exists" in after.stdout


def test_unreachable_broker_fails_fast(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        closed_port = s.getsockname()[1]
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=f"localhost:{closed_port}")
    config = write_config(tmp_path / "config.ini", cfg, kafka={"connect_timeout": "3 seconds"})
    started = time.monotonic()
    result = run_setup("--config", str(config), "--fix")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert f"❌ Kafka broker: not reachable at localhost:{closed_port} within 3 s" in result.stdout
    assert "❌ Topic: not checked: Kafka broker not reachable" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "5 passed, 2 failed"
    print(f"setup_utils with an unreachable broker took {elapsed:.1f} s")
