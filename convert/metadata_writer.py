"""Writing edgevision's metadata into a `.tflite` file (the reader is edge_runtime/metadata.py).

Two places, as TFLite's own metadata tools use them:
- the flatbuffer's `metadata` list gets one entry named METADATA_NAME whose buffer holds a JSON document
  (labels, preprocessing, quantization, provenance, metrics): the interpreter ignores it, every reader finds it;
- `labels.txt` is packed as an associated file: a zip appended after the flatbuffer, which the interpreter
  also ignores and which any zip tool (and TFLite's metadata extractor) can open.

The flatbuffer is rebuilt with its generated object API. Buffer contents are re-packed 16-byte aligned
(the schema's `force_align: 16`), which the generated Python `Pack` does not do by itself, so that weights
stay aligned for memory-mapped loading on devices.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Dict, Optional

import numpy as np

from edgevision.edge_runtime.metadata import METADATA_FORMAT, METADATA_NAME
from edgevision.errors import ModelError

LABELS_ASSOCIATED_FILE = "labels.txt"


def set_metadata(model: bytes, entries: Dict[str, bytes]) -> bytes:
    """A copy of `model` whose metadata list has `entries` (name -> bytes), replacing same-named ones.

    The copy is rebuilt from the parsed flatbuffer, so anything appended after it (an earlier
    associated-files zip) is dropped rather than duplicated.
    """
    from edgevision.convert.flatbuffer import pack_model, unpack_model

    obj = unpack_model(model)
    schema = _schema()
    obj.buffers = list(obj.buffers or [])
    metadata = [m for m in (obj.metadata or []) if _name(m.name) not in entries]
    for name, payload in entries.items():
        buf = schema.BufferT()
        buf.data = np.frombuffer(payload, dtype=np.uint8)
        obj.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(obj.buffers) - 1
        metadata.append(entry)
    obj.metadata = metadata
    return pack_model(obj)


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _name(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def pack_associated_files(model: bytes, files: Dict[str, bytes]) -> bytes:
    """Append `files` as a zip after the flatbuffer (stored, not compressed, so they can be memory-mapped)."""
    out = io.BytesIO()
    out.write(model)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for name, content in files.items():
            z.writestr(name, content)
    return out.getvalue()


def metadata_document(labels, preprocess, quantization: str, optimizations=(), io_types=None,
                      source: Optional[dict] = None, metrics: Optional[dict] = None, extra: Optional[dict] = None) -> dict:
    """The JSON document edge_runtime.metadata.read_metadata returns."""
    from edgevision import __version__

    producer = {"edgevision": __version__}
    try:
        import tensorflow as tf

        producer["tensorflow"] = tf.__version__
    except ImportError:
        pass
    doc = {
        "format": METADATA_FORMAT,
        "task": "image_classification",
        "labels": list(labels),
        "preprocess": preprocess.to_dict(),
        "quantization": quantization,
        "optimizations": list(optimizations),
    }
    if io_types is not None:
        doc["io"] = {"input": io_types[0], "output": io_types[1]}
    doc["source"] = source or {}
    doc["metrics"] = metrics or {}
    doc["producer"] = producer
    doc.update(extra or {})
    return doc


def embed(model: bytes, document: dict, labels) -> bytes:
    """The final file: metadata entry + labels.txt as an associated file."""
    payload = json.dumps(document, sort_keys=False).encode("utf-8")
    with_meta = set_metadata(model, {METADATA_NAME: payload})
    labels_txt = ("\n".join(labels) + "\n").encode("utf-8")
    return pack_associated_files(with_meta, {LABELS_ASSOCIATED_FILE: labels_txt})
