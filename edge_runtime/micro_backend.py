"""TensorFlow Lite Micro as an interpreter backend: the microcontroller kernels, behind LiteRT's API.

`pip install tflite-micro` ships TFLite Micro's own interpreter (the reference kernels a Cortex-M build
compiles, in a Python extension). Its API differs from LiteRT's: inputs and outputs are addressed by position,
there is no tensor list, the memory it needs (the "arena") is fixed when it opens, and every error is a
generic RuntimeError while the real reason goes to the native stderr. `MicroInterpreter` wraps it in the
subset of LiteRT's `Interpreter` that edgevision calls (get_input_details, set_tensor, invoke, get_tensor,
get_tensor_details...), so the Classifier, the evaluation engine and `bench` run unchanged on it, and turns
the stderr lines into one-line ModelErrors that name the operator, the arena shortfall or the batch.

The arena: a microcontroller build reserves a fixed byte array. The model is first opened in a roomy one
(four times the file, doubled while it does not fit) and `arena_used_bytes` reports what TFLite Micro's
recording allocator measured there, the figure a firmware needs. Given `arena_size`, the model then runs in
exactly that many bytes, and a size below the measured need is an error saying how much it needs.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

import numpy as np

from edgevision.errors import ModelError, UsageError
from edgevision.native_log import captured_native_stderr

#: Where the automatic arena starts, and the most it grows to (a board with more RAM than this runs LiteRT).
START_ARENA = 64 * 1024
MAX_ARENA = 512 * 1024 * 1024
DISTRIBUTION, MODULE = "tflite-micro", "tflite_micro.python.tflite_micro.runtime"

_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([^']+)'|Failed to get registration from op code (\S+)")
_PREPARE = re.compile(r"Node (\S+) \(number (\d+)\) failed to prepare")
_SHORT = re.compile(r"Failed to (?:allocate|resize)\b(?:.*?missing:? (\d+))?")
_ARENA_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
# TFLite schema TensorType -> numpy dtype (the types TFLite Micro can hold).
_TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
                 9: np.int8, 10: np.float64, 16: np.uint32, 17: np.uint16}


def check_arena_size(arena_size) -> Optional[int]:
    """None (grow until the model fits) or a positive byte count; UsageError otherwise."""
    if arena_size is None:
        return None
    if isinstance(arena_size, bool) or not isinstance(arena_size, int) or arena_size < 1024:
        raise UsageError(f"the arena size must be a whole number of bytes, at least 1024; got {arena_size!r}")
    return arena_size


def parse_arena_size(text: str) -> int:
    """'256K', '1M', '200000' -> bytes (K and M are 1024 and 1024*1024, as firmware arenas are sized)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)(?:i?[bB])?\s*", str(text))
    if not match:
        raise UsageError(f"--arena-size must be bytes, such as 262144, 256K or 2M; got {text!r}")
    value = int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    return check_arena_size(value)


