"""Helpers for the camera tests: real video files, reading them back, and running `edgevision classify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = 30.0, fourcc: str = "MJPG") -> Path:
    """Write BGR frames with OpenCV's real encoder (MJPG in .avi, mp4v in .mp4)."""
    import cv2

    frames = list(frames)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_video(path: Path) -> Tuple[int, Tuple[int, int], float]:
    """(frames decoded, (width, height), fps) of a video file, decoding every frame."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} is not a readable video"
    n, size = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        size = (frame.shape[1], frame.shape[0])
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, size, fps


def gradient_frames(n: int, width: int = 320, height: int = 240) -> List[np.ndarray]:
    """Distinct synthetic frames (a moving gradient) for tests that do not care what is in them."""
    base = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    return [np.dstack([np.roll(base, 7 * i, axis=1), base, np.roll(base, -5 * i, axis=1)]) for i in range(n)]


def classify_cmd(*args) -> List[str]:
    return [sys.executable, "-m", "edgevision.cli", "classify", *map(str, args)]


def cli_env(extra: Optional[dict] = None) -> dict:
    return {**os.environ, "EDGEVISION_DEBUG": "", "PYTHONUNBUFFERED": "1", **(extra or {})}


class LiveCLI:
    """`edgevision classify` running in the background; stdout JSON lines are collected by a thread."""

    def __init__(self, *args, env: Optional[dict] = None):
        self.proc = subprocess.Popen(
            classify_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(env)
        )
        self.lines: List[dict] = []
        self.stderr = ""
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _read_stdout(self):
        for line in self.proc.stdout:
            if line.strip():
                self.lines.append(json.loads(line))

    def _read_stderr(self):
        self.stderr = self.proc.stderr.read()

    def wait_for_frames(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.lines) >= n:
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        return len(self.lines) >= n

    def finish(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise
        finally:
            self._out.join(timeout=5)
            self._err.join(timeout=5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
