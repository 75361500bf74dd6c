"""Starting the Streamlit server for the page: `streamlit run app.py` in a child process.

A child process rather than Streamlit's in-process bootstrap because Streamlit expects to own the main
thread, the signal handlers and the event loop of its process; here it gets a process of its own, and
this one only forwards Ctrl-C / SIGTERM to it and reports how it ended. Streamlit is not imported here.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from edgevision.errors import DependencyError, UsageError
from edgevision.ui.settings import DEFAULT_HOST, DEFAULT_PORT, SETTINGS_ENV, UiSettings

APP_PATH = Path(__file__).resolve().parent / "app.py"
#: How long a stopping server gets to finish its sessions before it is killed.
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class ServerOptions:
    settings: UiSettings
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    debug: bool = False


def streamlit_argv(options: ServerOptions) -> List[str]:
    """The `streamlit run` command line: headless, bound where asked, no telemetry, no file watching."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.headless=true",
        f"--server.address={options.host}",
        f"--server.port={options.port}",
        f"--server.maxUploadSize={options.settings.max_upload_mb}",
        # The page is a tool, not a notebook: nobody edits app.py while it serves, so no watcher threads
        # (inotify limits on small boards) and no reruns on save.
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=minimal",
        # Errors the page does not catch are bugs: show the type, the full traceback only when debugging.
        f"--client.showErrorDetails={'full' if options.debug else 'type'}",
        "--global.developmentMode=false",
    ]


def check_streamlit() -> None:
    """Fail early and clearly when the ui extra is missing (without importing Streamlit: it is slow)."""
    if importlib.util.find_spec("streamlit") is None:
        importlib.invalidate_caches()  # a package installed while this process started; look once more
    if importlib.util.find_spec("streamlit") is None:
        raise DependencyError(
            "the web page needs the Python package 'streamlit', which is not installed; "
            "install it with: pip install 'edgevision[ui]'"
        )


def free_port(host: str) -> int:
    """A port the OS says is free on `host` now (for --port 0)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(host: str, port: int) -> None:
    """UsageError if `host:port` cannot be bound, so the user gets one line instead of Streamlit's log."""
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as s:
            s.bind((host, port))
    except socket.gaierror as e:
        raise UsageError(f"--host {host!r} is not an address of this machine ({e.strerror})") from e
    except OSError as e:
        raise UsageError(
            f"cannot listen on {host}:{port} ({e.strerror}); "
            "another server is probably using it: pick another with --port (or --port 0 for any free port)"
        ) from e


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def run_server(options: ServerOptions, on_ready=None) -> int:
    """Run the page until Ctrl-C or SIGTERM; returns the server's exit status (0 for a requested stop).

    `on_ready(url)` is called once the child is started (the CLI prints the address with it).
    """
    env = {**os.environ, SETTINGS_ENV: options.settings.to_json(), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    child = subprocess.Popen(streamlit_argv(options), env=env)
    stopping = False

    def forward(signum, _frame):
        nonlocal stopping
        stopping = True
        if child.poll() is None:
            child.send_signal(signum)

    previous = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, forward)
            except ValueError:  # not the main thread: the caller handles signals
                pass
    try:
        if on_ready is not None:
            on_ready(url_for(options.host, options.port))
        try:
            rc = child.wait()
        except KeyboardInterrupt:
            # A terminal's Ctrl-C reaches the child too (same process group); a `kill -INT` of this process
            # does not, so pass it on, then give the server time to close its sessions.
            forward(signal.SIGINT, None)
            rc = _stop(child)
    finally:
        if child.poll() is None:
            _stop(child)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    requested = {0, -signal.SIGTERM, -signal.SIGINT, -getattr(signal, "SIGHUP", signal.SIGTERM)}
    return 0 if stopping and rc in requested else rc


def _stop(child: subprocess.Popen) -> int:
    try:
        return child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.terminate()
    try:
        return child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def url_for(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def describe_models(settings: UiSettings) -> Optional[str]:
    """One line saying what the page will offer, or None when it has nothing to classify with."""
    from edgevision.ui.settings import discover_models

    entries, _ = discover_models(settings)
    if not entries:
        return None
    return ", ".join(e.name for e in entries)
