"""Decoding untrusted images safely.

`cv2.imdecode` returns None on garbage rather than raising, and it trusts the header: an 875 KB PNG that
claims 30000x30000 pixels made it allocate 5.2 GB here. So every decode goes through `decode_image`, which
reads the dimensions from the header first (PNG, JPEG, BMP, GIF, WebP), refuses more than `max_pixels`,
and also caps OpenCV itself (OPENCV_IO_MAX_IMAGE_PIXELS, which must be set before cv2 is imported).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from edgevision.errors import ImageError

#: Largest image decoded by default: 50 Mpx covers 8K frames and phone photos; ~150 MB as BGR.
DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS = int(os.environ.get("EDGEVISION_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS))
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Only effective if cv2 has not been imported yet; the header check below covers the other case.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))


def image_size_from_header(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) read from the first bytes of a PNG/JPEG/BMP/GIF/WebP file, or None if unknown."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"BM":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _webp_size(data: bytes) -> Optional[Tuple[int, int]]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def decode_image(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded bytes -> uint8 HxWx3 BGR image. Grayscale and alpha become 3-channel BGR.

    Raises ImageError (one clear line) for empty, undecodable or oversized input.
    """
    if not data:
        raise ImageError(f"{name}: the file is empty")
    size = image_size_from_header(data)
    if size is not None and size[0] * size[1] > max_pixels:
        w, h = size
        raise ImageError(
            f"{name}: image is {w}x{h} ({w * h / 1e6:.0f} Mpx), more than the {max_pixels / 1e6:.0f} Mpx limit "
            "(a decompression bomb, or set EDGEVISION_MAX_IMAGE_PIXELS to allow it)"
        )
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # OpenCV raises (rather than returning None) when its own pixel cap trips
        raise ImageError(f"{name}: cannot decode image ({str(e).strip().splitlines()[-1]})") from e
    if image is None:
        raise ImageError(f"{name}: not a decodable image (expected JPEG, PNG, BMP or WebP)")
    return to_bgr(image)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Normalise decoder output to uint8 HxWx3 BGR (gray, BGRA and 16-bit images happen in the wild)."""
    import cv2

    if image.dtype != np.uint8:
        # 16-bit PNGs: keep the top byte; float images are assumed to be in [0, 1].
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        else:
            image = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if channels == 3:
        return image
    raise ImageError(f"unsupported image with {channels} channels")


def read_image(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as uint8 BGR; ImageError if missing, unreadable or unsafe."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ImageError(f"{path}: no such file") from e
    except IsADirectoryError as e:
        raise ImageError(f"{path}: is a directory, expected an image file") from e
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from e
    return decode_image(data, name=str(path), max_pixels=max_pixels)


def is_image_file(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
