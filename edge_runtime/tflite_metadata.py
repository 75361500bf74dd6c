"""The standard TFLite model metadata (`TFLITE_METADATA`), written and read without TensorFlow.

edgevision's own JSON entry (edge_runtime/metadata.py) is read only by edgevision. MediaPipe Tasks, the TFLite
Task Library and tflite-support's MetadataDisplayer read a different entry instead: one named ``TFLITE_METADATA``
whose buffer is a ``ModelMetadata`` flatbuffer (file identifier ``M001``, tflite-support's
``metadata_schema.fbs``), plus associated files (the labels) packed as a zip appended after the model. This module
covers the part of that schema an image classifier uses: one subgraph, one image input with its normalisation,
one score output with its labels file.

Reading needs only the standard library (the flatbuffer is walked with the bounds-checked reader of
edge_runtime/metadata.py); writing imports `flatbuffers`, which ai-edge-litert already installs.
Associated files are read one member at a time with a size cap checked before and during inflation, since a
model file may come from anywhere.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from edgevision.edge_runtime.metadata import _FlatBuffer, metadata_entries
from edgevision.errors import ModelError, UsageError

METADATA_ENTRY_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
# Every field written here exists since schema 1.0.0, and tflite-support's parser-version rule only raises the
# version for later additions (vocabulary files, tokenizers, tensor groups, subgraph process units, audio).
MIN_PARSER_VERSION = "1.0.0"
DEFAULT_MAX_ASSOCIATED_FILE_BYTES = 4 * 1024 * 1024  # labels of a few thousand classes are tens of KB
LABELS_DESCRIPTION = "Class names, one per line, in the order of the output scores."

# ColorSpaceType: the schema knows no BGR. A BGR model is written as UNKNOWN so that standard readers refuse it
# (the Task Library accepts only RGB) rather than feeding it swapped channels.
_COLOR_SPACES = {"UNKNOWN": 0, "RGB": 1, "GRAYSCALE": 2}
COLOR_SPACES = ("RGB", "BGR", "GRAYSCALE", "UNKNOWN")

# Field slots (declaration order in metadata_schema.fbs; a union takes two slots, its type byte first).
_MM_NAME, _MM_DESCRIPTION, _MM_VERSION, _MM_SUBGRAPHS, _MM_AUTHOR, _MM_LICENSE = 0, 1, 2, 3, 4, 5
_MM_MIN_PARSER_VERSION, _MM_FIELDS = 7, 8
_SG_INPUTS, _SG_OUTPUTS, _SG_FIELDS = 2, 3, 7
_TM_NAME, _TM_DESCRIPTION, _TM_CONTENT, _TM_PROCESS_UNITS, _TM_STATS, _TM_FILES, _TM_FIELDS = 0, 1, 3, 4, 5, 6, 7
_CONTENT_TYPE, _CONTENT_PROPERTIES, _CONTENT_FIELDS = 0, 1, 3
_IMAGE_COLOR_SPACE, _IMAGE_FIELDS = 0, 2
_PU_OPTIONS_TYPE, _PU_OPTIONS, _PU_FIELDS = 0, 1, 2
_NORM_MEAN, _NORM_STD = 0, 1
_STATS_MAX, _STATS_MIN = 0, 1
_AF_NAME, _AF_DESCRIPTION, _AF_TYPE, _AF_FIELDS = 0, 1, 2, 4
# Union members and enum values used here.
_CONTENT_FEATURE, _CONTENT_IMAGE = 1, 2
_OPTIONS_NORMALIZATION = 1
_FILE_TENSOR_AXIS_LABELS = 2


@dataclass(frozen=True)
class StandardMetadata:
    """What the standard metadata says about an image classifier (first input, first output).

    mean and std are in pixel units, normalised = (pixel - mean) / std, with 1 value (every channel) or 3;
    both empty means no NormalizationOptions. input_min/max and output_min/max are the Stats of the tensors
    (empty: none). labels_file names the TENSOR_AXIS_LABELS associated file of the output.
    """

    name: str
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    input_name: str = "image"
    input_description: str = ""
    color_space: str = "RGB"
    mean: Tuple[float, ...] = ()
    std: Tuple[float, ...] = ()
    input_min: Tuple[float, ...] = ()
    input_max: Tuple[float, ...] = ()
    output_name: str = "probability"
    output_description: str = ""
    labels_file: Optional[str] = None
    output_min: Tuple[float, ...] = ()
    output_max: Tuple[float, ...] = ()
    min_parser_version: str = MIN_PARSER_VERSION
    labels_description: str = LABELS_DESCRIPTION

    def __post_init__(self):
        if self.color_space not in COLOR_SPACES:
            raise UsageError(f"color_space must be one of {COLOR_SPACES}, got {self.color_space!r}")
        for field in ("mean", "std", "input_min", "input_max", "output_min", "output_max"):
            object.__setattr__(self, field, _floats(field, getattr(self, field)))
        if len(self.mean) != len(self.std) or len(self.mean) not in (0, 1, 3):
            raise UsageError(f"mean and std need 1 or 3 values each (or none), got {self.mean} and {self.std}")
        if any(not (s > 0 and math.isfinite(s)) for s in self.std):
            raise UsageError(f"std values must be positive, got {self.std}")


def _floats(field: str, values: Sequence[float]) -> Tuple[float, ...]:
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{field} must be a sequence of numbers, got {values!r}") from e


# --- writing ---------------------------------------------------------------------------------------------


def encode_model_metadata(meta: StandardMetadata) -> bytes:
    """The ModelMetadata flatbuffer (identifier M001) for `meta`: the buffer of a TFLITE_METADATA entry."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    subgraph = _subgraph(b, _input_tensor(b, meta), _output_tensor(b, meta))
    subgraphs = _offset_vector(b, [subgraph])
    strings = _strings(b, {_MM_NAME: meta.name, _MM_DESCRIPTION: meta.description, _MM_VERSION: meta.version,
                           _MM_AUTHOR: meta.author, _MM_LICENSE: meta.license,
                           _MM_MIN_PARSER_VERSION: meta.min_parser_version})
    root = _table(b, _MM_FIELDS, {**strings, _MM_SUBGRAPHS: subgraphs})
    b.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(b.Output())


