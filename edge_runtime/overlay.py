"""The annotation drawn on live frames: top labels with confidence bars, FPS and inference time.

OpenCV only (putText, rectangle), sized from the frame's height so it reads the same on a 320x240 webcam
and a 4K stream. The panel is a translucent dark box so white text stays readable on any picture.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

#: Text height as a fraction of the frame height for the main line; other lines are smaller.
TEXT_HEIGHT_FRACTION = 0.045
FONT_SCALE_RANGE = (0.35, 3.0)
PANEL_ALPHA = 0.55  # how dark the panel behind the text is
WHITE = (255, 255, 255)
GREY = (200, 200, 200)
GREEN = (80, 220, 80)
# Hershey fonts are about 22 px tall at scale 1.
_HERSHEY_PX = 22.0


@dataclass(frozen=True)
class OverlayStats:
    fps: Optional[float] = None
    infer_ms: Optional[float] = None
    dropped: int = 0
    note: str = ""  # e.g. "reconnecting..."


def ascii_text(text: str) -> str:
    """Hershey fonts draw only ASCII: 'café' becomes 'cafe' rather than 'caf?'."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return folded or "?"


def font_scale(height: int) -> float:
    lo, hi = FONT_SCALE_RANGE
    return float(min(hi, max(lo, height * TEXT_HEIGHT_FRACTION / _HERSHEY_PX)))


def draw_overlay(image: np.ndarray, top: Sequence, stats: OverlayStats = OverlayStats()) -> np.ndarray:
    """Draw `top` (objects with .label and .score) and `stats` onto `image` in place; returns it."""
    import cv2

    h, w = image.shape[:2]
    scale = font_scale(h)
    small = scale * 0.75
    thick = max(1, round(scale * 2))
    font = cv2.FONT_HERSHEY_SIMPLEX
    pad = max(4, round(8 * scale))

    lines = []  # (text, scale, colour, score or None)
    for rank, item in enumerate(top):
        text = f"{ascii_text(str(item.label))}  {item.score * 100:.1f}%"
        lines.append((text, scale if rank == 0 else small, WHITE if rank == 0 else GREY, float(item.score)))
    parts = []
    if stats.fps is not None:
        parts.append(f"{stats.fps:.1f} FPS")
    if stats.infer_ms is not None:
        parts.append(f"infer {stats.infer_ms:.1f} ms")
    if stats.dropped:
        parts.append(f"dropped {stats.dropped}")
    if parts:
        lines.append(("  ".join(parts), small, GREEN, None))
    if stats.note:
        lines.append((ascii_text(stats.note), small, (80, 180, 255), None))
    if not lines:
        return image

    sizes = [cv2.getTextSize(text, font, s, thick) for text, s, _, _ in lines]
    bar_h = max(2, round(4 * scale))
    row_h = [size[0][1] + size[1] + pad + (bar_h + 2 if score is not None else 0) for size, (_, _, _, score) in zip(sizes, lines)]
    panel_w = min(w, max(size[0][0] for size in sizes) + 2 * pad)
    panel_h = min(h, sum(row_h) + pad)

    roi = image[:panel_h, :panel_w]
    # Darken in place: a translucent panel without allocating a full-frame copy.
    cv2.addWeighted(roi, 1.0 - PANEL_ALPHA, np.zeros_like(roi), PANEL_ALPHA, 0.0, dst=roi)

    y = pad
    for (text, s, colour, score), ((tw, th), base), rh in zip(lines, sizes, row_h):
        y_text = y + th
        cv2.putText(image, text, (pad, y_text), font, s, colour, thick, cv2.LINE_AA)
        if score is not None:
            y_bar = y_text + base
            full = panel_w - 2 * pad
            cv2.rectangle(image, (pad, y_bar), (pad + full, y_bar + bar_h), (90, 90, 90), -1)
            cv2.rectangle(image, (pad, y_bar), (pad + max(1, int(full * min(1.0, score))), y_bar + bar_h), colour, -1)
        y += rh
    return image
