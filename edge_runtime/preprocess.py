"""Preprocessing: the one definition shared by training, conversion and the device.

A model's `PreprocessConfig` travels with it (as `preprocess.json` in a run directory and inside the
`.tflite` file's metadata), and the training pipeline calls the very functions below, so a model sees the
same pixels in training and on the device: same resize, same colour order, same normalisation.

Conventions: images handed around the runtime are uint8 HxWx3 in OpenCV's BGR order unless a function says
otherwise; `mean` and `std` are in pixel units (0..255), so normalised = (pixel - mean) / std.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np

from edgevision.errors import UsageError

RESIZE_MODES = ("stretch", "center_crop")
#: Largest preprocess.json read: the settings are a few hundred bytes.
MAX_SETTINGS_BYTES = 1024 * 1024
COLOR_ORDERS = ("RGB", "BGR")

# The usual normalisations, named so that no model definition repeats their numbers.
# MobileNet-family ImageNet weights expect pixels scaled to [-1, 1].
MINUS_ONE_TO_ONE = ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))
# Pixels scaled to [0, 1].
ZERO_TO_ONE = ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
# CIFAR-10 per-channel statistics (RGB, pixel units), computed on its 50,000 training images.
CIFAR10_MEAN_STD = ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw pixels become a model's input tensor.

    input_size: (height, width) of the model's input.
    color_order: channel order the model was trained on.
    mean, std: per-channel, in the model's colour order, in pixel units (0..255).
    resize: "stretch" resizes the whole frame to input_size; "center_crop" first cuts the largest
        centred region with the input's aspect ratio, so objects keep their shape.
    """

    input_size: Tuple[int, int]
    color_order: str = "RGB"
    mean: Tuple[float, float, float] = ZERO_TO_ONE[0]
    std: Tuple[float, float, float] = ZERO_TO_ONE[1]
    resize: str = "stretch"
    version: int = field(default=1, compare=False)

    def __post_init__(self):
        h, w = (int(v) for v in self.input_size)
        if h < 1 or w < 1:
            raise UsageError(f"input_size must be two positive integers (height, width), got {self.input_size!r}")
        object.__setattr__(self, "input_size", (h, w))
        if self.color_order not in COLOR_ORDERS:
            raise UsageError(f"color_order must be one of {COLOR_ORDERS}, got {self.color_order!r}")
        if self.resize not in RESIZE_MODES:
            raise UsageError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        mean = _three_floats("mean", self.mean)
        std = _three_floats("std", self.std)
        if any(s <= 0 for s in std):
            raise UsageError(f"std must be positive, got {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        try:
            return cls(
                input_size=tuple(d["input_size"]),
                color_order=d.get("color_order", "RGB"),
                mean=tuple(d.get("mean", ZERO_TO_ONE[0])),
                std=tuple(d.get("std", ZERO_TO_ONE[1])),
                resize=d.get("resize", "stretch"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"invalid preprocessing settings {d!r}: {e}") from e

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def load(cls, path) -> "PreprocessConfig":
        from edgevision.edge_runtime.files import read_regular_file

        path = Path(path)
        data = read_regular_file(path, MAX_SETTINGS_BYTES, "preprocessing settings", UsageError)
        try:
            doc = json.loads(data.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{path} is not valid JSON: {e}") from e
        if not isinstance(doc, dict):
            raise UsageError(f"{path} holds a JSON {type(doc).__name__}; expected an object with input_size, "
                             "color_order, mean and std")
        return cls.from_dict(doc)

    def save(self, path) -> Path:
        from edgevision.atomic import write_text

        return write_text(path, self.to_json() + "\n")


def _three_floats(name: str, values: Sequence[float]) -> Tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{name} must be three numbers, got {values!r}") from e
    if len(out) == 1:
        out = out * 3
    if len(out) != 3:
        raise UsageError(f"{name} must be three numbers (one per channel), got {values!r}")
    return out  # type: ignore[return-value]


# --- pixel operations (OpenCV, no Python loops over pixels) --------------------------------------
def center_crop_box(height: int, width: int, target_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the largest centred box of `height` x `width` with the target's aspect ratio."""
    th, tw = target_hw
    if height * tw > width * th:  # frame is taller than the target: cut rows
        ch, cw = max(1, round(width * th / tw)), width
    else:
        ch, cw = height, max(1, round(height * tw / th))
    y0, x0 = (height - ch) // 2, (width - cw) // 2
    return y0, y0 + ch, x0, x0 + cw


def resize_to_input(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Crop (if configured) and resize an HxWxC image to the model's input size.

    INTER_AREA when shrinking (it averages, so a 720p frame does not alias), bilinear when enlarging.
    INTER_AREA's general (non-integer ratio) path is slow, so a large shrink is done in steps that each
    stay within 2x, which is all a 2x2 average or a bilinear sample needs to keep every pixel: exact 2x2
    averages (INTER_AREA's fast integer path) while the image is 4x the target, then bilinear to twice the
    target, then one more 2x2 average (timings and error: benchmarks/results/findings.md).
    """
    import cv2

    th, tw = config.input_size
    if config.resize == "center_crop":
        y0, y1, x0, x1 = center_crop_box(image.shape[0], image.shape[1], config.input_size)
        image = image[y0:y1, x0:x1]
    h, w = image.shape[:2]
    if (h, w) == (th, tw):
        return image
    if h * w <= th * tw:
        return cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
    while h >= 4 * th and w >= 4 * tw:
        h, w = h // 2, w // 2  # an odd last row/column is dropped: the 2x2 fast path needs even sizes
        image = cv2.resize(image[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)
    if h * w > 4 * th * tw:
        image = cv2.resize(image, (2 * tw, 2 * th), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)


def to_model_colors(image: np.ndarray, config: PreprocessConfig, source_order: str = "BGR") -> np.ndarray:
    """Reorder channels from `source_order` to the model's colour order (a view when no change is needed)."""
    if source_order not in COLOR_ORDERS:
        raise UsageError(f"color order must be one of {COLOR_ORDERS}, got {source_order!r}")
    if source_order == config.color_order:
        return image
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # the same swap works both ways


def prepare_pixels(image: np.ndarray, config: PreprocessConfig, source_order: str = "BGR") -> np.ndarray:
    """Any-size uint8 image -> uint8 image at the model's input size, in the model's colour order."""
    return to_model_colors(resize_to_input(image, config), config, source_order)


def normalize(pixels: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """uint8 pixels (..., H, W, 3) in the model's colour order -> float32 model input."""
    scale = np.float32(1.0) / np.asarray(config.std, dtype=np.float32)
    offset = -np.asarray(config.mean, dtype=np.float32) * scale
    return pixels.astype(np.float32) * scale + offset