class MicroInterpreter:
    """TFLite Micro's interpreter with the part of LiteRT's Interpreter API that edgevision uses."""

    def __init__(self, model_content: bytes, arena_size: Optional[int] = None, name: str = "model"):
        from tflite_micro.python.tflite_micro import runtime

        self._name = name
        self._data = bytes(model_content)
        self._tensors, self._inputs, self._outputs = _read_graph(self._data, name)
        self._refuse_inner_batch()
        self._interp, self._arena_size, self._arena_used = self._open(runtime, check_arena_size(arena_size))

    def _open(self, runtime, arena_size: Optional[int]):
        """Open in a roomy arena and measure; then, given a size, check it against the measure and reopen in it.

        TFLite Micro crashes the process (not an error) on some models when the arena runs out while it
        prepares them, so a too-small arena is never handed to it: the need is measured in a big one first.
        """
        interp, size = self._open_growing(runtime, max(START_ARENA, 4 * len(self._data)))
        used = self._measure_arena(interp)
        if arena_size is None:
            return interp, size, used
        if used is not None and arena_size < used:
            raise ModelError(f"{self._name}: the model needs {used} bytes of TFLite Micro arena and "
                             f"--arena-size is {arena_size}; give at least {used}, or leave it out to measure")
        del interp
        return self._open_growing(runtime, arena_size, fixed=True)[0], arena_size, used

    def _open_growing(self, runtime, size: int, fixed: bool = False):
        while True:
            lines: List[str] = []
            try:
                with captured_native_stderr(lines):
                    return runtime.Interpreter.from_bytes(self._data, arena_size=size), size
            except (RuntimeError, ValueError) as e:
                short = [m for m in map(_SHORT.search, lines) if m]
                if not short or fixed or size >= MAX_ARENA:
                    raise self._load_error(lines, e, size, fixed) from e
                missing = max((int(m.group(1)) for m in short if m.group(1)), default=0)
                size = max(2 * size, size + missing + missing // 4)  # jump past what it said was missing

    def _refuse_inner_batch(self) -> None:
        """Refuse, before TFLite Micro sees it, a graph that batches images inside (flip TTA's two views).

        Its kernels assume the batch of the input all through: the CNN's RESHAPE fails to prepare (10 != 20)
        and the MobileNetV2 crashes the process, so this is said up front in one line instead.
        """
        batch = _inner_batch(self._tensors)
        if batch > 1:
            raise ModelError(f"{self._name}: TensorFlow Lite Micro cannot run a model that classifies {batch} "
                             "images per invoke inside its graph (flip test-time augmentation does: its RESHAPE "
                             "fails to prepare); convert it without --tta for a microcontroller")

    def _load_error(self, lines: List[str], error: Exception, size: int, fixed: bool) -> ModelError:
        text = "\n".join(lines)
        op = _MISSING_OP.search(text)
        if op:
            return ModelError(f"{self._name}: TensorFlow Lite Micro has no {op.group(1) or op.group(2)} operator, "
                              "which this model uses; convert it with `edgevision convert --target micro` (only "
                              "operators TFLite Micro has) or run it with --backend ai-edge-litert")
        short = [m for m in map(_SHORT.search, lines) if m]
        if short:
            missing = next((int(m.group(1)) for m in short if m.group(1)), None)
            need = f" (at least {missing} bytes more)" if missing else ""
            hint = "pass a larger --arena-size, or leave it out to measure" if fixed else \
                "this model is too big for a microcontroller"
            return ModelError(f"{self._name}: the model does not fit in a {size}-byte TFLite Micro arena{need}; "
                              f"{hint}")
        reason = next((line.strip() for line in lines if line.strip()), str(error))
        return ModelError(f"{self._name}: TensorFlow Lite Micro cannot load this model ({reason})")

    @staticmethod
    def _measure_arena(interp) -> Optional[int]:
        lines: List[str] = []
        with captured_native_stderr(lines):
            interp.print_allocations()
        found = [int(m.group(1)) for m in map(_ARENA_TOTAL.search, lines) if m]
        return found[0] if found else None

    # --- what edgevision measures ----------------------------------------------------------------
    @property
    def arena_used_bytes(self) -> Optional[int]:
        """Bytes of the arena the model uses, as TFLite Micro's recording allocator counts them."""
        return self._arena_used

    @property
    def arena_size(self) -> int:
        """Bytes of the arena it runs in (the size given, or the roomy one it was measured in)."""
        return self._arena_size

    # --- LiteRT's Interpreter API ----------------------------------------------------------------
    def allocate_tensors(self) -> None:
        """TFLite Micro allocates when it opens; kept so callers need no special case."""

    def get_input_details(self) -> List[dict]:
        return [self._details(i, tensor, self._interp.get_input_details(i)) for i, tensor in enumerate(self._inputs)]

    def get_output_details(self) -> List[dict]:
        return [self._details(i, tensor, self._interp.get_output_details(i)) for i, tensor in enumerate(self._outputs)]

    def get_tensor_details(self) -> List[dict]:
        """Every tensor of the graph as the file declares it (TFLite Micro keeps no list of its own)."""
        return [{k: v for k, v in t.items() if k != "constant"} for t in self._tensors]

    def set_tensor(self, tensor_index: int, value: np.ndarray) -> None:
        if tensor_index not in self._inputs:
            raise ValueError(f"tensor {tensor_index} is not an input of {self._name}")
        self._interp.set_input(value, self._inputs.index(tensor_index))  # ValueError on shape or type

    def invoke(self) -> None:
        lines: List[str] = []
        try:
            with captured_native_stderr(lines):
                self._interp.invoke()
        except RuntimeError as e:
            reason = next((line.strip() for line in lines if line.strip()), str(e))
            raise RuntimeError(f"TensorFlow Lite Micro failed to run: {reason}") from e

    def get_tensor(self, tensor_index: int) -> np.ndarray:
        if tensor_index not in self._outputs:
            raise ValueError(f"TensorFlow Lite Micro only reads outputs; tensor {tensor_index} is not one")
        return np.array(self._interp.get_output(self._outputs.index(tensor_index)))

    def _details(self, position: int, tensor_index: int, micro: dict) -> dict:
        params = micro.get("quantization_parameters") or {}
        scales, zeros = np.asarray(params.get("scales", [])), np.asarray(params.get("zero_points", []))
        legacy = (float(scales[0]), int(zeros[0])) if scales.size == 1 and zeros.size == 1 else (0.0, 0)
        described = {k: v for k, v in self._tensors[tensor_index].items() if k != "constant"}
        return {**described, "index": tensor_index, "shape": np.asarray(micro["shape"], np.int32),
                "dtype": micro["dtype"], "quantization": legacy, "quantization_parameters": params}


def _read_graph(data: bytes, name: str):
    """(tensor details, input tensor indices, output tensor indices) of the first subgraph, from the file."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAsModel(data, 0)
        graph = model.Subgraphs(0)
        tensors = [_tensor_detail(model, graph.Tensors(i), i) for i in range(graph.TensorsLength())]
        inputs = [int(i) for i in graph.InputsAsNumpy()]
        outputs = [int(i) for i in graph.OutputsAsNumpy()]
    except Exception as e:  # noqa: BLE001 - a flatbuffer the verifier would refuse can fail anywhere here
        raise ModelError(f"{name}: TensorFlow Lite Micro cannot read this model's graph ({type(e).__name__})") from e
    return tensors, inputs, outputs


def _tensor_detail(model, tensor, index: int) -> Dict[str, object]:
    shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else np.zeros(0, np.int32)
    buffer = model.Buffers(tensor.Buffer()) if 0 < tensor.Buffer() < model.BuffersLength() else None
    constant = buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1)
    return {"name": (tensor.Name() or b"").decode("utf-8", "replace"), "index": index,
            "shape": np.asarray(shape, np.int32), "dtype": _TENSOR_TYPES.get(tensor.Type(), np.uint8),
            "constant": constant}


def _inner_batch(tensors: List[dict]) -> int:
    """The largest leading dimension of an activation tensor (no weights) of rank 3 or more: a flip-TTA graph
    reshapes its scores to [2, 1, classes]. (Rank 2 is left out: [positions, channels] is not a batch.)"""
    batches = [int(t["shape"][0]) for t in tensors if len(t["shape"]) >= 3 and not t["constant"]]
    return max(batches, default=1)
