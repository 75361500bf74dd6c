"""`ModelMetadata`: the one description of a model that edgevision reads and writes.

A `.tflite` file describes itself in two places, and this module is where they are joined:
- the standard TFLite metadata (`TFLITE_METADATA`, what MediaPipe, the Task Library and Android Studio read):
  name, description, version, author, licence, the labels file, colour space and normalisation. It is
  authoritative for everything it can say;
- edgevision's JSON document (entry `edgevision`): what the schema cannot say (input size and resize mode for
  the runtime, quantization, test-time augmentation, bias correction, provenance, measured accuracy). Files
  written before the standard metadata carried labels and normalisation there too, and are still read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Tuple

from edgevision.edge_runtime.preprocess import PreprocessConfig
from edgevision.errors import ModelError, UsageError

LABELS_FILE = "labels.txt"
#: What the JSON document says about who holds what (written into every file).
AUTHORITY = ("TFLITE_METADATA holds the name, description, version, author, licence, labels, colour space and "
             "normalisation; this document holds everything else")
OUTPUT_KINDS = ("probabilities", "logits")


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file says about itself; None (or "") where it says nothing.

    mean, std: per channel, pixel units, of the real values the input tensor takes (a portable file, which
        normalises inside its graph, says mean 0 and std 1: it takes the pixels themselves).
    document: edgevision's JSON document as read ({} for models made elsewhere).
    origin: where the description came from: "standard+edgevision", "standard", "edgevision" or "none".
    """

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    labels: Optional[Tuple[str, ...]] = None
    color_order: Optional[str] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    input_size: Optional[Tuple[int, int]] = None
    resize: Optional[str] = None
    output: Optional[str] = None
    document: Mapping = field(default_factory=dict, compare=False)
    origin: str = "none"

    # --- what the runtime asks -------------------------------------------------------------------
    @property
    def has_normalization(self) -> bool:
        return self.mean is not None and self.std is not None

    def preprocess(self, input_size: Tuple[int, int]) -> Optional[PreprocessConfig]:
        """The PreprocessConfig for a model whose input tensor is `input_size`, or None if the file says no
        normalisation. ModelError when the file contradicts its own tensor."""
        if not self.has_normalization:
            return None
        if self.input_size is not None and tuple(self.input_size) != tuple(input_size):
            raise ModelError(
                f"its metadata says input size {list(self.input_size)} but its input tensor is "
                f"{list(input_size)}; the model file was modified after conversion, convert it again"
            )
        try:
            return PreprocessConfig(input_size=tuple(input_size), color_order=self.color_order or "RGB",
                                    mean=self.mean, std=self.std, resize=self.resize or "stretch")
        except UsageError as e:
            raise ModelError(f"the preprocessing in its metadata is invalid ({e})") from e

    @property
    def quantization(self) -> Optional[str]:
        return self.document.get("quantization")

    @property
    def optimizations(self) -> tuple:
        return tuple(self.document.get("optimizations") or ())

    @property
    def tta(self) -> Optional[str]:
        return (self.document.get("test_time_augmentation") or {}).get("mode")

    @property
    def metrics(self) -> dict:
        return dict(self.document.get("metrics") or {})

    def with_document(self, **fields) -> "ModelMetadata":
        return replace(self, document={**self.document, **fields})


def read_model_metadata(data: bytes) -> ModelMetadata:
    """Everything `data` (a .tflite file's bytes) says about itself, standard metadata first."""
    from edgevision.edge_runtime.metadata import METADATA_NAME, metadata_entries, parse_document
    from edgevision.edge_runtime.tflite_metadata import METADATA_ENTRY_NAME, decode_model_metadata

    entries = metadata_entries(data)  # the flatbuffer is walked once for both parts
    doc = parse_document(entries.get(METADATA_NAME)) or {}
    raw_standard = entries.get(METADATA_ENTRY_NAME)
    standard = None if raw_standard is None else decode_model_metadata(raw_standard)
    meta = _from_document(doc)
    if standard is not None:
        meta = _merge_standard(meta, standard, data)
    if meta.labels is None:
        meta = replace(meta, labels=_legacy_packed_labels(data))
    origin = "+".join(part for part, present in (("standard", standard is not None), ("edgevision", bool(doc)))
                      if present) or "none"
    return replace(meta, origin=origin)


def _from_document(doc: Mapping) -> ModelMetadata:
    """edgevision's JSON document (any version) as ModelMetadata."""
    pre = doc.get("preprocess") if isinstance(doc.get("preprocess"), dict) else {}
    labels = doc.get("labels")
    size = pre.get("input_size")
    return ModelMetadata(
        labels=tuple(str(x) for x in labels) if isinstance(labels, list) else None,
        color_order=pre.get("color_order"),
        mean=_floats(pre.get("mean")), std=_floats(pre.get("std")),
        input_size=(int(size[0]), int(size[1])) if isinstance(size, list) and len(size) == 2 else None,
        resize=pre.get("resize"),
        output=doc.get("output") if doc.get("output") in OUTPUT_KINDS else None,
        document=dict(doc),
    )


def _merge_standard(meta: ModelMetadata, standard, data: bytes) -> ModelMetadata:
    """The standard metadata wins for everything it says."""
    from edgevision.edge_runtime.labels import parse_labels
    from edgevision.edge_runtime.tflite_metadata import read_associated_file

    labels = meta.labels
    if standard.labels_file:
        content = read_associated_file(data, standard.labels_file)
        if content is None:
            raise ModelError(f"its metadata names the labels file {standard.labels_file!r}, which is not packed "
                             "in the file")
        labels = tuple(parse_labels(content.decode("utf-8", errors="replace")))
    color = standard.color_space if standard.color_space in ("RGB", "BGR") else meta.color_order
    has_norm = bool(standard.mean) and bool(standard.std)
    return replace(
        meta, name=standard.name, description=standard.description, version=standard.version,
        author=standard.author, license=standard.license, labels=labels, color_order=color,
        mean=tuple(standard.mean) if has_norm else meta.mean, std=tuple(standard.std) if has_norm else meta.std,
    )


def _legacy_packed_labels(data: bytes) -> Optional[Tuple[str, ...]]:
    """A labels file packed without standard metadata pointing at it (how some tools and older files do)."""
    from edgevision.edge_runtime.labels import parse_labels
    from edgevision.edge_runtime.tflite_metadata import associated_file_names, read_associated_file

    for name in associated_file_names(data):
        if name.lower().endswith(".txt") and "label" in name.lower():
            content = read_associated_file(data, name)
            if content is not None:
                return tuple(parse_labels(content.decode("utf-8", errors="replace")))
    return None


def _floats(values) -> Optional[Tuple[float, ...]]:
    if not isinstance(values, (list, tuple)) or not values:
        return None
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
