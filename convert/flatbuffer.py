"""Reading and re-writing a `.tflite` flatbuffer with LiteRT's generated object API (no TensorFlow).

Buffer contents are re-packed 16-byte aligned (the schema's `force_align: 16`), which the generated Python
`Pack` does not do by itself, so that weights stay aligned for memory-mapped loading on devices. Anything
appended after the flatbuffer (an associated-files zip) is not part of the object and is dropped.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from edgevision.edge_runtime.metadata import TFLITE_IDENTIFIER, is_tflite
from edgevision.errors import ModelError

BUFFER_ALIGNMENT = 16


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def enum_names(enum_class) -> Dict[int, str]:
    """A schema enum's values -> names (BuiltinOperator: 3 -> "CONV_2D"; TensorType: 9 -> "INT8")."""
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def builtin_code(operator_code) -> int:
    """An unpacked OperatorCodeT's builtin operator. The schema split the field at 127: codes above it live in
    `builtinCode`, older files have only `deprecatedBuiltinCode`, and the larger of the two is the real one."""
    return max(int(operator_code.builtinCode), int(operator_code.deprecatedBuiltinCode))


def unpack_model(model: bytes):
    """The model as a mutable `ModelT`."""
    if not is_tflite(model):
        raise ModelError("not a TensorFlow Lite model (the 'TFL3' identifier is missing)")
    return _schema().ModelT.InitFromPackedBuf(bytearray(model), 0)


def pack_model(obj) -> bytes:
    """`ModelT` -> flatbuffer bytes, every buffer 16-byte aligned."""
    import flatbuffers

    aligned = _aligned_buffer_class(_schema())
    buffers = []
    for buf in obj.buffers or []:
        new = aligned()
        new.data, new.offset, new.size = buf.data, buf.offset, buf.size
        buffers.append(new)
    obj.buffers = buffers
    size = sum(len(b.data) for b in buffers if b.data is not None)
    builder = flatbuffers.Builder(size + (1 << 16))
    builder.Finish(obj.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _aligned_buffer_class(schema):
    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 - the generated API's name
            data = None
            if self.data is not None and len(self.data):
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT
