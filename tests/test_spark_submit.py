"""The spark-submit way of running the Bronze job, with the exact options README.md gives."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import spark_packages
from tests.conftest import make_config, produce, sale_json, write_config


def readme_packages() -> list[str]:
    text = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    found = set(re.findall(r"spark-submit[^\n]*?--packages (\S+)", text))
    assert found, "README.md gives no spark-submit --packages command"
    return sorted(found)


def test_readme_packages_match_installed_pyspark_and_delta() -> None:
    assert readme_packages() == [",".join(spark_packages())]


def test_spark_submit_runs_the_bronze_and_silver_jobs(spark, tmp_path: Path, kafka_bootstrap: str,
                                                      topic: str) -> None:
    # A minute ago, with an offset: the contract refuses naive and year-old event times.
    when = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat(timespec="seconds")
    sales = [sale_json(vente_id=i, client_id=f"C{i}", produit_id="P1", timestamp=when,
                       quantite=1, montant=9.99, client_nom="Jean Dupont", produit_nom="Stylo",
                       categorie="Bureau", pays="France", segment="B2C") for i in range(5)]
    produce(kafka_bootstrap, topic, [(f"C{i}", v) for i, v in enumerate(sales)])
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    config = write_config(tmp_path / "config.ini", cfg)
    spark_submit = Path(sys.executable).parent / "spark-submit"
    ivy = Paths.from_config(cfg).ivy_dir
    cmd = [str(spark_submit), "--packages", readme_packages()[0], "--conf", f"spark.jars.ivy={ivy}",
           "spark_streaming_delta.py", "--available-now", "--config", str(config)]
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    result = subprocess.run(cmd, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    bronze = spark.read.format("delta").load(str(Paths.from_config(cfg).bronze))
    assert sorted(r.vente_id for r in bronze.select("vente_id").collect()) == [str(i) for i in range(5)]

    silver = [*cmd[:cmd.index("spark_streaming_delta.py")], "streaming_silver.py", "--config", str(config)]
    result = subprocess.run(silver, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Sales 5   Revenue 49.95 €   Clients 5" in result.stdout
    assert "Premium 0 (0.0 %)   Standard 0 (0.0 %)   Economy 5 (100.0 %)" in result.stdout


def test_spark_submit_without_packages_says_what_to_pass(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "data")
    config = write_config(tmp_path / "config.ini", cfg)
    spark_submit = Path(sys.executable).parent / "spark-submit"
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    result = subprocess.run([str(spark_submit), "spark_streaming_delta.py", "--available-now", "--config",
                             str(config)], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 1
    # spark-submit forwards the Python driver's stderr (where logging writes) to its own stdout.
    assert f"pass: --packages {','.join(spark_packages())}" in result.stdout + result.stderr
