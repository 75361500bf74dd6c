"""Model metadata carried inside a `.tflite` file, read without TensorFlow.

The flatbuffer's `metadata` list holds named entries: the standard `TFLITE_METADATA` (read in
tflite_metadata.py) and edgevision's JSON document under ``METADATA_NAME``. What they say together is
`model_metadata.ModelMetadata`; this module only finds the entries and parses the JSON.

The reader below walks the flatbuffer by hand (a few dozen lines of `struct`) so that it works with any
interpreter backend and never hands untrusted bytes to C++ code. Every offset is bounds-checked.
"""

from __future__ import annotations

import json
import struct
from typing import Dict, Optional

from edgevision.errors import ModelError

METADATA_NAME = "edgevision"
METADATA_FORMAT = "edgevision.model/2"  # 2: labels and normalisation moved to TFLITE_METADATA
TFLITE_IDENTIFIER = b"TFL3"

# Field indices in tensorflow/lite/schema/schema.fbs.
_MODEL_BUFFERS = 4
_MODEL_METADATA = 6
_METADATA_NAME = 0
_METADATA_BUFFER = 1
_BUFFER_DATA = 0
_BUFFER_OFFSET = 1
_BUFFER_SIZE = 2


class _FlatBuffer:
    """Minimal bounds-checked reader for the parts of the TFLite schema we need."""

    def __init__(self, data: bytes):
        self.data = data

    def _unpack(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise ModelError("corrupt TFLite file: an offset points outside the file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self) -> int:
        return self._unpack("<I", 0)

    def field_pos(self, table: int, index: int) -> Optional[int]:
        vtable = table - self._unpack("<i", table)
        vtable_size = self._unpack("<H", vtable)
        entry = 4 + 2 * index
        if entry + 2 > vtable_size:
            return None
        offset = self._unpack("<H", vtable + entry)
        return table + offset if offset else None

    def indirect(self, pos: int) -> int:
        return pos + self._unpack("<I", pos)

    def vector(self, table: int, index: int):
        """(start, length) of a vector field, or None when absent."""
        pos = self.field_pos(table, index)
        if pos is None:
            return None
        vec = self.indirect(pos)
        length = self._unpack("<I", vec)
        if vec + 4 + length > len(self.data) * 8:  # cheap sanity bound before any element access
            raise ModelError("corrupt TFLite file: a vector length is impossible")
        return vec + 4, length

    def table_at(self, start: int, i: int) -> int:
        elem = start + 4 * i
        return self.indirect(elem)

    def string(self, table: int, index: int) -> Optional[str]:
        pos = self.field_pos(table, index)
        if pos is None:
            return None
        s = self.indirect(pos)
        length = self._unpack("<I", s)
        if s + 4 + length > len(self.data):
            raise ModelError("corrupt TFLite file: a string runs past the end")
        return self.data[s + 4 : s + 4 + length].decode("utf-8", errors="replace")

    def scalar(self, table: int, index: int, fmt: str, default=0):
        pos = self.field_pos(table, index)
        return default if pos is None else self._unpack(fmt, pos)


def is_tflite(data: bytes) -> bool:
    return len(data) >= 8 and data[4:8] == TFLITE_IDENTIFIER


def metadata_entries(data: bytes) -> Dict[str, bytes]:
    """All entries of the flatbuffer's metadata list: name -> raw bytes."""
    if not is_tflite(data):
        raise ModelError("not a TensorFlow Lite model (the file lacks the 'TFL3' identifier)")
    fb = _FlatBuffer(data)
    model = fb.root()
    meta = fb.vector(model, _MODEL_METADATA)
    buffers = fb.vector(model, _MODEL_BUFFERS)
    if meta is None or buffers is None:
        return {}
    out = {}
    for i in range(meta[1]):
        entry = fb.table_at(meta[0], i)
        name = fb.string(entry, _METADATA_NAME)
        index = fb.scalar(entry, _METADATA_BUFFER, "<I")
        if name is None or index >= buffers[1]:
            continue
        out[name] = _buffer_bytes(fb, fb.table_at(buffers[0], index))
    return out


def _buffer_bytes(fb: _FlatBuffer, buffer: int) -> bytes:
    offset = fb.scalar(buffer, _BUFFER_OFFSET, "<Q")
    if offset > 1:  # large models keep buffer contents after the flatbuffer, addressed by offset/size
        size = fb.scalar(buffer, _BUFFER_SIZE, "<Q")
        if offset + size > len(fb.data):
            raise ModelError("corrupt TFLite file: a buffer runs past the end")
        return fb.data[offset : offset + size]
    vec = fb.vector(buffer, _BUFFER_DATA)
    if vec is None:
        return b""
    start, length = vec
    if start + length > len(fb.data):
        raise ModelError("corrupt TFLite file: a buffer runs past the end")
    return fb.data[start : start + length]


def read_metadata(data: bytes) -> Optional[dict]:
    """The edgevision metadata document of a model, or None for models made elsewhere."""
    return parse_document(metadata_entries(data).get(METADATA_NAME))


def parse_document(raw: Optional[bytes]) -> Optional[dict]:
    """The JSON document of an `edgevision` metadata entry (None: no entry)."""
    if raw is None:
        return None
    try:
        doc = json.loads(raw.rstrip(b"\x00").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"the model's '{METADATA_NAME}' metadata is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ModelError(f"the model's '{METADATA_NAME}' metadata is not a JSON object")
    return doc
