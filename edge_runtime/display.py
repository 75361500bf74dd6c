"""Showing frames in a window, where the machine can.

A window needs two things: a display (DISPLAY or WAYLAND_DISPLAY on Linux) and an OpenCV built with a GUI
backend. `opencv-python-headless`, the usual package on servers and in the `edge` extra, has none: its
`imshow` raises. `display_available()` checks both, so `edgevision classify` falls back to headless output
instead of failing.
"""

from __future__ import annotations

import os
import sys

QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc


def opencv_has_gui() -> bool:
    import cv2

    framework = getattr(cv2, "currentUIFramework", None)
    if framework is not None:  # OpenCV >= 4.6: "" when built without highgui backends
        try:
            return bool(framework())
        except cv2.error:
            return False
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() not in ("NONE", "NO")
    return False


#: The pip package whose OpenCV has a GUI backend (it replaces the headless one; both provide `cv2`).
GUI_PACKAGE = "opencv-python"


def _no_display() -> bool:
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def display_available() -> bool:
    return not _no_display() and opencv_has_gui()


def why_no_window():
    """One line saying why no window can open here, naming the fix; None when one can.

    The OpenCV build comes first: with the headless package installed even a desktop session gets no window,
    and that is what users of the `edge` install hit without being told."""
    if not opencv_has_gui():
        return (f"no window: this OpenCV has no GUI (opencv-python-headless); for a window, "
                f"pip uninstall opencv-python-headless && pip install {GUI_PACKAGE}")
    if _no_display():
        return "no window: no display here (DISPLAY and WAYLAND_DISPLAY are unset)"
    return None


class Window:
    """One OpenCV window; `show()` returns False once the user pressed q/Esc or closed the window."""

    def __init__(self, title: str = "edgevision"):
        import cv2

        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, image, wait_ms: int = 1) -> bool:
        import cv2

        cv2.imshow(self.title, image)
        key = cv2.waitKey(wait_ms)
        if key != -1 and (key & 0xFF) in QUIT_KEYS:
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def close(self) -> None:
        import cv2

        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass
