"""Start the web dashboard: check the settings and the port, then run Streamlit's server in this process.

The page (``web_page``) reads its configuration from the environment, so the flags given here become
environment variables (``LAKEHOUSE_CONFIG``, ``LAKEHOUSE_DASHBOARD_*``). The page's libraries are imported
before the server listens, so that the first visitor does not wait for them.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from lakehouse.platform.cli import add_config_flag, config_or_exit
from lakehouse.platform.config import Config, env_var_name
from lakehouse.platform.paths import Paths

EXIT_PORT_BUSY = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the web dashboard of the Delta tables (Ctrl-C stops it).")
    parser.add_argument("--address", default=None,
                        help="address to listen on (overrides [dashboard] address; default 127.0.0.1: this "
                             "machine only)")
    parser.add_argument("--port", type=int, default=None, help="port (overrides [dashboard] port)")
    add_config_flag(parser)
    return parser.parse_args(argv)


def port_problem(address: str, port: int) -> str | None:
    """Why the server could not listen on ``address:port`` (None when it can)."""
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return f"address {address!r} cannot be resolved ({e.strerror})"
    family, _, _, _, where = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(where)
        except OSError as e:
            return f"cannot listen on {address}:{port} ({e.strerror})"
    return None


def url(cfg: Config) -> str:
    host = cfg.dashboard.address
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://{f'[{host}]' if ':' in host else host}:{cfg.dashboard.port}"


def server_command(script: Path, cfg: Config) -> list[str]:
    """``streamlit run`` with the settings a shared machine needs: bound where configured, no usage
    statistics sent, no file watcher, no error details beyond the exception's type on the page."""
    return ["streamlit", "run", str(script),
            "--server.address", cfg.dashboard.address, "--server.port", str(cfg.dashboard.port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false",
            "--global.developmentMode", "false", "--client.toolbarMode", "viewer",
            "--client.showErrorDetails", "type", "--logger.level", "warning"]


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment variables that carry the flags to the page."""
    env = {}
    if args.config:
        env["LAKEHOUSE_CONFIG"] = str(Path(args.config).resolve())
    if args.address is not None:
        env[env_var_name("dashboard", "address")] = args.address
    if args.port is not None:
        env[env_var_name("dashboard", "port")] = str(args.port)
    return env


def launch(argv: list[str] | None, script: Path) -> int:
    args = parse_args(argv)
    cfg = config_or_exit(args, {("dashboard", "address"): args.address, ("dashboard", "port"): args.port})
    problem = port_problem(cfg.dashboard.address, cfg.dashboard.port)
    if problem:
        print(f"Web dashboard not started: {problem}. Stop what uses it, or choose another port with --port "
              "or [dashboard] port.", file=sys.stderr)
        return EXIT_PORT_BUSY
    print(f"Web dashboard: {url(cfg)} (tables under {Paths.from_config(cfg).delta_dir}; Ctrl-C stops it)",
          flush=True)
    os.environ.update(server_env(args))
    import altair  # noqa: F401  (the charts)
    from streamlit.web import cli

    import lakehouse.serve.web_page  # noqa: F401  (the page and its libraries: deltalake, pyarrow, Streamlit)

    sys.argv = server_command(script, cfg)
    return cli.main()  # Streamlit's command line; it exits when the server stops
