"""Decoding untrusted images safely.

`cv2.imdecode` returns None on garbage rather than raising, and it trusts the header: an 875 KB PNG that
claims 30000x30000 pixels made it allocate 5.2 GB here. So every decode goes through `decode_image`, which
reads the dimensions from the header first (PNG, JPEG, BMP, GIF, WebP), refuses more than `max_pixels`,
and also caps OpenCV itself (OPENCV_IO_MAX_IMAGE_PIXELS, which must be set before cv2 is imported).

Phones store photos with the sensor's pixels and an EXIF Orientation tag saying how to turn them; a
classifier fed the stored pixels sees the scene sideways. `decode_image` turns the pixels as the tag says,
reading the tag itself (JPEG, PNG, WebP) rather than leaving it to OpenCV, whose handling differs by version
and format, so every runtime and every file type gives the same upright image.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from edgevision.edge_runtime.files import read_regular_file
from edgevision.errors import ImageError

#: Largest image decoded by default: 50 Mpx covers 8K frames and phone photos; ~150 MB as BGR.
DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS = int(os.environ.get("EDGEVISION_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS))
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Largest image file read: an uncompressed 32-bit BMP of MAX_PIXELS, plus room for its headers.
MAX_IMAGE_BYTES = int(os.environ.get("EDGEVISION_MAX_IMAGE_BYTES", 4 * MAX_PIXELS + (1 << 20)))

# Only effective if cv2 has not been imported yet; the header check below covers the other case.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))


def image_size_from_header(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) read from the first bytes of a PNG/JPEG/BMP/GIF/WebP file, or None if unknown."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"BM":
            return _bmp_size(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _bmp_size(data: bytes) -> Tuple[int, int]:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 1.x BITMAPCOREHEADER: 16-bit width and height
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])  # BITMAPINFOHEADER and later (negative height: top-down rows)
    return abs(w), abs(h)


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
    """Encoded bytes -> uint8 HxWx3 BGR image, upright as its EXIF Orientation says. Grayscale and alpha become
    3-channel BGR.

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
    # Colour (gray and alpha become BGR), 16-bit kept for to_bgr; the orientation is applied below, the same way
    # on every OpenCV version. (IMREAD_UNCHANGED also decoded OS/2 BMPs as gray.)
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(buf, flags)
    except cv2.error as e:  # OpenCV raises (rather than returning None) when its own pixel cap trips
        raise ImageError(f"{name}: cannot decode image ({str(e).strip().splitlines()[-1]})") from e
    if image is None:
        raise ImageError(f"{name}: not a decodable image (expected JPEG, PNG, BMP or WebP)")
    return apply_orientation(to_bgr(image), exif_orientation(data))


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
    """Read an image file as uint8 BGR, upright; ImageError if missing, not a regular file, too large or unsafe."""
    path = Path(path)
    data = read_regular_file(path, MAX_IMAGE_BYTES, "image", ImageError)
    return decode_image(data, name=str(path), max_pixels=max_pixels)


def is_image_file(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# --- EXIF orientation ------------------------------------------------------------------------------
_ORIENTATION_TAG = 0x0112
_EXIF_HEADER = b"Exif\x00\x00"


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation (1-8) of an encoded JPEG, PNG or WebP; 1 (as stored) when absent or unreadable."""
    try:
        tiff = _exif_block(data)
        value = _tiff_orientation(tiff) if tiff else 1
    except (struct.error, IndexError):
        return 1
    return value if 1 <= value <= 8 else 1


def _exif_block(data: bytes) -> Optional[bytes]:
    """The TIFF structure holding the EXIF tags: walks segment and chunk headers only, never pixel data."""
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            if marker in (0xDA, 0xD9):  # start of scan / end of image: EXIF comes before the pixels
                return None
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            if marker == 0xE1 and data[i + 4 : i + 10] == _EXIF_HEADER:
                return data[i + 10 : i + 2 + length]
            i += 2 + max(length, 2)
        return None
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _chunk(data, 8, b"eXIf", png=True)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        block = _chunk(data, 12, b"EXIF", png=False)
        return block[6:] if block is not None and block.startswith(_EXIF_HEADER) else block
    return None


def _chunk(data: bytes, i: int, wanted: bytes, png: bool) -> Optional[bytes]:
    """A chunk's payload: PNG chunks are size (big-endian), type, payload, CRC; RIFF chunks type, size
    (little-endian), payload padded to an even length."""
    while i + 8 <= len(data):
        if png:
            (size,), kind, step = struct.unpack(">I", data[i : i + 4]), data[i + 4 : i + 8], 12
        else:
            kind, (size,) = data[i : i + 4], struct.unpack("<I", data[i + 4 : i + 8])
            step = 8 + (size & 1)
        if kind == wanted:
            return data[i + 8 : i + 8 + size]
        i += step + size
    return None


def _tiff_orientation(tiff: bytes) -> int:
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for k in range(count):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack(order + "HH", tiff[entry : entry + 4])
        if tag == _ORIENTATION_TAG:
            return struct.unpack(order + "H", tiff[entry + 8 : entry + 10])[0] if kind == 3 else 1
    return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright as EXIF orientation `orientation` says (1: unchanged)."""
    if orientation <= 1 or orientation > 8:
        return image
    import cv2

    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(image), -1)
    return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
