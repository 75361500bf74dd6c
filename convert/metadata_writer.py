"""Writing a model's description into a `.tflite` file (the reader is edge_runtime/model_metadata.py).

Three parts, as TFLite's metadata tools lay them out:
- a `TFLITE_METADATA` entry in the flatbuffer's metadata list: a ModelMetadata flatbuffer (metadata_schema.fbs)
  with the name, licence, colour space, normalisation and the labels file, which MediaPipe, the Task Library
  and Android Studio read;
- an `edgevision` entry: a JSON document with what the schema cannot say (edge_runtime/model_metadata.py);
- `labels.txt` packed as an associated file (a zip appended after the flatbuffer, which the interpreter
  ignores), named by the output tensor's metadata as its TENSOR_AXIS_LABELS file.
"""

from __future__ import annotations

import json
import sys
from typing import Dict, Optional

import numpy as np

from edgevision.edge_runtime.metadata import METADATA_FORMAT, METADATA_NAME
from edgevision.edge_runtime.model_metadata import AUTHORITY, LABELS_FILE, ModelMetadata
from edgevision.edge_runtime.tflite_metadata import (
    METADATA_ENTRY_NAME,
    StandardMetadata,
    encode_model_metadata,
    pack_associated_files,
)



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


def model_metadata(name: str, labels, preprocess, quantization: str, *, optimizations=(), io_types=None,
                   source: Optional[dict] = None, metrics: Optional[dict] = None, extra: Optional[dict] = None,
                   author: str = "", license: str = "", description: str = "",
                   normalization_in_graph: Optional[dict] = None) -> ModelMetadata:
    """The description `embed` writes: `preprocess` is what the file's input takes (mean 0 and std 1 for a
    portable file, whose graph normalises; `normalization_in_graph` then records what it applies)."""
    from edgevision import __version__

    producer = {"edgevision": __version__}
    tf = sys.modules.get("tensorflow")  # the converter that made the model, if one ran in this process
    if tf is not None:
        producer["tensorflow"] = tf.__version__
    doc = {
        "format": METADATA_FORMAT,
        "metadata": AUTHORITY,
        "task": "image_classification",
        "preprocess": {"input_size": list(preprocess.input_size), "resize": preprocess.resize},
        "quantization": quantization,
        "optimizations": list(optimizations),
    }
    if io_types is not None:
        doc["io"] = {"input": io_types[0], "output": io_types[1]}
    if normalization_in_graph:
        doc["normalization_in_graph"] = normalization_in_graph
    doc.update(source=source or {}, metrics=metrics or {}, producer=producer, **(extra or {}))
    return ModelMetadata(
        name=name, description=description or _description(labels, preprocess, quantization, io_types),
        version=(source or {}).get("sha256", "")[:12], author=author, license=license,
        labels=tuple(labels), color_order=preprocess.color_order, mean=preprocess.mean, std=preprocess.std,
        input_size=preprocess.input_size, resize=preprocess.resize, document=doc,
    )


def _description(labels, preprocess, quantization: str, io_types) -> str:
    h, w = preprocess.input_size
    takes = "uint8 RGB pixels (0-255)" if io_types and io_types[0] == "uint8" else f"{preprocess.color_order} input"
    return (f"Image classifier, {len(labels)} classes, {quantization}; takes {h}x{w} {takes}. "
            "Made by edgevision convert.")


def standard_metadata(meta: ModelMetadata) -> StandardMetadata:
    """The TFLite-schema part of `meta`: what MediaPipe, the Task Library and Android Studio read."""
    mean, std = np.asarray(meta.mean, np.float64), np.asarray(meta.std, np.float64)
    h, w = meta.input_size
    return StandardMetadata(
        name=meta.name, description=meta.description, version=meta.version, author=meta.author,
        license=meta.license, input_name="image",
        input_description=f"{meta.color_order} image, {h}x{w}, normalised as (pixel - mean) / std",
        color_space=meta.color_order, mean=tuple(mean), std=tuple(std),
        # Stats are the range of the real input values: the pixel range 0-255 after normalisation.
        input_min=tuple((0.0 - mean) / std), input_max=tuple((255.0 - mean) / std),
        output_name="probability", output_description=f"Probabilities of the {len(meta.labels)} classes",
        labels_file=LABELS_FILE, output_min=(0.0,), output_max=(1.0,),
    )


def embed(model: bytes, meta: ModelMetadata) -> bytes:
    """The final file: standard metadata, edgevision's document, and the labels packed as an associated file."""
    payload = json.dumps(dict(meta.document), sort_keys=False).encode("utf-8")
    entries = {METADATA_ENTRY_NAME: encode_model_metadata(standard_metadata(meta)), METADATA_NAME: payload}
    labels_txt = ("\n".join(meta.labels) + "\n").encode("utf-8")
    return pack_associated_files(set_metadata(model, entries), {LABELS_FILE: labels_txt})
