"""Choosing and opening a TensorFlow Lite interpreter, without TensorFlow.

Two backends expose the same `Interpreter` class: `ai-edge-litert` (Google's current LiteRT wheels, numpy 2,
XNNPACK; the default) and `tflite-runtime` (the legacy wheels that older boards still have; numpy 1 only).
A third, `tflite-micro`, is TensorFlow Lite Micro's interpreter (a microcontroller's kernels), wrapped in the
same API by edge_runtime/micro_backend.py; it is used only when named, never by "auto". An external delegate
(edge_runtime/delegates.py) is handed to the LiteRT backends' interpreter.
TensorFlow's own `tf.lite.Interpreter` is deliberately not a backend: the edge runtime never imports TensorFlow.

Models are always opened from bytes (`model_content`), never from a path: that is the path on which the
interpreter runs the flatbuffer verifier first. Handing a path to the C++ loader skipped verification, and
mutated models then crashed the process (benchmarks/results/findings.md; edge_runtime/safety.py has the rest).
"""

from __future__ import annotations

import importlib
import os
from typing import Dict, List, Optional

from edgevision.errors import DependencyError, ModelError, UsageError

AUTO = "auto"
#: Backend name -> (module providing `Interpreter`, distribution name, extra that installs it), by preference.
BACKENDS: Dict[str, tuple] = {
    "ai-edge-litert": ("ai_edge_litert.interpreter", "ai-edge-litert", "edge"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime", "tflite-runtime"),
    "tflite-micro": ("tflite_micro.python.tflite_micro.runtime", "tflite-micro", "micro"),
}
MICRO = "tflite-micro"
#: What "auto" picks from: the LiteRT interpreters (TFLite Micro is a target one chooses, not a fallback).
AUTO_BACKENDS = ("ai-edge-litert", "tflite-runtime")


def _interpreter_class(name: str):
    """The backend's Interpreter class; ImportError if the backend is not usable here."""
    module = importlib.import_module(BACKENDS[name][0])
    return module.Interpreter


def _check_name(name: str) -> None:
    if name != AUTO and name not in BACKENDS:
        raise UsageError(f"unknown interpreter backend {name!r}; choose one of: {AUTO}, {', '.join(BACKENDS)}")


def available_backends() -> List[str]:
    """Backends that can be imported here, in order of preference.

    "Importable" is the test, not "installed": tflite-runtime installed next to numpy 2 is installed and
    unusable (its extension module was built against numpy 1 and fails to import).
    """
    out = []
    for name in BACKENDS:
        try:
            _interpreter_class(name)
        except Exception:  # noqa: BLE001 - a broken wheel can raise anything at import time
            continue
        out.append(name)
    return out


def resolve_backend(name: str = AUTO) -> str:
    """"auto" -> the first usable backend; a named backend -> itself if usable. DependencyError otherwise."""
    _check_name(name)
    candidates = list(AUTO_BACKENDS) if name == AUTO else [name]
    errors = []
    for candidate in candidates:
        try:
            _interpreter_class(candidate)
            return candidate
        except Exception as e:  # noqa: BLE001
            errors.append(f"{candidate}: {type(e).__name__}: {e}")
    if name == AUTO:
        raise DependencyError(
            "no TensorFlow Lite interpreter is installed (tried " + "; ".join(errors) + "); install one with "
            "pip install 'edgevision[edge]' (ai-edge-litert) or, on older boards, "
            "pip install 'edgevision[tflite-runtime]'"
        )
    extra = BACKENDS[name][2]
    raise DependencyError(
        f"the {name} interpreter backend cannot be imported ({errors[0]}); "
        f"install it with: pip install 'edgevision[{extra}]', or use --backend auto"
    )


def backend_version(name: str) -> str:
    """Installed version of a backend's distribution ("unknown" if its metadata is missing)."""
    from importlib import metadata

    _check_name(name)
    name = resolve_backend(name) if name == AUTO else name
    try:
        return metadata.version(BACKENDS[name][1])
    except metadata.PackageNotFoundError:
        module = importlib.import_module(BACKENDS[name][0].rsplit(".", 1)[0])
        return str(getattr(module, "__version__", "unknown"))


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_num_threads(num_threads: Optional[int]) -> int:
    """A positive int; None means every usable core. UsageError otherwise.

    None is resolved here rather than left to the backend, whose default differs between versions (and
    is a single thread for XNNPACK in some), so that reports can say how many threads really ran.
    """
    if num_threads is None:
        return usable_cores()
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise UsageError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    return num_threads


def make_interpreter(model_content: bytes, num_threads: Optional[int] = None, backend: str = AUTO,
                     name: str = "model", delegate=None, arena_size: Optional[int] = None):
    """An interpreter for `model_content` with its tensors allocated.

    Errors the interpreter reports (it raises ValueError for a flatbuffer that fails verification and
    RuntimeError for ops it cannot prepare) become one-line ModelErrors. This does not protect against a
    model that crashes the process: `safety.verify_model` is for models that are not yet known to be good.
    delegate: a delegates.DelegateSpec (LiteRT backends); arena_size: TFLite Micro's arena in bytes (None:
    measured in a roomy one).
    """
    num_threads = check_num_threads(num_threads)  # None -> all usable cores
    if not isinstance(model_content, (bytes, bytearray, memoryview)):
        raise UsageError(f"model_content must be the model's bytes, got {type(model_content).__name__}")
    if len(model_content) == 0:
        raise ModelError(f"{name}: the model file is empty")
    backend = resolve_backend(backend)
    if arena_size is not None and backend != MICRO:
        raise UsageError("an arena size is for --backend tflite-micro only (LiteRT sizes its memory itself)")
    if backend == MICRO:
        if delegate is not None:
            from edgevision.edge_runtime.delegates import load_delegate

            load_delegate(delegate, backend)  # raises the one-line "TFLite Micro has no delegates"
        from edgevision.edge_runtime.micro_backend import MicroInterpreter

        return MicroInterpreter(model_content, arena_size=arena_size, name=name)
    return _litert_interpreter(model_content, num_threads, backend, name, delegate)


def _litert_interpreter(model_content: bytes, num_threads: int, backend: str, name: str, delegate):
    Interpreter = _interpreter_class(backend)
    delegates = []
    if delegate is not None:
        from edgevision.edge_runtime.delegates import load_delegate

        delegates = [load_delegate(delegate, backend)]
    from edgevision.native_log import quiet_native_stderr

    try:
        # LiteRT's C++ logs "Created TensorFlow Lite XNNPACK delegate" on every load; real messages are replayed.
        with quiet_native_stderr():
            interpreter = Interpreter(model_content=bytes(model_content), num_threads=num_threads,
                                      experimental_delegates=delegates or None)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        if delegates:
            raise ModelError(f"{name}: the delegate {delegate.library} cannot take this model "
                             f"({_first_line(e)})") from e
        raise ModelError(f"{name}: the interpreter cannot load this model ({_first_line(e)})") from e
    return interpreter


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
