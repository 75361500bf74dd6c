"""Quantization arithmetic of model inputs and outputs: the one place it is written down.

TensorFlow Lite stores an integer tensor `q` for a real value `r` as  r = (q - zero_point) * scale  (one
scale and zero point per tensor for a model's input and output). So a normalised float input becomes
q = round(r / scale) + zero_point, clipped to the integer type, and an integer output is read back as
(q - zero_point) * scale.

On the device the input is never built that way, for speed: pixels are uint8, so "normalise, then
quantize" is a function of one byte per channel, and the whole chain collapses into a 256-entry table per
channel (`cv2.LUT`, one pass, exactly the same numbers as the slow route). Two common cases are cheaper
still: Google's uint8 models take the pixels themselves (mean = std = 127.5 with scale 1/128 and zero point
128 is within one quantization step of the identity), and int8 models that take "pixel - 128" get it from
one XOR of the sign bit. Float models get the normalisation as one multiply-add, computed exactly as
`preprocess.normalize` computes it for training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgevision.edge_runtime.preprocess import PreprocessConfig, normalize
from edgevision.errors import ModelError

#: Input/output element types the runtime understands (int16 inputs come from 16x8 quantized models).
INTEGER_TYPES = (np.int8, np.uint8, np.int16)
SUPPORTED_TYPES = (np.float32,) + INTEGER_TYPES

#: A pixel -> input mapping within this many quantization steps of a plain copy (or of "pixel - 128" for
#: int8) is treated as that copy. One step is what Google's uint8 MobileNets accept by design.
NEAR_IDENTITY_STEPS = 1.0

PIXEL_LEVELS = 256  # uint8 pixels
INT8_SHIFT = 128  # uint8 pixel p as int8 is p - 128: flipping the top bit does it


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor affine quantization: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int
    dtype: type

    @property
    def qmin(self) -> int:
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        return int(np.iinfo(self.dtype).max)


def dtype_name(dtype) -> str:
    return np.dtype(dtype).name


def check_dtype(dtype, what: str, name: str = "model") -> type:
    """The tensor type as a numpy scalar type, or ModelError if the runtime cannot feed/read it."""
    dtype = np.dtype(dtype).type
    if dtype not in SUPPORTED_TYPES:
        supported = ", ".join(dtype_name(t) for t in SUPPORTED_TYPES)
        raise ModelError(f"{name}: the {what} tensor is {dtype_name(dtype)}; this runtime handles {supported}")
    return dtype


def tensor_quantization(detail: dict, what: str = "input", name: str = "model") -> Optional[QuantParams]:
    """QuantParams of an interpreter tensor detail, or None for a float (unquantized) tensor."""
    dtype = check_dtype(detail["dtype"], what, name)
    if dtype is np.float32:
        return None
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64).ravel()
    zero_points = np.asarray(params.get("zero_points", []), dtype=np.int64).ravel()
    if scales.size == 0:  # older interpreters only fill the legacy (scale, zero_point) pair
        scale, zero_point = detail.get("quantization", (0.0, 0))
        scales, zero_points = np.array([scale], dtype=np.float64), np.array([zero_point], dtype=np.int64)
    if scales.size != 1:
        raise ModelError(
            f"{name}: the {what} tensor is quantized per channel ({scales.size} scales); "
            "an image classifier's input and output need one scale per tensor"
        )
    if not scales[0] > 0:
        raise ModelError(f"{name}: the {what} tensor is {dtype_name(dtype)} without a quantization scale")
    zero_point = int(zero_points[0]) if zero_points.size else 0
    return QuantParams(scale=float(scales[0]), zero_point=zero_point, dtype=dtype)


def quantize(real: np.ndarray, params: QuantParams) -> np.ndarray:
    """Normalised float values -> the integer tensor type (round to nearest, saturate)."""
    q = np.rint(np.asarray(real, dtype=np.float64) / params.scale) + params.zero_point
    return np.clip(q, params.qmin, params.qmax).astype(params.dtype)


def dequantize(raw: np.ndarray, params: Optional[QuantParams]) -> np.ndarray:
    """An output tensor -> float32 real values (a float tensor is returned as float32 unchanged)."""
    if params is None:
        return np.asarray(raw, dtype=np.float32)
    return (raw.astype(np.float32) - np.float32(params.zero_point)) * np.float32(params.scale)


@dataclass(frozen=True)
class OutputDecoder:
    """Raw output tensor -> float32 real values; 8-bit outputs through a 256-entry table (one pass).

    The table holds exactly what `dequantize` computes (same float32 arithmetic); it exists because after
    a large model has run, every extra numpy call costs cache misses: one lookup beats three operations.
    """

    params: Optional[QuantParams]
    table: Optional[np.ndarray] = None  # float32 (256,), indexed by the raw byte

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.table is not None:
            return self.table[raw.view(np.uint8)]
        return dequantize(raw, self.params)


def output_decoder(params: Optional[QuantParams]) -> OutputDecoder:
    if params is None or params.dtype not in (np.int8, np.uint8):
        return OutputDecoder(params)
    codes = np.arange(PIXEL_LEVELS, dtype=np.uint8).view(params.dtype)  # byte b -> the value it encodes
    return OutputDecoder(params, table=dequantize(codes, params))


def pixel_table(config: PreprocessConfig, params: QuantParams, channels: int = 3) -> np.ndarray:
    """(256, channels) table: input value for each uint8 pixel value, per channel.

    Built with `preprocess.normalize` (the training code) and `quantize`, so it holds exactly the values
    the slow route would compute.
    """
    levels = np.repeat(np.arange(PIXEL_LEVELS, dtype=np.uint8)[:, None], 3, axis=1)
    table = quantize(normalize(levels, config), params)
    return np.ascontiguousarray(table[:, :channels])


@dataclass(frozen=True)
class InputEncoder:
    """uint8 pixels (1, H, W, C) in the model's colour order -> the model's input tensor, fast.

    kind: "copy" (uint8 input within NEAR_IDENTITY_STEPS of the pixels), "xor" (int8 input within it of
    pixel - 128), "table" (any other integer input: cv2.LUT) or "affine" (float input: multiply-add).
    """

    kind: str
    dtype: type
    table: Optional[np.ndarray] = None  # (256,) or (256, 1, C) for cv2.LUT
    scale: Optional[np.ndarray] = None  # float32 (C,)
    offset: Optional[np.ndarray] = None  # float32 (C,)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self.kind == "copy":
            return pixels
        if self.kind == "xor":
            return np.bitwise_xor(pixels, np.uint8(INT8_SHIFT)).view(np.int8)
        if self.kind == "table":
            import cv2

            # cv2.LUT works on 2-D/3-D images: drop the batch axis for the call, a view both ways.
            return cv2.LUT(pixels[0], self.table).reshape(pixels.shape)
        out = np.multiply(pixels, self.scale, dtype=np.float32)  # the arithmetic of preprocess.normalize
        out += self.offset
        return out


def input_encoder(config: PreprocessConfig, params: Optional[QuantParams], channels: int = 3) -> InputEncoder:
    """The fastest exact-enough way from pixels to this input tensor (see the module docstring)."""
    if params is None:
        scale = np.float32(1.0) / np.asarray(config.std, dtype=np.float32)
        offset = -np.asarray(config.mean, dtype=np.float32) * scale
        return InputEncoder("affine", np.float32, scale=scale[:channels].copy(), offset=offset[:channels].copy())
    table = pixel_table(config, params, channels).astype(np.int64)
    pixels = np.arange(PIXEL_LEVELS, dtype=np.int64)[:, None]
    if params.dtype is np.uint8 and np.abs(table - pixels).max() <= NEAR_IDENTITY_STEPS:
        return InputEncoder("copy", np.uint8)
    if params.dtype is np.int8 and np.abs(table - (pixels - INT8_SHIFT)).max() <= NEAR_IDENTITY_STEPS:
        return InputEncoder("xor", np.int8)
    table = table.astype(params.dtype)
    if np.all(table == table[:, :1]):  # same mapping for every channel: the single-channel LUT is 2x faster
        return InputEncoder("table", params.dtype, table=np.ascontiguousarray(table[:, 0]))
    return InputEncoder("table", params.dtype, table=np.ascontiguousarray(table.reshape(PIXEL_LEVELS, 1, channels)))


def pixel_normalization_from_quantization(params: QuantParams) -> tuple:
    """(mean, std) in pixel units that map pixels 0..255 onto the full integer range of an 8-bit input.

    For a quantized third-party model without metadata this is the best guess there is: the converter set
    the input's scale and zero point from the range of the calibration data, i.e. the range the model was
    trained on, and an 8-bit input range holds exactly 256 levels. Google's uint8 MobileNets (scale 1/128,
    zero point 128) come out as mean = std = 128, i.e. [-1, 1); a [0, 1] model (scale 1/255) as mean 0,
    std 255.
    """
    pixel_zero = params.zero_point - params.qmin  # the pixel value that should land on real 0
    mean = float(pixel_zero)
    std = 1.0 / params.scale
    return (mean,) * 3, (std,) * 3
