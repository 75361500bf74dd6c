"""One measurement in a process of its own: `python -m edgevision.benchmarks.child < task.json`.

Why a child per measurement: peak resident memory is a per-process high-water mark, so one model's memory
would pollute the next one's; and a model that crashes the interpreter (a segfault in `allocate_tensors()` is
real) kills only this process, which the parent turns into a row with an error.

Protocol (edge_runtime.child_process, the same as the model verifier's child): a JSON task on stdin; one JSON
document `{"ok": true, "result": {...}}` or `{"ok": false, "error": "...", "error_type": "..."}` on the original
stdout, native libraries' output kept off it. Progress markers `stage: <name>` go to stderr, so that when the
process dies the parent can say in which stage.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional

# `stage` is also what the task modules (e2e, evaluate, keras_timing) mark their progress with.
from edgevision.edge_runtime.child_process import answer_channel, stage, write_reply


# --- the interpreter ------------------------------------------------------------------------------
def open_interpreter(model_content: bytes, num_threads: int, backend: str, name: str = "model",
                     delegate: Optional[str] = None, arena_size: Optional[int] = None):
    """An allocated interpreter from the model's bytes (the runtime's verified path), with the task's delegate
    ("PATH[:key=value,...]") or TensorFlow Lite Micro arena."""
    from edgevision.edge_runtime.delegates import as_delegate
    from edgevision.edge_runtime.interpreter import make_interpreter

    return make_interpreter(model_content, num_threads=num_threads, backend=backend, name=name,
                            delegate=as_delegate(delegate), arena_size=arena_size)


def fill_inputs(interp, seed: int = 0) -> list:
    """Deterministic random data in every input tensor; returns the inputs' shapes and types.

    A CNN's latency does not depend on the pixel values, but random data keeps a model from taking a
    fast path on zeros (some kernels skip zero blocks).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    described = []
    for detail in interp.get_input_details():
        shape = tuple(int(d) for d in detail["shape"])
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            data = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            data = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        elif dtype.kind == "b":
            data = rng.integers(0, 1, size=shape, endpoint=True).astype(dtype)
        else:
            raise _model_error(f"input {detail['name']!r} has type {dtype}, which the benchmark cannot fill")
        interp.set_tensor(detail["index"], data)
        described.append({"name": detail["name"], "shape": list(shape), "dtype": dtype.name})
    return described


