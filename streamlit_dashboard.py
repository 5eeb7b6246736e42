"""The web dashboard: Silver's figures, the stream's health, the quarantine and the latest sales, live.

Silver's revenue is net of refunds and cancellations, shown with the refunds and the return rate by country,
segment and product, beside the corrections waiting for their sale too long (orphans) and the events Silver
refused; the sidebar travels back to an earlier Silver run.

Usage: python streamlit_dashboard.py [--port N] [--address ADDRESS] [--config PATH]
    (make dashboard; make demo starts it too). It reads the Delta tables with delta-rs (no JVM) and
    refreshes every [monitoring] dashboard_refresh; by default only this machine can open it.
Also: streamlit run streamlit_dashboard.py (with Streamlit's own flags; settings from config.ini and
    the LAKEHOUSE_* environment variables).
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.runtime.scriptrunner import get_script_run_ctx

if get_script_run_ctx(suppress_warning=True) is not None:  # run by Streamlit's server (or its AppTest)
    from lakehouse.serve.web_page import page

    page()
elif __name__ == "__main__":
    from lakehouse.serve.web_server import launch

    sys.exit(launch(sys.argv[1:], Path(__file__).resolve()))
