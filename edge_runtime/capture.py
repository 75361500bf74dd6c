"""Threaded capture for live sources: always the newest frame, a watchdog, and reconnection with backoff.

Why a thread: a camera or network stream delivers frames at its own pace and buffers what nobody reads, so
a consumer slower than the camera falls further and further behind (OpenCV's V4L2 backend keeps 4 buffers,
FFmpeg's network demuxer keeps many more). Here a reader thread reads continuously and keeps only the newest
frame in a one-frame slot; a frame overwritten before anyone took it is counted as dropped.

Why a watchdog: `VideoCapture.read()` can block for a long time (a stream whose server stops sending), or fail
for good (a camera unplugged, a server restarted). The reader cannot notice its own blocking, so a separate
watchdog thread checks that frames keep arriving; when none has come for `stall_timeout_s`, or the reader
failed, it abandons that connection and reopens the source, waiting `backoff_initial_s`, then twice as long,
and so on, `reconnect_attempts` times in a row before giving up. A blocked reader that is abandoned ends by
itself when FFmpeg's read timeout fires (`CAP_PROP_READ_TIMEOUT_MSEC`), and releases its capture then.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from edgevision.errors import SourceError, UsageError

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class LiveSettings:
    """How a live source (camera, network stream) is read and kept alive."""

    #: No new frame for this long means the source is stalled: reconnect.
    stall_timeout_s: float = 2.0
    #: How long opening a network stream may take (FFmpeg's open timeout) before it counts as failed.
    open_timeout_s: float = 5.0
    #: Reconnection attempts in a row, without a frame in between, before giving up.
    reconnect_attempts: int = 4
    #: Wait before the first reconnection attempt; each further attempt waits `backoff_factor` times longer.
    backoff_initial_s: float = 0.5
    backoff_factor: float = 2.0
    backoff_max_s: float = 8.0
    #: Frames a camera driver may buffer; 1 keeps it from handing us old frames (not every driver obeys).
    camera_buffer_frames: int = 1

    def __post_init__(self):
        for name in ("stall_timeout_s", "open_timeout_s", "backoff_initial_s", "backoff_max_s"):
            if not getattr(self, name) > 0:
                raise UsageError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.reconnect_attempts < 0:
            raise UsageError(f"reconnect_attempts must be 0 or more, got {self.reconnect_attempts!r}")
        if self.backoff_factor < 1:
            raise UsageError(f"backoff_factor must be at least 1, got {self.backoff_factor!r}")

    def backoff_delays(self) -> List[float]:
        """The waits before each reconnection attempt, in seconds: 0.5, 1, 2, 4 by default."""
        return [
            min(self.backoff_max_s, self.backoff_initial_s * self.backoff_factor**i)
            for i in range(self.reconnect_attempts)
        ]


@dataclass(frozen=True)
class CapturedFrame:
    image: np.ndarray
    #: Position of this frame among all frames read from the source (dropped ones included).
    sequence: int
    #: time.perf_counter_ns() when read() returned it.
    captured_ns: int
    #: How long read() (grab + decode) took, in nanoseconds.
    read_ns: int


Opener = Callable[[], "object"]  # returns an opened cv2.VideoCapture, or raises SourceError


class LatestFrameCapture:
    """Reads a live source in the background and hands out only the newest frame.

    `opener` opens the source and returns a `cv2.VideoCapture` (raising SourceError if it cannot);
    it is called again for every reconnection. `on_event` receives one-line human messages about
    stalls and reconnections (the CLI prints them on stderr).
    """

    def __init__(
        self,
        opener: Opener,
        name: str,
        settings: LiveSettings = LiveSettings(),
        on_event: Optional[Callable[[str], None]] = None,
    ):
        self._opener = opener
        self.name = name
        self.settings = settings
        self._on_event = on_event
        self._cond = threading.Condition()
        self._slot: Optional[CapturedFrame] = None
        self._sequence = 0
        self._generation = 0
        self._reader_failed: Optional[int] = None  # generation whose reader saw read() fail
        self._last_progress_ns = 0
        self._ended: Optional[str] = None
        self._reconnect_streak = 0  # reconnection attempts since the last frame
        self._failed_read_ns = 0  # how long the read that failed had waited
        self._stop = threading.Event()
        self._readers: List[threading.Thread] = []
        self._watchdog: Optional[threading.Thread] = None
        self.frames_read = 0
        self.dropped = 0
        self.reconnects = 0
        self.events: List[str] = []
        self.nominal_fps: Optional[float] = None

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "LatestFrameCapture":
        """Open the source (SourceError if it cannot be opened) and start reading."""
        cap = self._opener()
        self.nominal_fps = _nominal_fps(cap)
        with self._cond:
            self._last_progress_ns = time.perf_counter_ns()
            self._start_reader(cap, self._generation)
        self._watchdog = threading.Thread(target=self._watch, name=f"watchdog:{self.name}", daemon=True)
        self._watchdog.start()
        return self

    def close(self) -> None:
        """Stop reading and release the device. Waits for readers to let go of it (bounded)."""
        self._stop.set()
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=1.0)
        # A reader blocked in read() lets go when FFmpeg's read timeout fires; do not wait much longer.
        deadline = time.monotonic() + self.settings.stall_timeout_s + 0.5
        for reader in self._readers:
            reader.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> "LatestFrameCapture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- consumer side ------------------------------------------------------------------------------
    def read(self, timeout: Optional[float] = None, stop: Optional[threading.Event] = None) -> Optional[CapturedFrame]:
        """The newest frame not yet handed out; waits for one.

        Returns None when `stop` is set or `timeout` passes. Raises SourceError once the source is lost
        for good (after the reconnection attempts), when no frame is left to hand out.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._slot is not None:
                    frame, self._slot = self._slot, None
                    return frame
                if self._ended is not None:
                    raise SourceError(self._ended)
                if (stop is not None and stop.is_set()) or self._stop.is_set():
                    return None
                wait = 0.1
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    wait = min(wait, remaining)
                self._cond.wait(wait)

    # --- reader thread ------------------------------------------------------------------------------
    def _start_reader(self, cap, generation: int) -> None:
        reader = threading.Thread(
            target=self._read_loop, args=(cap, generation), name=f"capture:{self.name}:{generation}", daemon=True
        )
        self._readers = [r for r in self._readers if r.is_alive()] + [reader]
        reader.start()

    def _read_loop(self, cap, generation: int) -> None:
        try:
            while True:
                start = time.perf_counter_ns()
                ok, image = cap.read()
                now = time.perf_counter_ns()
                with self._cond:
                    if generation != self._generation:
                        return  # abandoned by the watchdog or closed: a newer connection owns the slot
                    if not ok or image is None:
                        self._reader_failed = generation
                        self._failed_read_ns = now - start
                        self._cond.notify_all()
                        return
                    if self._slot is not None:
                        self.dropped += 1
                    self._sequence += 1
                    self.frames_read += 1
                    self._slot = CapturedFrame(image, self._sequence, now, now - start)
                    self._last_progress_ns = now
                    self._reconnect_streak = 0
                    self._cond.notify_all()
        finally:
            cap.release()

    # --- watchdog thread ----------------------------------------------------------------------------
    def _watch(self) -> None:
        stall_ns = int(self.settings.stall_timeout_s * NS_PER_S)
        while not self._stop.wait(0.05):
            with self._cond:
                failed = self._reader_failed == self._generation
                stalled = time.perf_counter_ns() - self._last_progress_ns > stall_ns
                if not (failed or stalled):
                    continue
                # Abandon this connection: its reader exits (and releases) as soon as read() returns.
                self._generation += 1
                # A read that failed after waiting about as long as the stall limit is FFmpeg's read timeout:
                # the source stalled; a read that failed at once means the stream ended or the device went.
                timed_out = failed and self._failed_read_ns >= 0.9 * stall_ns
            if stalled or timed_out:
                why = f"no frame for {self.settings.stall_timeout_s:g} s"
            else:
                why = "the stream ended or failed"
            if not self._reconnect(why):
                return

    def _reconnect(self, why: str) -> bool:
        delays = self.settings.backoff_delays()
        while self._reconnect_streak < len(delays):
            delay = delays[self._reconnect_streak]
            self._reconnect_streak += 1
            attempt = self._reconnect_streak
            self._event(f"{self.name}: {why}; reconnecting in {delay:g} s (attempt {attempt} of {len(delays)})")
            if self._stop.wait(delay):
                return False
            try:
                cap = self._opener()
            except SourceError as e:
                why = f"reconnection failed ({e})"
                continue
            with self._cond:
                if self._stop.is_set():
                    cap.release()
                    return False
                self.reconnects += 1
                self._last_progress_ns = time.perf_counter_ns()
                self._start_reader(cap, self._generation)
            self._event(f"{self.name}: reconnected (attempt {attempt})")
            return True
        message = (
            f"lost the live source {self.name}: {why}, and {len(delays)} reconnection attempts "
            f"(waiting {', '.join(f'{d:g}' for d in delays)} s) did not bring it back"
            if delays
            else f"lost the live source {self.name}: {why} (reconnection is disabled)"
        )
        self._event(message)
        with self._cond:
            self._ended = message
            self._cond.notify_all()
        return False

    def _event(self, message: str) -> None:
        self.events.append(message)
        if self._on_event is not None:
            try:
                self._on_event(message)
            except Exception:  # a failing printer must not kill the watchdog
                pass


def _nominal_fps(cap) -> Optional[float]:
    import cv2

    fps = cap.get(cv2.CAP_PROP_FPS)
    return float(fps) if fps and 0 < fps < 1000 else None
