"""Timing and memory measurement: numbers a user can trust.

Rules (the same as airbench's): warm-up runs are excluded (the first invokes pay for lazy XNNPACK packing and
cold caches); the timed loop holds nothing but `invoke()` between two `time.perf_counter_ns()` reads; every
sample is kept, so the report gives the distribution (p50/p90/p99), not only a mean.

The harness proves its own cost. It alternates blocks of a bare `invoke()` loop (one clock read per block) with
blocks of the timed loop (two clock reads and a list store per call) on the same interpreter, and reports
`harness_overhead`, the median over block pairs of timed-block time / bare-block time. Alternating blocks, and
alternating which one goes first, spreads frequency changes and neighbours' load evenly over both, so the ratio
measures the harness and not the machine's mood.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

NS_PER_MS = 1_000_000
#: Calls per block when alternating bare and timed loops: long enough that the per-block clock reads vanish,
#: short enough that a burst of load on the machine hits both loops alike.
BLOCK_RUNS = 5
#: Fewer block pairs than this give no overhead ratio: one slow block (a late warm-up effect, a neighbour's
#: burst) would be the whole answer. With BLOCK_RUNS = 5 that means at least 15 runs.
MIN_BLOCK_PAIRS = 3


@dataclass(frozen=True)
class LatencyStats:
    """Latency distribution in milliseconds."""

    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float
    std: float
    n: int

    def to_dict(self) -> Dict[str, float]:
        return {k: getattr(self, k) for k in ("mean", "p50", "p90", "p99", "min", "max", "std")}

    @property
    def per_second(self) -> float:
        return 1000.0 / self.mean if self.mean > 0 else math.inf


def latency_stats(samples_ns: Sequence[int]) -> LatencyStats:
    """Summary of per-call times (nanoseconds) in milliseconds. Percentiles interpolate linearly."""
    if len(samples_ns) == 0:
        raise ValueError("latency_stats needs at least one sample")
    ms = np.asarray(samples_ns, dtype=np.float64) / NS_PER_MS
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(
        mean=float(ms.mean()),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        min=float(ms.min()),
        max=float(ms.max()),
        std=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        n=int(ms.size),
    )


@dataclass(frozen=True)
class Measurement:
    samples_ns: List[int]
    #: Wall time of each timed block (its calls plus the harness's own clock reads and stores).
    timed_blocks_ns: List[int]
    #: Wall time of the bare block run next to each timed block (same number of calls); empty if skipped.
    bare_blocks_ns: List[int]

    @property
    def harness_overhead(self) -> Optional[float]:
        """Timed-loop time / bare-loop time: 1.00 means the harness costs nothing measurable.

        The median of the per-block ratios: neighbouring blocks see the same machine, and a burst of load
        that hits one block (other processes, a frequency change) does not move the median.
        """
        ratios = [t / b for t, b in zip(self.timed_blocks_ns, self.bare_blocks_ns) if b > 0]
        return float(np.median(ratios)) if len(ratios) >= MIN_BLOCK_PAIRS else None


def measure(invoke: Callable[[], object], runs: int, warmup: int, compare_bare: bool = True) -> Measurement:
    """Time `runs` calls of `invoke` after `warmup` untimed calls.

    With `compare_bare`, the same number of calls also run in a bare loop, interleaved block by block, so the
    harness's overhead is measured on this machine in this process (it doubles the measuring time).
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    clock = time.perf_counter_ns
    for _ in range(warmup):
        invoke()
    samples = [0] * runs
    timed_blocks: List[int] = []
    bare_blocks: List[int] = []
    done = 0
    while done < runs:
        n = min(BLOCK_RUNS, runs - done)
        # Alternate which loop goes first, so neither always runs on caches the other warmed.
        bare_first = len(timed_blocks) % 2 == 0
        if compare_bare and bare_first:
            bare_blocks.append(_bare_block(invoke, n, clock))
        start = clock()
        for i in range(done, done + n):
            t0 = clock()
            invoke()
            samples[i] = clock() - t0
        timed_blocks.append(clock() - start)
        if compare_bare and not bare_first:
            bare_blocks.append(_bare_block(invoke, n, clock))
        done += n
    return Measurement(samples, timed_blocks, bare_blocks)


def _bare_block(invoke, n: int, clock) -> int:
    start = clock()
    for _ in range(n):
        invoke()
    return clock() - start


def timer_cost_ns(repeats: int = 10_000) -> float:
    """What the timed loop adds per call besides invoke(): two clock reads and one list store (median ns).

    Divided by the latency, this is the harness's structural overhead, independent of the machine's noise.
    """
    clock = time.perf_counter_ns
    samples = [0] * repeats
    noop = _noop
    for i in range(repeats):
        t0 = clock()
        noop()
        samples[i] = clock() - t0
    return float(np.median(samples))


def _noop() -> None:
    return None


def timed_ms(fn: Callable[[], object]) -> float:
    """Wall time of one call in milliseconds (for load times, not for latency distributions)."""
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / NS_PER_MS


# --- memory --------------------------------------------------------------------------------------
def peak_rss_mb() -> Optional[float]:
    """Peak resident set size of this process so far, in MiB.

    Linux: VmHWM from /proc/self/status. Not `getrusage().ru_maxrss`: that survives exec, so a child
    started from a large parent (one that had imported OpenCV, say) reported the parent's peak instead of
    its own. Elsewhere: ru_maxrss (macOS; the parent of a benchmark child is small there too), then psutil.
    """
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return round(hwm / 1024, 1)
    try:
        import resource
    except ImportError:  # Windows
        return _psutil_peak_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _proc_status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_mb() -> Optional[float]:
    """Resident set size now, in MiB."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            resident_pages = int(f.read().split()[1])
        return round(resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # type: ignore[import-not-found]
    except ImportError:
        return None
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def _psutil_peak_mb() -> Optional[float]:
    try:
        import psutil  # type: ignore[import-not-found]
    except ImportError:
        return None
    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None) or info.rss
    return round(peak / 2**20, 1)
