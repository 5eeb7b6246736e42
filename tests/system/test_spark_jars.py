"""Spark's jars are resolved once, quietly (Ivy's report in data/logs), shown with --verbose or on failure."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import spark_packages
from lakehouse.platform.spark_jars import JarResolutionError, listing_file, resolve_jars
from tests.conftest import make_config, write_config

# Lines Spark's launcher prints while Ivy resolves packages.
IVY_LINES = (":: loading settings ::", "Ivy Default Cache set to", ":: resolving dependencies ::",
             ":: resolution report ::", "found org.apache.spark#")


def ivy_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(marker in line for marker in IVY_LINES)]


def own_listing_cache(tmp_path: Path) -> Path:
    """A cache directory with no listing yet, whose Ivy downloads are the shared ones (so a resolution
    runs as a first start does, without downloading anything again)."""
    cache = tmp_path / "cache"
    (cache / "ivy").mkdir(parents=True)
    (cache / "ivy" / "cache").symlink_to(PROJECT_DIR / ".cache" / "ivy" / "cache")
    return cache


def test_a_first_resolution_is_quiet_and_the_next_start_reuses_it(tmp_path: Path, capfd) -> None:
    paths = Paths(tmp_path / "data", own_listing_cache(tmp_path))
    jars = resolve_jars(paths, spark_packages())
    assert capfd.readouterr() == ("", "")
    ivy_log = (paths.logs_dir / "spark-jars.log").read_text(encoding="utf-8")
    assert len(ivy_lines(ivy_log)) >= 5
    names = [Path(j).name for j in jars]
    assert "org.apache.spark_spark-sql-kafka-0-10_2.13-4.2.0.jar" in names
    assert any(n.startswith("org.apache.kafka_kafka-clients-") for n in names)
    assert all(Path(j).is_file() and Path(j).parent == paths.ivy_dir / "jars" for j in jars)

    assert resolve_jars(paths, spark_packages()) == jars  # from the listing: Ivy does not run again
    assert (paths.logs_dir / "spark-jars.log").read_text(encoding="utf-8") == ivy_log

    listing_file(paths, spark_packages(), None).unlink()
    assert resolve_jars(paths, spark_packages(), verbose=True) == jars
    out, err = capfd.readouterr()
    assert len(ivy_lines(out + err)) >= 5  # --verbose shows it


def test_two_starts_at_once_resolve_once(tmp_path: Path) -> None:
    # Two processes starting on a fresh cache (two scripts, two test workers): Ivy runs once, and the one
    # that waited reads the listing the first one wrote (two Ivy runs into one directory break each other's
    # downloads). Two threads here: each opens the lock file for itself, which is what two processes do.
    paths = Paths(tmp_path / "data", own_listing_cache(tmp_path))
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: resolve_jars(paths, spark_packages()), range(2))
    assert first == second and first
    ivy_runs = (paths.logs_dir / "spark-jars.log").read_text(encoding="utf-8").count("\n=== ")
    assert ivy_runs == 1


def test_a_failed_resolution_shows_the_end_of_its_output(tmp_path: Path, capfd) -> None:
    paths = Paths(tmp_path / "data", own_listing_cache(tmp_path))
    with pytest.raises(JarResolutionError, match=r"jar resolution failed \(spark-submit exit 1\); the end of "
                                                 r"\S+spark-jars\.log:\n(.|\n)*no-such-package"):
        resolve_jars(paths, ["org.example.lakehouse:no-such-package_2.13:0.0.1"])
    assert capfd.readouterr() == ("", "")
    assert not listing_file(paths, ["org.example.lakehouse:no-such-package_2.13:0.0.1"], None).exists()


def test_a_script_prints_no_ivy_lines(tmp_path: Path) -> None:
    # A first start (no listing in this cache) of a Spark script: it runs, says what it has to say,
    # and Ivy's report is in the log only.
    cfg = make_config(tmp_path / "data")
    config = write_config(tmp_path / "config.ini", cfg,
                          paths={"cache_dir": own_listing_cache(tmp_path)})
    result = subprocess.run([sys.executable, "streaming_silver.py", "--config", str(config)], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1  # no Bronze table yet
    assert "Bronze table" in result.stderr and "does not exist yet" in result.stderr
    assert ivy_lines(result.stdout + result.stderr) == []
    assert len(ivy_lines((cfg.data_dir / "logs" / "spark-jars.log").read_text(encoding="utf-8"))) >= 5
