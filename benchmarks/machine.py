"""The machine header: what a benchmark number was measured on.

A latency figure without its machine is useless, so every report carries this header (airbench records the
hardware with every result for the same reason). Everything here is read from the OS and package metadata,
without importing the interpreter or TensorFlow, so it costs milliseconds and works on the edge extra alone.
The 1-minute load average is recorded too: on a shared machine it says whether the numbers were taken on a
busy CPU.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Dict, Optional

# Distribution names of the interpreters, as pip knows them (their import names differ).
BACKEND_DISTRIBUTIONS = {
    "ai-edge-litert": "ai-edge-litert",
    "tflite-runtime": "tflite-runtime",
}


def package_version(distribution: str) -> Optional[str]:
    """Installed version of a distribution, read from its metadata (nothing is imported)."""
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """A human name for the CPU: x86 'model name', a board name on ARM, sysctl on macOS."""
    text = _read("/proc/cpuinfo")
    if text:
        for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
            match = re.search(rf"^{key}\s*:\s*(.+)$", text, flags=re.MULTILINE)
            if match and match.group(1).strip():
                return match.group(1).strip()
    board = _read("/proc/device-tree/model")
    if board:
        return board.strip("\x00\n ")
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity, e.g. under taskset or a container), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_total_mb() -> Optional[float]:
    text = _read("/proc/meminfo")
    match = re.search(r"^MemTotal:\s+(\d+)\s+kB", text or "", flags=re.MULTILINE)
    if match:
        return round(int(match.group(1)) / 1024, 1)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20, 1)
    except (ValueError, OSError, AttributeError):
        return None


def machine_info(backend: Optional[str] = None) -> Dict[str, object]:
    """The header recorded with every benchmark. `backend`: the interpreter the results used, if known."""
    from edgevision import __version__

    try:
        load = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    backends = {name: package_version(dist) for name, dist in BACKEND_DISTRIBUTIONS.items()}
    info: Dict[str, object] = {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count() or 1,
        "usable_cores": usable_cores(),
        "memory_mb": memory_total_mb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": package_version("numpy"),
        "opencv": package_version("opencv-python-headless") or package_version("opencv-python"),
        "interpreters": {name: version for name, version in backends.items() if version},
        "edgevision": __version__,
        "load_avg_1m": load,
    }
    if backend:
        info["backend"] = backend
        info["backend_version"] = backends.get(backend)
    return info


def header_lines(info: Dict[str, object]) -> list:
    """The header as short 'key: value' lines for text and Markdown reports."""
    interpreters = info.get("interpreters") or {}
    interp = ", ".join(f"{k} {v}" for k, v in interpreters.items()) or "none installed"
    cores = info.get("cores")
    usable = info.get("usable_cores")
    core_text = f"{cores}" if usable in (None, cores) else f"{cores} ({usable} usable)"
    mem = info.get("memory_mb")
    return [
        f"machine: {info.get('hostname')} ({info.get('arch')})",
        f"cpu: {info.get('cpu')}, {core_text} cores" + (f", {mem / 1024:.1f} GB RAM" if mem else ""),
        f"os: {info.get('os')}",
        f"python {info.get('python')}, numpy {info.get('numpy')}, opencv {info.get('opencv') or '-'}, "
        f"interpreters: {interp}, edgevision {info.get('edgevision')}",
        f"load average (1 min) at start: {info.get('load_avg_1m')}",
    ]


def _read(path: str) -> Optional[str]:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None
