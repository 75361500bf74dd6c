"""Score smoothing over the last N frames, so a live label does not flicker between two close classes."""

from __future__ import annotations

from typing import Optional

import numpy as np

from edgevision.errors import UsageError


class ScoreSmoother:
    """Mean of the score vectors of the last `window` frames (a moving window, O(classes) per frame).

    `window=1` returns each frame's scores unchanged. The window is a ring buffer with a running sum,
    so the cost does not grow with N; the sum is recomputed from the buffer every time the ring wraps,
    which keeps float32 rounding from accumulating over a long run.
    """

    def __init__(self, window: int):
        if int(window) < 1:
            raise UsageError(f"smoothing window must be 1 frame or more, got {window!r}")
        self.window = int(window)
        self._ring: Optional[np.ndarray] = None
        self._sum: Optional[np.ndarray] = None
        self._count = 0
        self._pos = 0

    def reset(self) -> None:
        self._ring = self._sum = None
        self._count = self._pos = 0

    def update(self, scores: np.ndarray) -> np.ndarray:
        """Add one frame's scores (1-D) and return the average over the window so far."""
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if self.window == 1:
            return scores
        if self._ring is None or self._ring.shape[1] != scores.shape[0]:
            self._ring = np.zeros((self.window, scores.shape[0]), dtype=np.float32)
            self._sum = np.zeros(scores.shape[0], dtype=np.float64)
            self._count = self._pos = 0
        if self._count == self.window:
            self._sum -= self._ring[self._pos]
        else:
            self._count += 1
        self._ring[self._pos] = scores
        self._sum += scores
        self._pos = (self._pos + 1) % self.window
        if self._pos == 0:
            self._sum = self._ring[: self._count].sum(axis=0, dtype=np.float64)
        return (self._sum / self._count).astype(np.float32)
