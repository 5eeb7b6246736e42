"""The web dashboard served as users serve it (make dashboard) and opened in a real headless Chromium: it shows
Silver's figures, follows new sales by itself and says when Silver stopped. On the small lake of
tests/integration/test_web_dashboard.py, where the page's logic is tested through Streamlit's AppTest."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from pathlib import Path

from lakehouse.silver.freshness import SilverStatusWriter
from tests.conftest import PROJECT_DIR
from tests.integration import test_web_dashboard as small_lake
from tests.integration.test_web_dashboard import expected_headline, sale
from tests.support.web_browser import (
    chromium,
    dashboard_server,
    missing_browser,
    open_until,
    page_drawn,
    shown_metrics,
    wait_until,
)

# The fixtures: the same small lake, built for this file; the page's log handler removed after it.
lake, _page_log_removed = small_lake.lake, small_lake._page_log_removed


def test_the_served_page_in_chromium_shows_silver_and_follows_it(lake, tmp_path) -> None:
    problem = missing_browser()
    assert problem is None, problem
    artifacts = Path(os.environ.get("LAKEHOUSE_TEST_ARTIFACTS", PROJECT_DIR / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with dashboard_server(lake.config_file, port, tmp_path / "dashboard.log", through_make=True), \
            chromium() as browser:
        expected = expected_headline(lake)
        seconds = open_until(browser, f"http://127.0.0.1:{port}",
                             lambda d: expected.items() <= shown_metrics(d).items())
        wait_until(browser, page_drawn)
        browser.save_screenshot(str(artifacts / "web_dashboard.png"))
        assert (artifacts / "web_dashboard.png").stat().st_size > 10_000
        # New sales reach Silver while the page is open: it follows by itself (refresh: 1 s), no reload, and
        # says how old Silver is from the status file the Silver job writes.
        status = SilverStatusWriter(lake.paths.silver_status, "continuous", 1.0)
        sold_at = dt.datetime.now(dt.timezone.utc)
        lake.send([sale("V7", 3, sold_at, "5.00")])
        lake.silver()
        status.batch(lake.batch - 1, 1, sold_at, 0.5, {})
        now = expected_headline(lake)
        assert now["Sales"] == "7"
        started = time.monotonic()
        while now.items() > shown_metrics(browser).items() or \
                "Silver continuous: newest sale counted" not in browser.page_source:
            assert time.monotonic() - started < 30, shown_metrics(browser)
            time.sleep(0.2)
        # Silver stops: the page says so plainly at its next refresh.
        status.stopped()
        started = time.monotonic()
        while "SILVER IS NOT RUNNING" not in browser.page_source:
            assert time.monotonic() - started < 30, "the page did not say that Silver stopped"
            time.sleep(0.2)
        assert "Traceback" not in browser.page_source
    print(f"headline shown {seconds:.2f} s after the request")
