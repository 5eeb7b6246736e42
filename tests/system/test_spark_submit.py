"""The spark-submit way of running the Bronze job, with the exact options README.md gives."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from deltalake import DeltaTable

from lakehouse.platform.config import PROJECT_DIR
from lakehouse.platform.paths import Paths
from lakehouse.platform.spark import spark_packages
from tests.conftest import make_config, produce, sale_json, write_config


def readme_spark_submit() -> str:
    """The spark-submit line README.md gives for the Bronze job, exactly as written."""
    text = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"^spark-submit [^\n]*spark_streaming_delta\.py$", text, re.M)
    assert len(found) == 1, "README.md gives no (or several) spark-submit lines for the Bronze job"
    return found[0]


def readme_packages() -> list[str]:
    text = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    found = set(re.findall(r"spark-submit[^\n]*?--packages (\S+)", text))
    assert found, "README.md gives no spark-submit --packages command"
    return sorted(found)


def test_readme_packages_match_installed_pyspark_and_delta() -> None:
    assert readme_packages() == [",".join(spark_packages())]


def run_as_a_user(line: str, *args: str) -> subprocess.CompletedProcess:
    """A documented command line run by a shell in the project folder, with the virtual environment
    activated (its bin first on PATH), plus ``args``."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env.pop("PWD", None)  # the shell sets it to the folder it starts in
    return subprocess.run(["bash", "-c", " ".join([line, *(shlex.quote(a) for a in args)])], cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=600, env=env)


def test_readme_spark_submit_line_runs_the_bronze_and_silver_jobs(tmp_path: Path, kafka_bootstrap: str,
                                                                  topic: str) -> None:
    # A minute ago, with an offset: the contract refuses naive and year-old event times.
    when = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat(timespec="seconds")
    sales = [sale_json(vente_id=i, client_id=f"C{i}", produit_id="P1", timestamp=when,
                       quantite=1, montant=9.99, client_nom="Jean Dupont", produit_nom="Stylo",
                       categorie="Bureau", pays="France", segment="B2C") for i in range(5)]
    produce(kafka_bootstrap, topic, [(f"C{i}", v) for i, v in enumerate(sales)])
    cfg = make_config(tmp_path / "data", kafka__bootstrap_servers=kafka_bootstrap, kafka__topic=topic)
    config = write_config(tmp_path / "config.ini", cfg)
    line = readme_spark_submit()
    result = run_as_a_user(line, "--available-now", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    bronze = DeltaTable(str(Paths.from_config(cfg).bronze)).to_pyarrow_table()
    assert sorted(bronze.column("vente_id").to_pylist()) == [str(i) for i in range(5)]

    silver_line = line.replace("spark_streaming_delta.py", "streaming_silver.py")  # "the same --packages"
    result = run_as_a_user(silver_line, "--config", str(config))
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
