"""Which builtin operators the installed TFLite Micro resolves: prints them as a JSON list.

For every builtin in TFLite's schema, a one-operator model is handed to TFLite Micro's Python interpreter; its
op resolver says "Didn't find op for builtin opcode" for the ones it lacks. Each try runs in a forked child
(an op it has may well crash on the dummy tensors, which is not the question asked). Run as a script by
tests/test_convert_targets.py.
"""

from __future__ import annotations

import json
import os

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema


def one_op_model(code: int) -> bytes:
    model = schema.ModelT()
    model.version = 3
    opcode = schema.OperatorCodeT()
    opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = code, min(code, 127), 1
    model.operatorCodes, model.buffers = [opcode], [schema.BufferT()]
    graph = schema.SubGraphT()
    graph.tensors = []
    for name in ("in", "out"):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = np.array([1, 4], np.int32), schema.TensorType.INT8, 0, name
        graph.tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0], np.int32), np.array([1], np.int32)
    graph.operators, graph.inputs, graph.outputs = [op], np.array([0], np.int32), np.array([1], np.int32)
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def resolves(code: int) -> bool:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.dup2(write, 1), os.dup2(write, 2)
        try:
            from tflite_micro.python.tflite_micro import runtime

            runtime.Interpreter.from_bytes(one_op_model(code), arena_size=1 << 16)
        except Exception:  # noqa: BLE001 - any failure after the op was found is not the question
            pass
        os._exit(0)
    os.close(write)
    log = b""
    while chunk := os.read(read, 1 << 16):
        log += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return b"Didn't find op" not in log


def main() -> None:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and k != "CUSTOM"}
    print(json.dumps(sorted(names[code] for code in names if resolves(code))))


if __name__ == "__main__":
    main()
