"""Drive the web dashboard in Debian's Chromium (headless) through its chromedriver, for the browser test
and the render benchmark. Needs the apt packages chromium and chromium-driver (.ci/run installs them)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PROJECT_DIR = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LAKEHOUSE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LAKEHOUSE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


def missing_browser() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{path} not found: install Debian's chromium and chromium-driver (apt-get install chromium " \
                   "chromium-driver), as .ci/run does"
    return None


@contextmanager
def dashboard_server(config: Path, port: int, log: Path, through_make: bool = False) -> Iterator[subprocess.Popen]:
    """``python streamlit_dashboard.py`` (or ``make dashboard``, as README says) on ``port`` until the block
    ends; waits for its health check."""
    flags = ["--config", str(config), "--port", str(port)]
    command = ["make", "--no-print-directory", "dashboard", f"ARGS={' '.join(flags)}"] if through_make \
        else [sys.executable, "streamlit_dashboard.py", *flags]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the dashboard exited:\n{log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the dashboard did not answer in 60 s:\n{log.read_text()[-2000:]}"
            time.sleep(0.2)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make and the server it started
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def chromium(width: int = 1500, height: int = 2200):
    """A headless Chromium under Selenium (no driver download: Debian's chromedriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


METRICS_JS = """
const shown = {};
for (const metric of document.querySelectorAll('[data-testid="stMetric"]')) {
  const label = metric.querySelector('[data-testid="stMetricLabel"]');
  const value = metric.querySelector('[data-testid="stMetricValue"]');
  if (label && value) shown[label.innerText.trim()] = value.innerText.trim();
}
return shown;
"""


def shown_metrics(driver) -> dict[str, str]:
    """Label → value of every metric on the page (one round trip to the browser)."""
    return driver.execute_script(METRICS_JS)


def page_drawn(driver) -> bool:
    """Every element of the page drawn: metrics there, no placeholder left (tables and charts load after)."""
    return driver.execute_script(
        'return document.querySelectorAll(\'[data-testid="stMetric"]\').length > 0 && '
        'document.querySelectorAll(\'[data-testid="stSkeleton"]\').length === 0')


def wait_until(driver, ready, timeout_s: float = 60.0) -> float:
    """Wait until ``ready(driver)``; returns the seconds waited."""
    started = time.monotonic()
    while not ready(driver):
        assert time.monotonic() - started < timeout_s, f"the page was not ready within {timeout_s:g} s"
        time.sleep(0.05)
    return time.monotonic() - started


def open_until(driver, url: str, ready, timeout_s: float = 60.0) -> float:
    """Load ``url`` and wait until ``ready(driver)``; returns the seconds from the request to ready."""
    started = time.monotonic()
    driver.get(url)
    while not ready(driver):
        assert time.monotonic() - started < timeout_s, f"the page was not ready within {timeout_s:g} s"
        time.sleep(0.05)
    return time.monotonic() - started
