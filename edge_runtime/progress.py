"""Progress bars for the long jobs of the commands (evaluate, predict on many files, bench), on stderr.

A bar is drawn only where a person watches: stderr is a terminal. In a pipe, a log file or CI, nothing is
written, so logs carry no carriage returns. tqdm comes with the edge install (ai-edge-litert depends on it);
where it is missing, there is simply no bar. EDGEVISION_NO_PROGRESS=1 turns bars off on a terminal too.
"""

from __future__ import annotations

import os
import sys
from typing import Optional


def wants_bar(stream=None) -> bool:
    """True when `stream` (default: sys.stderr) is a terminal and bars are not turned off."""
    if os.environ.get("EDGEVISION_NO_PROGRESS"):
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False


def _size(stream) -> dict:
    """Follow the terminal's size; a terminal that reports none (0x0: some containers' ttys) would get a
    hidden bar from tqdm (it hides bars below the last row), so it is taken as 80x24."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    if size.columns > 0 and size.lines > 0:
        return {"dynamic_ncols": True}
    return {"ncols": size.columns or 80, "nrows": size.lines or 24}


class Progress:
    """A `progress(done, total)` callback that draws a tqdm bar on a terminal and does nothing elsewhere.

    Use as a context manager so the bar is closed (its line finished) before the results are printed.
    """

    def __init__(self, desc: str, unit: str = "img", stream=None):
        self.desc, self.unit = desc, unit
        self.stream = sys.stderr if stream is None else stream
        self._enabled = wants_bar(self.stream)
        self._bar = None

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def __call__(self, done: int, total: Optional[int] = None) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            try:
                from tqdm import tqdm
            except ImportError:  # a Keras-only install without the edge extra
                self._enabled = False
                return
            # leave=False: the bar disappears when done, the command's own summary line says the outcome.
            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=self.stream, leave=False,
                             **_size(self.stream))
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
