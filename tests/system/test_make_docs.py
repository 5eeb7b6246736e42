"""make docs, run as users run it, writes docs/CONFIGURATION.md as the settings schema gives it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lakehouse.platform.config import PROJECT_DIR
from tests.unit.test_config_docs import committed_text


def test_make_docs_writes_the_page(tmp_path: Path) -> None:
    page = tmp_path / "CONFIGURATION.md"
    done = subprocess.run(["make", "--no-print-directory", "docs", f"CONFIGURATION_MD={page}",
                           f"PYTHON={sys.executable}"], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert page.read_text(encoding="utf-8") == committed_text()
