"""Where frames come from: a camera, a network stream, a video file, an image file or a folder of images.

`open_source("0")`, `open_source("rtsp://cam/stream")`, `open_source("clip.mp4")`, `open_source("photos/")`
all give a `FrameSource` whose `read()` returns the next `Frame` (uint8 BGR) or None at the end.

Two kinds of sources behave differently on purpose:
- live sources (cameras, network streams) run at their own pace: they are read by a capture thread that
  keeps only the newest frame (see capture.py), so `read()` returns the newest frame and stale ones are
  dropped and counted; a stalled or dropped stream is reopened with backoff.
- files and folders are read in the caller's thread, frame by frame: nothing is ever dropped, and a slow
  consumer simply takes longer. Unreadable images in a folder are skipped and counted.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

from edgevision.edge_runtime.capture import LatestFrameCapture, LiveSettings
from edgevision.edge_runtime.images import is_image_file, read_image
from edgevision.errors import DataError, EdgeVisionError, ImageError, SourceError

# FFmpeg prints its own errors (connection refused, timeouts) on stderr, under our one-line messages; we
# report those failures ourselves. Read by OpenCV when FFmpeg is first used, so set before that.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

SOURCE_KINDS = ("camera", "stream", "video", "image", "folder")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_CAMERA_DEVICE = re.compile(r"^/dev/video\d+$")
SourceLike = Union[str, int, os.PathLike]


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # one of SOURCE_KINDS
    target: Union[int, str]  # camera index or device path, URL, or file/folder path

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "stream")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # uint8 HxWx3, BGR
    #: Position in the source: frame number in a file or folder, capture sequence number for live sources
    #: (gaps are dropped frames).
    index: int
    #: The image file's name for folders and images, else "".
    name: str
    #: time.perf_counter_ns() when the frame was read.
    captured_ns: int


def parse_source(source: SourceLike) -> SourceSpec:
    """Decide what `source` is, or raise SourceError saying what was expected."""
    if isinstance(source, int):
        return SourceSpec("camera", source)
    text = str(source).strip()
    if text.isdigit():
        return SourceSpec("camera", int(text))
    if _CAMERA_DEVICE.match(text):
        return SourceSpec("camera", text)
    if _URL.match(text):
        return SourceSpec("stream", text)
    path = Path(text).expanduser()
    if path.is_dir():
        return SourceSpec("folder", str(path))
    if path.is_file():
        return SourceSpec("image" if is_image_file(path) else "video", str(path))
    raise SourceError(
        f"source {text!r} does not exist; expected a camera index (0), a video file, a stream URL "
        "(http://host/stream.mjpg, rtsp://...), an image file or a folder of images"
    )


class FrameSource:
    """Common interface. Use as a context manager, or call open() and close()."""

    live = False
    spec: SourceSpec

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        self.skipped: List[Tuple[str, str]] = []  # (name, why) of frames that could not be read
        self.frames_read = 0

    @property
    def description(self) -> str:
        return f"{self.spec.kind} {self.spec.target}"

    @property
    def dropped(self) -> int:
        """Frames the source delivered that were never handed out (always 0 for files)."""
        return 0

    @property
    def nominal_fps(self) -> Optional[float]:
        """Frame rate the source reports, if it has one."""
        return None

    @property
    def events(self) -> List[str]:
        return []

    def open(self) -> "FrameSource":
        return self

    def read(self, stop: Optional[threading.Event] = None) -> Optional[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


class ImageSource(FrameSource):
    """One image file: one frame."""

    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        self._done = False

    def read(self, stop=None) -> Optional[Frame]:
        if self._done:
            return None
        self._done = True
        path = Path(self.spec.target)
        image = read_image(path)  # ImageError for the one image the user asked for
        self.frames_read += 1
        return Frame(image, 0, path.name, time.perf_counter_ns())


class FolderSource(FrameSource):
    """The image files of a folder, sorted by name; unreadable ones are skipped and counted."""

    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        self._files: List[Path] = []
        self._next = 0

    def open(self) -> "FolderSource":
        folder = Path(self.spec.target)
        try:
            self._files = sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p)), key=lambda p: p.name)
        except OSError as e:
            raise DataError(f"cannot list the folder {folder}: {e.strerror}") from e
        if not self._files:
            raise DataError(f"the folder {folder} has no image files (expected .jpg, .jpeg, .png, .bmp or .webp)")
        return self

    @property
    def total(self) -> int:
        return len(self._files)

    def read(self, stop=None) -> Optional[Frame]:
        while self._next < len(self._files):
            path = self._files[self._next]
            index = self._next
            self._next += 1
            try:
                image = read_image(path)
            except ImageError as e:
                self.skipped.append((path.name, str(e)))
                continue
            self.frames_read += 1
            return Frame(image, index, path.name, time.perf_counter_ns())
        return None


class VideoFileSource(FrameSource):
    """A video file, every frame in order."""

    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        self._cap = None
        self._index = 0

    def open(self) -> "VideoFileSource":
        import cv2

        cap = cv2.VideoCapture(str(self.spec.target))
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot read the video file {self.spec.target}: OpenCV could not open it "
                "(expected a video FFmpeg can decode, e.g. .mp4, .avi, .mkv; or an image or folder)"
            )
        self._cap = _within_pixel_cap(cap, f"the video file {self.spec.target}")
        return self

    @property
    def nominal_fps(self) -> Optional[float]:
        import cv2

        if self._cap is None:
            return None
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        return float(fps) if fps and 0 < fps < 1000 else None

    def read(self, stop=None) -> Optional[Frame]:
        if self._cap is None:
            self.open()
        ok, image = self._cap.read()
        if not ok or image is None:
            if self._index == 0:
                raise SourceError(f"the video file {self.spec.target} has no frames OpenCV can decode")
            return None
        frame = Frame(image, self._index, "", time.perf_counter_ns())
        self._index += 1
        self.frames_read += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class LiveSource(FrameSource):
    """A camera or network stream, read by a capture thread that keeps only the newest frame."""

    live = True

    def __init__(self, spec: SourceSpec, settings: LiveSettings = LiveSettings(), on_event=None):
        super().__init__(spec)
        self.settings = settings
        self._capture = LatestFrameCapture(self._open_capture, self._display_name(), settings, on_event)
        self._opened = False

    def _display_name(self) -> str:
        if self.spec.kind == "camera":
            return f"camera {self.spec.target}"
        return _redact(str(self.spec.target))

    def _open_capture(self):
        import cv2

        if self.spec.kind == "camera":
            cap = cv2.VideoCapture(self.spec.target)
            if not cap.isOpened():
                cap.release()
                raise SourceError(
                    f"cannot open camera {self.spec.target}: no such device, or another program is using it "
                    "(list cameras with `ls /dev/video*`; close other programs using it)"
                )
            cap.set(cv2.CAP_PROP_BUFFERSIZE, self.settings.camera_buffer_frames)
            return _within_pixel_cap(cap, self._display_name())
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.settings.open_timeout_s * 1000),
            # A read that blocks longer than the watchdog's limit gives up by itself, so an abandoned
            # connection is released soon after the watchdog has moved on.
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.settings.stall_timeout_s * 1000),
        ]
        cap = cv2.VideoCapture(str(self.spec.target), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open the stream {self._display_name()}: no answer, refused, or not a video stream "
                f"within {self.settings.open_timeout_s:g} s (check the URL and that the camera is reachable)"
            )
        return _within_pixel_cap(cap, f"the stream {self._display_name()}")

    def open(self) -> "LiveSource":
        if not self._opened:
            self._capture.start()
            self._opened = True
        return self

    @property
    def dropped(self) -> int:
        return self._capture.dropped

    @property
    def reconnects(self) -> int:
        return self._capture.reconnects

    @property
    def nominal_fps(self) -> Optional[float]:
        return self._capture.nominal_fps

    @property
    def events(self) -> List[str]:
        return list(self._capture.events)

    @property
    def frames_read(self) -> int:  # type: ignore[override]
        return self._capture.frames_read

    @frames_read.setter
    def frames_read(self, value) -> None:
        pass  # counted by the capture thread

    def read(self, stop: Optional[threading.Event] = None) -> Optional[Frame]:
        if not self._opened:
            self.open()
        captured = self._capture.read(stop=stop)
        if captured is None:
            return None
        return Frame(captured.image, captured.sequence - 1, "", captured.captured_ns)

    def close(self) -> None:
        if self._opened:
            self._capture.close()


def _redact(url: str) -> str:
    """Hide a password in rtsp://user:password@host URLs before it reaches a log or an error message."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _within_pixel_cap(cap, name: str):
    """`cap`, or SourceError (and released) when its frames are larger than images may be: each decoded frame
    costs width x height x 3 bytes, several in flight, so a huge stream must be refused before the first read."""
    import cv2

    from edgevision.edge_runtime.images import MAX_PIXELS

    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    if w * h > MAX_PIXELS:
        cap.release()
        raise SourceError(f"{name} sends {w}x{h} frames ({w * h / 1e6:.0f} Mpx), more than the "
                          f"{MAX_PIXELS / 1e6:.0f} Mpx limit (set EDGEVISION_MAX_IMAGE_PIXELS to allow it)")
    return cap


def open_source(source: SourceLike, live_settings: LiveSettings = LiveSettings(), on_event=None) -> FrameSource:
    """Parse and open a source; SourceError (or DataError for an empty folder) if that is impossible."""
    spec = source if isinstance(source, SourceSpec) else parse_source(source)
    if spec.kind == "folder":
        src: FrameSource = FolderSource(spec)
    elif spec.kind == "image":
        src = ImageSource(spec)
    elif spec.kind == "video":
        src = VideoFileSource(spec)
    else:
        src = LiveSource(spec, live_settings, on_event)
    try:
        return src.open()
    except EdgeVisionError:
        src.close()
        raise