def _table(b, num_fields: int, offsets: Dict[int, int], bytes_: Optional[Dict[int, int]] = None) -> int:
    """One table from already-built children (slot -> offset) and byte-sized scalars (slot -> value).

    Children must be finished before the table starts: a flatbuffer builder cannot nest objects."""
    b.StartObject(num_fields)
    for slot, value in (bytes_ or {}).items():
        b.PrependUint8Slot(slot, value, 0)
    for slot, offset in offsets.items():
        b.PrependUOffsetTRelativeSlot(slot, offset, 0)
    return b.EndObject()


def _strings(b, texts: Dict[int, Optional[str]]) -> Dict[int, int]:
    """Empty texts are left out, as absent strings read back as ''."""
    return {slot: b.CreateString(text) for slot, text in texts.items() if text}


def _offset_vector(b, offsets: List[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):  # the builder writes back to front
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _float_vector(b, values: Sequence[float]) -> int:
    b.StartVector(4, len(values), 4)
    for value in reversed(values):
        b.PrependFloat32(value)
    return b.EndVector()


def _stats(b, minimum: Sequence[float], maximum: Sequence[float]) -> Dict[int, int]:
    """{_TM_STATS: offset}, or {} when there are no stats to write."""
    if not minimum and not maximum:
        return {}
    fields = {}
    if maximum:
        fields[_STATS_MAX] = _float_vector(b, maximum)
    if minimum:
        fields[_STATS_MIN] = _float_vector(b, minimum)
    return {_TM_STATS: _table(b, 2, fields)}


def _content(b, kind: int, properties: int) -> int:
    return _table(b, _CONTENT_FIELDS, {_CONTENT_PROPERTIES: properties}, {_CONTENT_TYPE: kind})


def _input_tensor(b, meta: StandardMetadata) -> int:
    color = _COLOR_SPACES.get(meta.color_space, _COLOR_SPACES["UNKNOWN"])  # BGR: see _COLOR_SPACES
    image = _table(b, _IMAGE_FIELDS, {}, {_IMAGE_COLOR_SPACE: color})
    fields = {_TM_CONTENT: _content(b, _CONTENT_IMAGE, image)}
    if meta.mean:
        norm = _table(b, 2, {_NORM_MEAN: _float_vector(b, meta.mean), _NORM_STD: _float_vector(b, meta.std)})
        unit = _table(b, _PU_FIELDS, {_PU_OPTIONS: norm}, {_PU_OPTIONS_TYPE: _OPTIONS_NORMALIZATION})
        fields[_TM_PROCESS_UNITS] = _offset_vector(b, [unit])
    fields.update(_stats(b, meta.input_min, meta.input_max))
    fields.update(_strings(b, {_TM_NAME: meta.input_name, _TM_DESCRIPTION: meta.input_description}))
    return _table(b, _TM_FIELDS, fields)


def _output_tensor(b, meta: StandardMetadata) -> int:
    b.StartObject(0)  # FeatureProperties has no fields: it only says "a plain tensor of scores"
    fields = {_TM_CONTENT: _content(b, _CONTENT_FEATURE, b.EndObject())}
    fields.update(_stats(b, meta.output_min, meta.output_max))
    if meta.labels_file:
        texts = _strings(b, {_AF_NAME: meta.labels_file, _AF_DESCRIPTION: meta.labels_description})
        labels = _table(b, _AF_FIELDS, texts, {_AF_TYPE: _FILE_TENSOR_AXIS_LABELS})
        fields[_TM_FILES] = _offset_vector(b, [labels])
    fields.update(_strings(b, {_TM_NAME: meta.output_name, _TM_DESCRIPTION: meta.output_description}))
    return _table(b, _TM_FIELDS, fields)


def _subgraph(b, input_tensor: int, output_tensor: int) -> int:
    inputs, outputs = _offset_vector(b, [input_tensor]), _offset_vector(b, [output_tensor])
    return _table(b, _SG_FIELDS, {_SG_INPUTS: inputs, _SG_OUTPUTS: outputs})


# --- reading ---------------------------------------------------------------------------------------------


def read_standard_metadata(model_bytes: bytes) -> Optional[StandardMetadata]:
    """The model's standard metadata, or None when it has no TFLITE_METADATA entry."""
    raw = metadata_entries(model_bytes).get(METADATA_ENTRY_NAME)
    return None if raw is None else decode_model_metadata(raw)


def decode_model_metadata(buf: bytes) -> StandardMetadata:
    """Parse a ModelMetadata flatbuffer; ModelError when it is not one or is corrupt."""
    buf = bytes(buf)
    if len(buf) < 8 or buf[4:8] != METADATA_IDENTIFIER:
        raise ModelError(f"the model's {METADATA_ENTRY_NAME} entry is not a ModelMetadata flatbuffer "
                         f"(its identifier is {buf[4:8]!r}, expected {METADATA_IDENTIFIER!r})")
    try:
        fields = _decode_fields(_FlatBuffer(buf))
        return StandardMetadata(**fields)
    except (ModelError, UsageError) as e:
        raise ModelError(f"the model's {METADATA_ENTRY_NAME} entry is corrupt or unsupported: {e}") from e


def _decode_fields(fb: _FlatBuffer) -> dict:
    root = fb.root()
    fields = {"name": _text(fb, root, _MM_NAME), "description": _text(fb, root, _MM_DESCRIPTION),
              "version": _text(fb, root, _MM_VERSION), "author": _text(fb, root, _MM_AUTHOR),
              "license": _text(fb, root, _MM_LICENSE),
              "min_parser_version": _text(fb, root, _MM_MIN_PARSER_VERSION)}
    subgraph = _first_table(fb, root, _MM_SUBGRAPHS)
    if subgraph is None:  # valid but says nothing about the tensors
        fields["color_space"] = "UNKNOWN"
        return fields
    fields.update(_decode_input(fb, _first_table(fb, subgraph, _SG_INPUTS)))
    fields.update(_decode_output(fb, _first_table(fb, subgraph, _SG_OUTPUTS)))
    return fields


def _decode_input(fb: _FlatBuffer, tensor: Optional[int]) -> dict:
    if tensor is None:
        return {"color_space": "UNKNOWN", "input_name": ""}
    out = {"input_name": _text(fb, tensor, _TM_NAME), "input_description": _text(fb, tensor, _TM_DESCRIPTION),
           "color_space": "UNKNOWN"}
    content = _subtable(fb, tensor, _TM_CONTENT)
    if content is not None and fb.scalar(content, _CONTENT_TYPE, "<B") == _CONTENT_IMAGE:
        image = _subtable(fb, content, _CONTENT_PROPERTIES)
        code = 0 if image is None else fb.scalar(image, _IMAGE_COLOR_SPACE, "<b")
        out["color_space"] = {v: k for k, v in _COLOR_SPACES.items()}.get(code, "UNKNOWN")
    for unit in _tables(fb, tensor, _TM_PROCESS_UNITS):
        if fb.scalar(unit, _PU_OPTIONS_TYPE, "<B") == _OPTIONS_NORMALIZATION:
            norm = _subtable(fb, unit, _PU_OPTIONS)
            if norm is not None:
                out["mean"], out["std"] = _floats_at(fb, norm, _NORM_MEAN), _floats_at(fb, norm, _NORM_STD)
            break  # the Task Library uses one NormalizationOptions, the first
    out["input_min"], out["input_max"] = _decode_stats(fb, tensor)
    return out


def _decode_output(fb: _FlatBuffer, tensor: Optional[int]) -> dict:
    if tensor is None:
        return {"output_name": ""}
    out = {"output_name": _text(fb, tensor, _TM_NAME), "output_description": _text(fb, tensor, _TM_DESCRIPTION)}
    for file in _tables(fb, tensor, _TM_FILES):
        name = fb.string(file, _AF_NAME)
        if name and fb.scalar(file, _AF_TYPE, "<b") == _FILE_TENSOR_AXIS_LABELS:
            out["labels_file"] = name
            out["labels_description"] = _text(fb, file, _AF_DESCRIPTION)
            break  # as the Task Library does: the first labels file (no locale asked for)
    out["output_min"], out["output_max"] = _decode_stats(fb, tensor)
    return out


def _decode_stats(fb: _FlatBuffer, tensor: int) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    stats = _subtable(fb, tensor, _TM_STATS)
    if stats is None:
        return (), ()
    return _floats_at(fb, stats, _STATS_MIN), _floats_at(fb, stats, _STATS_MAX)


def _text(fb: _FlatBuffer, table: int, slot: int) -> str:
    return fb.string(table, slot) or ""


def _subtable(fb: _FlatBuffer, table: int, slot: int) -> Optional[int]:
    pos = fb.field_pos(table, slot)
    return None if pos is None else fb.indirect(pos)


def _checked_vector(fb: _FlatBuffer, table: int, slot: int) -> Optional[Tuple[int, int]]:
    """(start, length) of a vector of 4-byte elements, its whole extent inside the buffer."""
    vec = fb.vector(table, slot)
    if vec is not None and vec[0] + 4 * vec[1] > len(fb.data):
        raise ModelError("a vector runs past the end of the metadata")
    return vec


def _tables(fb: _FlatBuffer, table: int, slot: int) -> List[int]:
    vec = _checked_vector(fb, table, slot)
    return [] if vec is None else [fb.table_at(vec[0], i) for i in range(vec[1])]


def _first_table(fb: _FlatBuffer, table: int, slot: int) -> Optional[int]:
    vec = _checked_vector(fb, table, slot)
    return None if vec is None or vec[1] == 0 else fb.table_at(vec[0], 0)


def _floats_at(fb: _FlatBuffer, table: int, slot: int) -> Tuple[float, ...]:
    vec = _checked_vector(fb, table, slot)
    return () if vec is None else struct.unpack_from(f"<{vec[1]}f", fb.data, vec[0])


# --- associated files --------------------------------------------------------------------------------------


def _open_zip(model_bytes: bytes) -> Optional[zipfile.ZipFile]:
    """The zip appended to the model, or None when there is none (only its central directory is read)."""
    try:
        return zipfile.ZipFile(io.BytesIO(model_bytes))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error):
        return None


