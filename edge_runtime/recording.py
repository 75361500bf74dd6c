"""Writing the annotated frames to a video file, atomically, at the rate they really came.

The file appears under its name only once it is complete (edgevision.atomic): a crash or a kill never
leaves a half-written .mp4 in its place, and an interrupted run (Ctrl-C) still finishes the file properly.
OpenCV's VideoWriter does not report write errors (a full disk gave an unplayable file and no error), so the
finished temporary file is reopened and its frames counted before it may replace anything.

Frame rate: for a video file the output keeps the source's rate, so it plays at the original speed. A live
source is classified at whatever rate the device manages (stale frames are dropped), so the first second
of results is buffered to measure that rate before the writer is opened; the video then plays in real time.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from edgevision.atomic import atomic_path
from edgevision.errors import SourceError, UsageError, WriteError

FOURCC = "mp4v"  # MPEG-4 Part 2: every OpenCV build with FFmpeg writes it; desktop players read it, browsers do not
#: Codecs tried in order for each file type, picked from the extension. WebM/VP9 plays in every browser and the
#: opencv-python wheels write it; H.264 (avc1) plays in browsers too but is absent from most OpenCV builds
#: (then an .mp4 falls back to mp4v, which desktop players read and browsers mostly refuse).
CODECS = {".webm": ("VP90", "VP80"), ".mp4": ("avc1", FOURCC), ".m4v": ("avc1", FOURCC), ".mov": ("avc1", FOURCC),
          ".avi": (FOURCC, "MJPG"), ".mkv": (FOURCC,)}
#: Codecs a web browser plays (as <video>), so the saved message can say when a file will not.
BROWSER_CODECS = ("VP90", "VP80", "avc1")
#: Frames buffered (or seconds, whichever comes first) to measure a live source's rate.
MEASURE_FRAMES = 30
MEASURE_SECONDS = 1.0
FPS_RANGE = (1.0, 120.0)
#: FFmpeg picks the container from the file name.
VIDEO_SUFFIXES = tuple(CODECS)
#: Free space below which a run is refused before it starts: not even a few seconds of video would fit.
MIN_FREE_BYTES = 1024 * 1024


def check_video_target(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"cannot save video as {path}: it is a directory; give a file name such as {path / 'out.mp4'}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(
            f"cannot save video as {path}: unknown video file type {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(VIDEO_SUFFIXES)} (e.g. out.webm, which plays in browsers)"
        )
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot save video as {path}: cannot create {parent} ({e.strerror})") from e
    if not os.access(parent, os.W_OK):
        raise UsageError(f"cannot save video as {path}: {parent} is not writable")
    free = _free_bytes(parent)
    if free < MIN_FREE_BYTES:
        raise WriteError(f"cannot save video as {path}: the disk holding {parent} is full ({free} bytes free)")


def _free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use in `folder` (a large number where that cannot be told)."""
    try:
        fs = os.statvfs(folder)
    except (OSError, AttributeError):  # statvfs: POSIX only
        return 1 << 62
    return fs.f_bavail * fs.f_frsize


@contextlib.contextmanager
def _quiet_stderr():
    """Silence FFmpeg while a codec is probed: it prints to file descriptor 2 directly, past OpenCV's log level
    ("tag 'VP90' is not supported", "could not open codec h264_v4l2m2m"), although the codec that follows works.
    EDGEVISION_DEBUG=1 keeps those lines."""
    if os.environ.get("EDGEVISION_DEBUG"):
        yield
        return
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (an embedding host): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _Discard(Exception):
    """Raised into the atomic writer to throw the temporary file away."""