def _read_model(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise _model_error(f"cannot read model {path}: {e.strerror}") from e


def _model_error(message: str):
    from edgevision.errors import ModelError

    return ModelError(message)


def _model_facts(data: bytes) -> Dict[str, Any]:
    from edgevision.edge_runtime.metadata import read_metadata

    try:
        meta = read_metadata(data) or {}
    except Exception:  # metadata is informative only; a model without readable metadata still benchmarks
        meta = {}
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    return {
        "quantization": meta.get("quantization"),
        "optimizations": meta.get("optimizations") or [],
        "metadata_accuracy": metrics.get("accuracy"),
    }


def _quantization_from_tensors(interp) -> str:
    """For a model without edgevision metadata: its quantization as the tensors show it."""
    import numpy as np

    inp = np.dtype(interp.get_input_details()[0]["dtype"]).name
    if inp in ("int8", "uint8"):
        return inp
    if inp == "int16":
        return "int16x8"
    types = {np.dtype(d["dtype"]).name for d in interp.get_tensor_details()}
    if "float16" in types:
        return "float16"
    if types & {"int8", "uint8"}:
        return "int8 weights"  # dynamic range, or full int8 behind float input/output
    return "float32"


# --- tasks ----------------------------------------------------------------------------------------
def bench_task(task: Dict[str, Any]) -> Dict[str, Any]:
    """Load time, latency distribution, harness overhead and peak memory of one model at one thread count."""
    from edgevision.benchmarks import harness

    path = Path(task["model"])
    from edgevision.edge_runtime.interpreter import backend_version, resolve_backend

    backend = resolve_backend(task.get("backend", "auto"))  # imports the library: not part of the load time
    baseline = harness.current_rss_mb()
    stage("load")
    t0 = _now_ns()
    data = _read_model(path)
    interp = _open_for_bench(data, task, backend, path.name)
    load_ms = (_now_ns() - t0) / harness.NS_PER_MS
    inputs = fill_inputs(interp)
    stage("invoke")
    m = harness.measure(
        interp.invoke, runs=task["runs"], warmup=task["warmup"], compare_bare=task.get("compare_bare", True)
    )
    stats = harness.latency_stats(m.samples_ns)
    outputs = [
        {"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": _dtype_name(d["dtype"])}
        for d in interp.get_output_details()
    ]
    facts = _model_facts(data)
    if not facts["quantization"]:
        facts["quantization"] = _quantization_from_tensors(interp)
    return {
        "backend": f"{backend}:{task['accelerator']}" if task.get("accelerator") else backend,
        "backend_version": backend_version(backend),
        "bytes": len(data),
        "load_ms": load_ms,
        "latency_ms": stats.to_dict(),
        "inferences_per_s": stats.per_second,
        "runs": stats.n,
        "warmup": task["warmup"],
        "harness_overhead": m.harness_overhead,
        "timer_ns": harness.timer_cost_ns(),
        "peak_rss_mb": harness.peak_rss_mb(),
        "baseline_rss_mb": baseline,
        "input": inputs[0] if len(inputs) == 1 else inputs,
        "output": outputs[0] if len(outputs) == 1 else outputs,
        **facts,
        **_runtime_facts(interp, task),
    }


def _open_for_bench(data: bytes, task: Dict[str, Any], backend: str, name: str):
    """The classic Interpreter, or with `accelerator` LiteRT's CompiledModel on that accelerator."""
    if task.get("accelerator"):
        from edgevision.benchmarks.accelerator import CompiledRunner

        return CompiledRunner(data, task["accelerator"], task["threads"], name)
    return open_interpreter(data, task["threads"], backend, name, task.get("delegate"), task.get("arena_size"))


def _runtime_facts(interp, task: Dict[str, Any]) -> Dict[str, Any]:
    """The delegate a row ran with; for TensorFlow Lite Micro its arena (RAM) and the flash the model takes."""
    facts: Dict[str, Any] = {"delegate": task.get("delegate")}
    if hasattr(interp, "arena_used_bytes"):  # edge_runtime.micro_backend.MicroInterpreter
        facts.update(arena_bytes=interp.arena_used_bytes, arena_size=interp.arena_size)
    return facts


def profile_task(task: Dict[str, Any]) -> Dict[str, Any]:
    """Per-operator times of one model at one thread count (benchmarks.profile)."""
    from edgevision.benchmarks.profile import profile_model
    from edgevision.edge_runtime.interpreter import resolve_backend

    path = Path(task["model"])
    backend = resolve_backend(task.get("backend", "auto"))
    stage("profile")

    def opener(model: bytes, name: str):
        return open_interpreter(model, task["threads"], backend, name, task.get("delegate"), task.get("arena_size"))

    return profile_model(_read_model(path), task["threads"], task["runs"], task["warmup"], opener, path.name)


def keras_task(task: Dict[str, Any]) -> Dict[str, Any]:
    """Latency of the Keras model through `predict` and through a direct `model(x, training=False)` call."""
    from edgevision.benchmarks import keras_timing

    return keras_timing.time_keras(task)


def eval_task(task: Dict[str, Any]) -> Dict[str, Any]:
    from edgevision.benchmarks import evaluate

    return evaluate.evaluate_task(task)


def e2e_task(task: Dict[str, Any]) -> Dict[str, Any]:
    from edgevision.benchmarks import e2e

    return e2e.e2e_task(task)


TASKS: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
    "bench": bench_task,
    "profile": profile_task,
    "keras": keras_task,
    "eval": eval_task,
    "e2e": e2e_task,
}


def _dtype_name(dtype) -> str:
    import numpy as np

    return np.dtype(dtype).name


def _now_ns() -> int:
    import time

    return time.perf_counter_ns()


def main() -> int:
    with answer_channel() as out:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import faulthandler

        faulthandler.enable()  # a native crash still prints where Python was, for EDGEVISION_DEBUG users
        write_reply(out, _answer(sys.stdin.read()))
    return 0


def _answer(task_json: str) -> Dict[str, Any]:
    """The reply to one task; every failure becomes an answer the parent can show in one line."""
    try:
        task = json.loads(task_json)
        kind = task.get("kind")
        if kind not in TASKS:
            raise ValueError(f"unknown task kind {kind!r}; expected one of {sorted(TASKS)}")
        return {"ok": True, "result": TASKS[kind](task)}
    except Exception as e:
        from edgevision.errors import EdgeVisionError

        if os.environ.get("EDGEVISION_DEBUG"):
            import traceback

            traceback.print_exc()
        message = str(e) if isinstance(e, EdgeVisionError) else f"{type(e).__name__}: {e}"
        return {"ok": False, "error": message, "error_type": type(e).__name__}

if __name__ == "__main__":
    sys.exit(main())
