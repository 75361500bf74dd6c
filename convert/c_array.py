"""The model as C++ source for a firmware project: `g_model[]` / `g_model_len`, as TFLite Micro's examples name them.

`<name>.h` declares the array, its length and (where TFLite Micro measured it) the arena size, and says in
comments what the model takes and gives and which operators to register; `<name>.cc` holds the bytes,
16-byte aligned (TFLite Micro reads the flatbuffer in place, and its tensors' data must be aligned). The
symbols have C linkage, so C firmware can link them too. The bytes are the `.tflite` file's, every one.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence, Tuple

BYTES_PER_LINE = 12
ARRAY, LENGTH = "g_model", "g_model_len"
# Operator names whose MicroMutableOpResolver method does not follow the plain CamelCase rule.
_RESOLVER_WORDS = {"2D": "2D", "LSTM": "LSTM"}


def guard(header_name: str) -> str:
    """An include guard from the header's file name, e.g. cnn-int8.h -> EDGEVISION_CNN_INT8_H_."""
    return "EDGEVISION_" + re.sub(r"[^A-Za-z0-9]", "_", header_name).upper().strip("_") + "_"


def resolver_call(op: str) -> str:
    """The MicroMutableOpResolver method that registers builtin `op`, e.g. DEPTHWISE_CONV_2D -> AddDepthwiseConv2D."""
    return "Add" + "".join(_RESOLVER_WORDS.get(w, w[:1] + w[1:].lower()) for w in op.split("_"))


def byte_lines(model: bytes) -> str:
    rows = []
    for start in range(0, len(model), BYTES_PER_LINE):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in model[start:start + BYTES_PER_LINE]) + ",")
    return "\n".join(rows)


def _arena_lines(arena: Optional[dict]) -> str:
    if not arena:
        return ("// Tensor arena: UNMEASURED (TFLite Micro's Python interpreter was not installed when this was\n"
                "// written: pip install 'edgevision[micro]' and convert again to measure it). No size is defined;\n"
                "// find one on the device (MicroInterpreter::arena_used_bytes() after AllocateTensors()).\n")
    return (f"// Tensor arena: {arena['arena_bytes']} bytes, the smallest arena TFLite Micro's Python interpreter\n"
            f"// (tflite-micro {arena['version']}, a 64-bit host, reference kernels) allocated and ran this model in.\n"
            "// A 32-bit microcontroller needs about as much or a little less; optimised kernels (CMSIS-NN) may\n"
            "// need scratch memory on top: leave a margin, e.g. 1 KiB.\n"
            f"#define MODEL_TENSOR_ARENA_SIZE {arena['arena_bytes']}\n")


def c_files(model: bytes, header_name: str, arena: Optional[dict], ops: Sequence[str] = (),
            interface: str = "") -> Tuple[str, str]:
    """(source, header) text for `model`; the source includes `header_name`."""
    g = guard(header_name)
    register = "".join(f"//   resolver.{resolver_call(op)}();\n" for op in ops if not op.startswith("CUSTOM:"))
    header = (
        f"// Written by edgevision convert --target micro: the model as a C array for TensorFlow Lite Micro.\n"
        f"#ifndef {g}\n#define {g}\n\n"
        + (f"// {interface}\n" if interface else "")
        + f"// Flash: {len(model)} bytes (the .tflite file, standard metadata and labels included).\n"
        + _arena_lines(arena)
        + (f"//\n// Operators to register:\n//   static tflite::MicroMutableOpResolver<{len(ops)}> resolver;\n"
           f"{register}" if ops else "")
        + f"\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
        f"extern const unsigned char {ARRAY}[];\nextern const unsigned int {LENGTH};\n\n"
        f"#ifdef __cplusplus\n}}\n#endif\n\n#endif  // {g}\n"
    )
    source = (
        f"// Written by edgevision convert --target micro: {len(model)} bytes of TFLite flatbuffer.\n"
        f"#include \"{header_name}\"\n\n"
        f"alignas(16) const unsigned char {ARRAY}[] = {{\n{byte_lines(model)}\n}};\n"
        f"const unsigned int {LENGTH} = {len(model)};\n"
    )
    return source, header
