"""`bench --remote host1,host2,...`: a fleet of boards measured at once, compared in one table.

Each host runs in its own SSH session on its own thread (the work happens on the boards; here we only wait),
so a fleet takes as long as its slowest board, not the sum. A host that cannot be reached or cannot run the
benchmark is marked failed in the table and the others are still reported: one board off the network must
not cost the measurements of ten.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from edgevision.errors import EdgeVisionError, UsageError

#: `[user@]host[:port]`; a host with more than one colon is an IPv6 address and is taken as it is.
_HOST_PORT = re.compile(r"(?P<destination>[^:\s]+):(?P<port>\d{1,5})")


@dataclass(frozen=True)
class RemoteTarget:
    #: As the user wrote it: the device's name in the table.
    name: str
    #: What ssh and scp are given (user@host).
    destination: str
    #: From `host:port`; None: --ssh-port or ssh's own configuration.
    port: Optional[int] = None


def parse_remotes(values: Sequence[str]) -> Tuple[RemoteTarget, ...]:
    """--remote values (repeatable, each a comma-separated list) as targets, in order, without repeats."""
    names: List[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                raise UsageError(f"--remote {value!r}: an empty host name; give user@host[,user@host...]")
            if name not in names:
                names.append(name)
    return tuple(_target(name) for name in names)


def _target(name: str) -> RemoteTarget:
    match = _HOST_PORT.fullmatch(name)
    if not match:
        return RemoteTarget(name, name)
    port = int(match["port"])
    if not 0 < port < 65536:
        raise UsageError(f"--remote {name}: the port must be between 1 and 65535")
    return RemoteTarget(name, match["destination"], port)


def run_fleet(targets: Sequence[RemoteTarget], specs, settings, ssh, progress: Optional[Callable[[str], None]] = None,
              fatal: bool = False) -> List:
    """One report per target, in the order given. `fatal`: a failing host raises instead of being marked."""
    lock = threading.Lock()

    def say(message: str) -> None:
        if progress:
            with lock:  # whole lines from several threads
                progress(message)

    def one(target: RemoteTarget):
        return _run_one(target, specs, settings, ssh, say, fatal)

    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        return list(pool.map(one, targets))


def _run_one(target: RemoteTarget, specs, settings, ssh, say, fatal: bool):
    from edgevision.benchmarks.remote import run_remote

    host_ssh = replace(ssh, port=target.port) if target.port else ssh
    try:
        return run_remote(target.destination, specs, settings, host_ssh, progress=say, label=target.name)
    except EdgeVisionError as e:
        if fatal:
            raise
        say(f"[{target.name}] failed: {e}")
        return failed_report(target.name, specs, settings, str(e))


def failed_report(device: str, specs, settings, reason: str):
    """The rows a host would have had, each saying why it has no figures."""
    from edgevision.benchmarks.runner import Report, _error_row

    rows = [_error_row(spec, threads, settings.backend, f"host failed: {reason}", device)
            for spec in specs for threads in settings.threads]
    return Report(machine={}, settings=settings.to_dict(), results=rows, machines={},
                  notes=[f"{device}: not measured ({reason})"])


# --- the comparison: one column per device --------------------------------------------------------
def device_columns(report: Dict[str, Any]) -> Optional[Tuple[List[str], List[Tuple[str, List[str]]]]]:
    """(devices, [(row label, p50 cell per device)]) when the report spans devices, else None.

    A cell is the median latency in ms, "failed" where that device's measurement failed, "-" where it was
    not asked for. The median, not the mean: one stall on a busy board should not rank it.
    """
    rows = report.get("results") or []
    devices = list(dict.fromkeys(str(r.get("device")) for r in rows))
    if len(devices) < 2:
        return None
    # Keyed by what was asked (model, threads), not the backend each device resolved "auto" to.
    cells: Dict[Tuple[str, Any], Dict[str, str]] = {}
    for r in rows:
        key = (str(r.get("model")), r.get("threads"))
        p50 = (r.get("latency_ms") or {}).get("p50")
        cells.setdefault(key, {})[str(r.get("device"))] = "failed" if r.get("error") or p50 is None else _ms(p50)
    table = [(f"{model} thr={threads}", [by_device.get(d, "-") for d in devices])
             for (model, threads), by_device in cells.items()]
    return devices, table


def _ms(value: float) -> str:
    return format(value, ".3f" if abs(value) < 1 else ".2f")


def format_device_columns(report: Dict[str, Any]) -> List[str]:
    """The comparison as aligned text lines (none for a single device)."""
    found = device_columns(report)
    if not found:
        return []
    devices, table = found
    head = ["p50 ms by device"] + devices
    body = [[label] + cells for label, cells in table]
    widths = [max(len(line[i]) for line in [head] + body) for i in range(len(head))]

    def fmt(line: List[str]) -> str:
        return "  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])])

    return ["", fmt(head).rstrip(), "  ".join("-" * w for w in widths)] + [fmt(line).rstrip() for line in body]


def markdown_device_columns(report: Dict[str, Any]) -> List[str]:
    found = device_columns(report)
    if not found:
        return []
    devices, table = found
    lines = ["", "Median latency (ms), one column per device:", "",
             "| model | " + " | ".join(d.replace("|", "\\|") for d in devices) + " |",
             "|---|" + "---:|" * len(devices)]
    return lines + ["| " + label.replace("|", "\\|") + " | " + " | ".join(cells) + " |" for label, cells in table]
