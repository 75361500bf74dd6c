"""`bench --accelerator cpu|gpu|npu`: LiteRT's own accelerator selection (`CompiledModel`), not the Interpreter.

ai-edge-litert 2.x has a second API beside the classic Interpreter: `CompiledModel.from_buffer(model,
options=Options(hardware_accelerators=...))`, which places the graph on the CPU (XNNPACK), the GPU (its
WebGPU/OpenCL accelerator library) or an NPU (a vendor dispatch library). `CompiledRunner` gives the bench
child the few Interpreter calls it makes (get_input_details, set_tensor, invoke, get_output_details), so the
timing loop is the same code for both APIs.

Nothing is pretended: the accelerator asked for is the only one allowed (no silent CPU fallback), so a GPU
or NPU run either runs there or fails with LiteRT's reason in one line (no GPU adapter, no vendor library).
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from edgevision.errors import ModelError

ACCELERATORS = ("cpu", "gpu", "npu")
# Native lines that say why an accelerator is missing, rather than where LiteRT noticed it.
_REASONS = ("No adapters found", "Failed to initialize", "Could not load", "cannot open shared object",
            "Some ops are not accelerated", "No compiler plugin found", "not supported")


def _reason(error: Exception, native: List[str]) -> str:
    """The most telling line of a CompiledModel failure: LiteRT's exception text names only a header file."""
    lines = [line.strip(" └\t") for line in str(error).splitlines()]
    lines += [line.strip(" └\t") for line in native]
    for marker in _REASONS:
        hit = next((line for line in lines if marker in line), None)
        if hit:
            return hit[hit.find("]") + 1:].strip() if hit.startswith("ERROR: [") else hit
    return next((line for line in lines if line and not line.startswith("ERROR: [")), type(error).__name__)


class CompiledRunner:
    """A LiteRT CompiledModel on one accelerator, with the Interpreter calls the bench child uses."""

    def __init__(self, model: bytes, accelerator: str, num_threads: int, name: str = "model"):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        from edgevision.native_log import captured_native_stderr

        if accelerator not in ACCELERATORS:
            raise ModelError(f"--accelerator must be one of {', '.join(ACCELERATORS)}; got {accelerator!r}")
        options = Options(hardware_accelerators=HardwareAccelerator[accelerator.upper()],
                          cpu_options=CpuOptions(num_threads=num_threads))
        native: List[str] = []
        try:
            with captured_native_stderr(native):  # LiteRT logs every plugin it tries; only the reason matters
                self._model = CompiledModel.from_buffer(bytes(model), options=options)
                self._inputs = self._model.create_input_buffers(0)
                self._outputs = self._model.create_output_buffers(0)
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"{name}: LiteRT's {accelerator.upper()} accelerator cannot run this model here "
                             f"({_reason(e, native)})") from e
        key = list(self._model.get_signature_list())[0]
        self._in = list(self._model.get_input_tensor_details(key).values())
        self._out = list(self._model.get_output_tensor_details(key).values())
        self.accelerator = accelerator

    def get_input_details(self) -> List[Dict[str, Any]]:
        return [self._detail(d) for d in self._in]

    def get_output_details(self) -> List[Dict[str, Any]]:
        return [self._detail(d) for d in self._out]

    def get_tensor_details(self) -> List[Dict[str, Any]]:
        """Only the inputs and outputs: a compiled model does not list its inner tensors."""
        return self.get_input_details() + self.get_output_details()

    @staticmethod
    def _detail(d: Dict[str, Any]) -> Dict[str, Any]:
        return {"name": d["name"], "index": int(d["index"]), "shape": np.asarray(d["shape"], np.int32),
                "dtype": np.dtype(d["dtype"]).type}

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        position = [int(d["index"]) for d in self._in].index(index)
        self._inputs[position].write(np.ascontiguousarray(value))

    def invoke(self) -> None:
        self._model.run_by_index(0, self._inputs, self._outputs)

    def get_tensor(self, index: int) -> np.ndarray:
        position = [int(d["index"]) for d in self._out].index(index)
        d = self._out[position]
        shape = tuple(int(v) for v in d["shape"])
        return self._outputs[position].read(int(np.prod(shape)), np.dtype(d["dtype"])).reshape(shape)
