"""The entry points on a configuration that cannot work, each run as its own process as users run it: exit 2
with one clear line, never a run that goes on forever; and the producer starts without loading Spark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.platform.config import PROJECT_DIR
from tests.unit.test_config import LATIN1_COMMENT, write


def test_entry_point_exits_2_on_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, "[streaming]\nwatermark_delay = 10 minuts\n")
    result = subprocess.run([sys.executable, "setup_utils.py", "--config", str(path)], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "[streaming] watermark_delay = '10 minuts' is invalid" in result.stderr


@pytest.mark.parametrize("text, named", [
    ("[paths]\ndata_dir = config.ini\n", "[paths] data_dir = 'config.ini' is invalid"),
    ("[producer]\nrate = nan\n", "[producer] rate = 'nan' is invalid"),
    ("[kafka]\nbootstrap_servers = localhost:99999\n", "[kafka] bootstrap_servers = 'localhost:99999' is invalid"),
    ("[spark]\nmaster = local[two]\n", "[spark] master = 'local[two]' is invalid"),
    ("[spark]\ntimezone = Paris\n", "[spark] timezone = 'Paris' is invalid"),
])
def test_settings_that_cannot_work_exit_2_at_load(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    result = subprocess.run([sys.executable, "setup_utils.py", "--config", str(path)], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (2, "")
    assert named in result.stderr


@pytest.mark.parametrize("command", [["-m", "lakehouse.ops.demo"], ["producer_ventes.py"]])
@pytest.mark.parametrize("duration", ["0 s", "0", "nan"])
def test_a_zero_duration_exits_2_instead_of_running_forever(command: list[str], duration: str) -> None:
    result = subprocess.run([sys.executable, *command, "--duration", duration], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--duration" in result.stderr.splitlines()[-1]  # argparse's one-line error names the flag


def test_the_producer_does_not_load_spark() -> None:
    # What `python -X importtime producer_ventes.py --help` shows: every module the producer imports.
    result = subprocess.run([sys.executable, "-X", "importtime", "producer_ventes.py", "--help"], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "lakehouse.ingest.producer" in imported and "kafka" in imported
    assert [m for m in imported if m.split(".")[0] in ("pyspark", "py4j", "delta")] == []


def test_the_entry_point_says_it_in_one_line_with_exit_code_2(tmp_path) -> None:
    latin1 = tmp_path / "latin1.ini"
    latin1.write_bytes(LATIN1_COMMENT.encode("latin-1"))
    done = subprocess.run([sys.executable, "producer_ventes.py", "--config", str(latin1), "--max", "--count", "1"],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"Configuration error: {latin1}: is not UTF-8 text: byte 0xe9 on line 2 "
                                        "(Latin-1 or Windows-1252?); save it as UTF-8"]