def associated_file_names(model_bytes: bytes) -> List[str]:
    """Names of the files packed after the model, in archive order; [] when none are."""
    archive = _open_zip(model_bytes)
    if archive is None:
        return []
    with archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
    return list(dict.fromkeys(names))


def read_associated_file(model_bytes: bytes, name: str,
                         max_bytes: int = DEFAULT_MAX_ASSOCIATED_FILE_BYTES) -> Optional[bytes]:
    """One associated file's bytes, or None when the model packs no file of that name.

    ModelError when the member is larger than `max_bytes` (by its header, or by what it inflates to, which is
    never allowed to exceed the cap), compressed in an unsupported way, or damaged."""
    archive = _open_zip(model_bytes)
    if archive is None:
        return None
    with archive:
        try:
            info = archive.getinfo(name)
        except KeyError:
            return None
    if info.file_size > max_bytes:
        raise ModelError(f"the model's associated file '{name}' declares {info.file_size} bytes, more than the "
                         f"{max_bytes} allowed; the file is damaged or not a model")
    content = _member_bytes(model_bytes, info, max_bytes)
    if zlib.crc32(content) != info.CRC:
        raise ModelError(f"the model's associated file '{name}' is damaged (its checksum does not match)")
    return content


def _member_data(model_bytes: bytes, info: zipfile.ZipInfo) -> memoryview:
    """The stored (possibly compressed) bytes of a member, located through its local header."""
    start = info.header_offset
    if start < 0 or start + 30 > len(model_bytes) or model_bytes[start:start + 4] != b"PK\x03\x04":
        raise ModelError(f"the model's associated file '{info.filename}' is damaged (bad local header)")
    name_len, extra_len = struct.unpack_from("<HH", model_bytes, start + 26)
    data_start = start + 30 + name_len + extra_len
    if data_start + info.compress_size > len(model_bytes):
        raise ModelError(f"the model's associated file '{info.filename}' runs past the end of the file")
    return memoryview(model_bytes)[data_start:data_start + info.compress_size]