class VideoSink:
    """Append BGR frames to `path`; `close()` finishes the file (or leaves nothing if no frame came).

    fps: the output rate; None to measure it from the timing of the first frames.
    """

    def __init__(self, path, fps: Optional[float] = None):
        self.path = Path(path)
        check_video_target(self.path)  # fail before the run, not after the first second of it
        self.fps = None if fps is None else float(min(max(fps, FPS_RANGE[0]), FPS_RANGE[1]))
        self.frames = 0
        self.codec: Optional[str] = None  # the fourcc the file was written with, once open
        self._size: Optional[Tuple[int, int]] = None  # (width, height) of the first frame
        self._pending: List[np.ndarray] = []
        self._first_at: Optional[float] = None
        self._stack: Optional[contextlib.ExitStack] = None
        self._writer = None
        self._tmp: Optional[Path] = None
        self.closed = False

    def write(self, image: np.ndarray) -> None:
        if self.closed:
            raise SourceError(f"the video {self.path} is already finished")
        if self._size is None:
            self._size = (image.shape[1], image.shape[0])
        if self._writer is None and self.fps is None:
            now = time.monotonic()
            if self._first_at is None:
                self._first_at = now
            self._pending.append(image.copy())
            if len(self._pending) < MEASURE_FRAMES and now - self._first_at < MEASURE_SECONDS:
                return
            self._open(self._measured_fps(now))
            return
        if self._writer is None:
            self._open(self.fps)
        self._append(image)

    def _measured_fps(self, now: float) -> float:
        span = now - (self._first_at or now)
        rate = (len(self._pending) - 1) / span if span > 0 and len(self._pending) > 1 else FPS_RANGE[0]
        return float(min(max(rate, FPS_RANGE[0]), FPS_RANGE[1]))

    def _open(self, fps: float) -> None:
        import cv2

        self.fps = fps
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path, suffix=self.path.suffix or ".mp4"))
        self._tmp = tmp
        codecs = CODECS.get(self.path.suffix.lower(), (FOURCC,))
        writer = None
        for codec in codecs:
            with _quiet_stderr():  # a missing encoder is expected here: the next codec is tried
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, self._size)
            if writer.isOpened():
                self.codec = codec
                break
            writer.release()
        if self.codec is None:
            self._abort()
            raise SourceError(
                f"cannot write the video {self.path}: this OpenCV has no {' or '.join(codecs)} encoder for "
                f"{self.path.suffix} files (use a .webm or .avi file name)"
            )
        self._writer = writer
        pending, self._pending = self._pending, []
        for image in pending:
            self._append(image)

    def _append(self, image: np.ndarray) -> None:
        import cv2

        if (image.shape[1], image.shape[0]) != self._size:  # folders mix sizes; a video cannot
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> Optional[Path]:
        """Finish the file and move it into place; returns its path, or None if no frame was written."""
        if self.closed:
            return self.path if self.frames else None
        self.closed = True
        if self._writer is None and self._pending:
            self._open(self.fps or self._measured_fps(time.monotonic()))
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        problem = self._check_written()
        if problem:
            full = _free_bytes(self.path.parent) < MIN_FREE_BYTES  # before the partial file frees its space
            self._abort()
            kept = f"; the earlier {self.path.name} is kept" if self.path.is_file() else ""
            reason = "the disk is full" if full else "is the disk full, or was the file changed meanwhile?"
            raise WriteError(f"cannot save the video {self.path}: {problem} ({reason}){kept}")
        self._stack.close()  # fsync and rename into place
        return self.path

    def _check_written(self) -> Optional[str]:
        """Why the temporary file is not the video that was written (None when it is): the container must open,
        declare every frame, and its last frame must decode, which fails when the disk filled up midway."""
        import cv2

        tmp = self._tmp
        size = tmp.stat().st_size if tmp.is_file() else 0
        if size == 0:
            return f"{self.frames} frames were sent but the file is empty"
        capture = cv2.VideoCapture(str(tmp))
        try:
            if not capture.isOpened():
                return f"the written file ({size} bytes) cannot be opened as a video"
            declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            if declared < self.frames:
                return f"only {max(declared, 0)} of {self.frames} frames reached the file"
            capture.set(cv2.CAP_PROP_POS_FRAMES, self.frames - 1)
            ok, _ = capture.read()
            return None if ok else f"the last of its {self.frames} frames does not decode"
        finally:
            capture.release()

    def _abort(self) -> None:
        """Throw the partial file away (used when the writer cannot even start)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._stack is not None:
            with contextlib.suppress(_Discard):
                self._stack.__exit__(_Discard, _Discard(), None)
            self._stack = None
        self.closed = True

    @property
    def browser_playable(self) -> bool:
        return self.codec in BROWSER_CODECS

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