def _member_bytes(model_bytes: bytes, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    """Inflate one byte more than the header declares (already checked against max_bytes) and no more, so a
    header that lies about the size is caught without inflating what the member really holds."""
    if info.flag_bits & 0x1:
        raise ModelError(f"the model's associated file '{info.filename}' is encrypted")
    data = _member_data(model_bytes, info)
    limit = min(info.file_size, max_bytes) + 1
    if info.compress_type == zipfile.ZIP_STORED:
        content = bytes(data[:limit])
        complete = True
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            content = inflater.decompress(data, limit)
        except zlib.error as e:
            raise ModelError(f"the model's associated file '{info.filename}' is damaged: {e}") from e
        complete = inflater.eof
    else:
        raise ModelError(f"the model's associated file '{info.filename}' uses zip compression method "
                         f"{info.compress_type}; only stored and deflated files are read")
    if len(content) > max_bytes or not complete or len(content) != info.file_size:
        raise ModelError(f"the model's associated file '{info.filename}' holds more or less than the "
                         f"{info.file_size} bytes its header declares (limit {max_bytes}); the file is damaged")
    return content


def pack_associated_files(model_bytes: bytes, files: Dict[str, bytes]) -> bytes:
    """`model_bytes` with `files` (name -> content) packed after it as tflite-support's populator packs them.

    That is: Python's zipfile in append mode over the model, members stored uncompressed (the C++ metadata
    extractor refuses compressed ones, and hands out views into the file), offsets counted from the start of
    the file. A model that already carries a zip gets the new members added to it. Timestamps are fixed so the
    same inputs give the same bytes."""
    existing = set(associated_file_names(model_bytes))
    for name in files:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name:
            raise UsageError(f"an associated file needs a plain file name (the metadata refers to it by "
                             f"name), got {name!r}")
        if name in existing:
            raise UsageError(f"the model already packs an associated file named '{name}'")
    out = io.BytesIO(model_bytes)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o600 << 16  # what zipfile.writestr gives a file written by name
            archive.writestr(info, bytes(content))
    return out.getvalue()
