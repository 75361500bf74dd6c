"""Opening untrusted models without letting them crash or hang the user's process.

Corrupt model files crash the interpreter: the path-based loader segfaults on many of them, and even
ai-edge-litert's verified path (model bytes) segfaults on files that pass the flatbuffer verifier and then
crash in `allocate_tensors()`. A segfault cannot be caught in Python, so:

1. Cheap checks in-process first (empty, not a TFLite flatbuffer, truncated, buffers pointing past the end)
   so that most bad files fail fast with a precise message.
2. A model not yet known to be good is opened in a sacrificial child process (edge_runtime.child_process;
   `python -m edgevision.edge_runtime.safety`, bytes on stdin): load, allocate, check the signature, run once.
   A signal death or a timeout there becomes a one-line ModelError here.
3. The good verdict is cached by the file's SHA-256 (and the backend and its version), so the child costs
   once per model, not once per start. `trusted=True` skips the child altogether.

Run as a module, this file is the child: it reads a model on stdin and writes one JSON line on stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from edgevision.edge_runtime import child_process
from edgevision.errors import ModelError, first_line

#: Bump when the checks change, so that verdicts cached by an older edgevision are not trusted.
VERIFIER_VERSION = 1
#: Seconds a child may take to load, allocate and run a model once (a big model on a small board is slow).
DEFAULT_TIMEOUT_S = 60.0
TIMEOUT_ENV = "EDGEVISION_VERIFY_TIMEOUT"
CACHE_ENV = "EDGEVISION_CACHE_DIR"
# The smallest flatbuffer with a root table: root offset (4) + file identifier (4) + vtable + table.
_MIN_TFLITE_BYTES = 16
_MODEL_SUBGRAPHS = 2
_MODEL_BUFFERS = 4
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2

_child_runs = 0


def child_runs() -> int:
    """How many verification children this process has started (tests and benchmarks read it)."""
    return _child_runs


@dataclass(frozen=True)
class ModelSignature:
    """The input and output of an image classifier, as the interpreter reports them."""

    input_shape: Tuple[int, ...]  # (1, height, width, channels)
    input_dtype: str
    input_quantization: Optional[Tuple[float, int]]  # (scale, zero_point), None for float
    output_shape: Tuple[int, ...]  # (1, classes) or (1, 1, 1, classes)
    output_dtype: str
    output_quantization: Optional[Tuple[float, int]]
    #: Where it was read: "in-process" (check_signature here), "child" or "cache" (not part of the
    #: signature itself).
    source: str = field(default="in-process", compare=False)

    @property
    def num_classes(self) -> int:
        return int(self.output_shape[-1])

    @property
    def input_size(self) -> Tuple[int, int]:
        return int(self.input_shape[1]), int(self.input_shape[2])

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "ModelSignature":
        def quant(v):
            return None if v is None else (float(v[0]), int(v[1]))

        return cls(
            input_shape=tuple(int(v) for v in d["input_shape"]),
            input_dtype=str(d["input_dtype"]),
            input_quantization=quant(d["input_quantization"]),
            output_shape=tuple(int(v) for v in d["output_shape"]),
            output_dtype=str(d["output_dtype"]),
            output_quantization=quant(d["output_quantization"]),
            source=source,
        )


# --- in-process checks (pure Python, nothing handed to C++) ----------------------------------------
def precheck(data: bytes, name: str = "model") -> None:
    """Fail fast on files that are obviously not a complete TFLite model."""
    from edgevision.edge_runtime.metadata import _FlatBuffer, is_tflite

    if len(data) == 0:
        raise ModelError(f"{name}: the model file is empty")
    if not is_tflite(data):
        raise ModelError(
            f"{name}: not a TensorFlow Lite model ({_looks_like(data)}; a .tflite file carries the identifier "
            "TFL3 at bytes 4-8); pass a .tflite file made by `edgevision convert` or TFLiteConverter"
        )
    if len(data) < _MIN_TFLITE_BYTES:
        raise ModelError(f"{name}: the model file is only {len(data)} bytes; it is truncated")
    fb = _FlatBuffer(data)
    try:
        model = fb.root()
        subgraphs = fb.vector(model, _MODEL_SUBGRAPHS)
        if subgraphs is None or subgraphs[1] == 0:
            raise ModelError(f"{name}: the TFLite file has no subgraph (no computation to run)")
        if subgraphs[0] + 4 * subgraphs[1] > len(data):
            raise ModelError("corrupt TFLite file: the subgraph list runs past the end")
        buffers = fb.vector(model, _MODEL_BUFFERS)
        if buffers is not None:
            _check_buffers(fb, buffers, len(data))
    except ModelError as e:
        message = str(e)
        if message.startswith(name + ":"):
            raise
        detail = message.replace("corrupt TFLite file: ", "")
        raise ModelError(f"{name}: the TFLite file is truncated or corrupt ({detail})") from e


#: Leading bytes of files people mistake for a model, and what to call them (never echo the bytes themselves).
_KNOWN_KINDS = ((b"PK\x03\x04", "it is a zip archive, such as a .keras model"),
                (b"\x89HDF", "it is an HDF5 file, such as a legacy Keras .h5 model"),
                (b"\x89PNG", "it is a PNG image"), (b"\xff\xd8\xff", "it is a JPEG image"))


def _looks_like(data: bytes) -> str:
    for magic, kind in _KNOWN_KINDS:
        if data.startswith(magic):
            return kind
    head = bytes(data[:256])
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "it is a text file"
    return "its header is not a TFLite flatbuffer's"


def _check_buffers(fb, buffers, size: int) -> None:
    """Weights are the bulk of a model and sit at its end: a truncated file has buffers past the end."""
    start, count = buffers
    if start + 4 * count > size:
        raise ModelError("corrupt TFLite file: the buffer list runs past the end")
    for i in range(count):
        buffer = fb.table_at(start, i)
        offset = fb.scalar(buffer, _BUFFER_OFFSET, "<Q")
        if offset > 1:  # weights stored after the flatbuffer (models over 2 GB), addressed by offset/size
            if offset + fb.scalar(buffer, _BUFFER_SIZE, "<Q") > size:
                raise ModelError("corrupt TFLite file: a weight buffer runs past the end")
            continue
        vec = fb.vector(buffer, _BUFFER_DATA)
        if vec is not None and vec[0] + vec[1] > size:
            raise ModelError("corrupt TFLite file: a weight buffer runs past the end")


def check_signature(interpreter, name: str = "model") -> ModelSignature:
    """One image input [1, H, W, 3 or 1] and one classifier output [1, N] or [1, 1, 1, N], or ModelError."""
    from edgevision.edge_runtime.quantization import tensor_quantization

    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    expected_in = "one image input of shape [1, height, width, 3]"
    if len(inputs) != 1:
        raise ModelError(f"{name}: the model has {len(inputs)} inputs; an image classifier has {expected_in}")
    detail = inputs[0]
    shape = [int(v) for v in detail["shape"]]
    if len(shape) != 4:
        raise ModelError(
            f"{name}: the model's input has shape {shape} (rank {len(shape)}); an image classifier has {expected_in}"
        )
    if shape[0] != 1 or shape[3] not in (1, 3) or min(shape) < 1:
        raise ModelError(
            f"{name}: the model's input has shape {shape}; expected [1, height, width, 3] "
            "(batch 1, 3 colour channels; 1 for grayscale)"
        )
    in_quant = tensor_quantization(detail, "input", name)
    if len(outputs) != 1:
        raise ModelError(
            f"{name}: the model has {len(outputs)} outputs; an image classifier has one output of class scores"
        )
    out = outputs[0]
    out_shape = [int(v) for v in out["shape"]]
    if not (len(out_shape) in (2, 4) and all(v == 1 for v in out_shape[:-1]) and out_shape[-1] >= 2):
        raise ModelError(
            f"{name}: the model's output has shape {out_shape}; an image classifier outputs [1, classes] "
            "(or [1, 1, 1, classes]) with at least 2 classes"
        )
    out_quant = tensor_quantization(out, "output", name)
    return ModelSignature(
        input_shape=tuple(shape),
        input_dtype=_dtype_name(detail["dtype"]),
        input_quantization=None if in_quant is None else (in_quant.scale, in_quant.zero_point),
        output_shape=tuple(out_shape),
        output_dtype=_dtype_name(out["dtype"]),
        output_quantization=None if out_quant is None else (out_quant.scale, out_quant.zero_point),
    )


def _dtype_name(dtype) -> str:
    import numpy as np

    return np.dtype(dtype).name


# --- the verdict cache ---------------------------------------------------------------------------
def cache_dir() -> Path:
    """$EDGEVISION_CACHE_DIR, else $XDG_CACHE_HOME/edgevision, else ~/.cache/edgevision."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgevision"


def verdict_path(sha256: str, backend: str, version: str) -> Path:
    safe_version = "".join(c if c.isalnum() or c in ".-_" else "_" for c in version)
    return cache_dir() / "verified" / f"{sha256}.{backend}-{safe_version}.v{VERIFIER_VERSION}.json"


def _read_verdict(path: Path, sha256: str) -> Optional[ModelSignature]:
    try:
        doc = json.loads(path.read_text())
        if doc.get("verdict") != "good" or doc.get("sha256") != sha256:
            return None
        return ModelSignature.from_dict(doc["signature"], source="cache")
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # missing or damaged cache entries just mean "verify again"


def _write_verdict(path: Path, sha256: str, backend: str, version: str, signature: ModelSignature) -> None:
    from edgevision.atomic import write_json

    doc = {
        "verdict": "good",
        "sha256": sha256,
        "backend": backend,
        "backend_version": version,
        "verifier": VERIFIER_VERSION,
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "signature": signature.to_dict(),
    }
    try:
        write_json(path, doc)
    except OSError:
        pass  # a read-only home only costs a child process per start, never a failure


# --- the child process -----------------------------------------------------------------------------
def child_command(backend: str, name: str, delegate=None, arena_size: Optional[int] = None) -> List[str]:
    from edgevision.edge_runtime.delegates import child_args

    arena = [] if arena_size is None else ["--arena-size", str(arena_size)]
    return [sys.executable, "-m", "edgevision.edge_runtime.safety", "--backend", backend, "--name", name,
            *child_args(delegate), *arena]


def run_child(command: Sequence[str], data: bytes, name: str, timeout: float) -> dict:
    """Run a verification child with the model on stdin; its JSON verdict, or ModelError if it died or hung."""
    global _child_runs
    _child_runs += 1
    run = child_process.run_child(command, data, timeout)
    if run.failure is not None:
        raise ModelError(_failure_message(run.failure, name))
    return run.reply


def _failure_message(failure: child_process.ChildFailure, name: str) -> str:
    """What a verification child's failure means for the model, in one line."""
    if failure.kind == child_process.TIMEOUT:
        return (f"{name}: the interpreter did not finish loading this model within {failure.seconds:g} s "
                f"(it hangs on it); the file is corrupt, or set {TIMEOUT_ENV} to allow more time for a very "
                "large model")
    if failure.kind == child_process.CANNOT_START:
        return f"{name}: cannot start the model-verification process ({failure.reason})"
    if failure.kind == child_process.SIGNAL:
        hint = " (out of memory?)" if failure.out_of_memory else ""
        return (f"{name}: the interpreter crashed ({failure.signal_name}){hint} while loading this model; "
                "it is corrupt or not a TFLite model")
    return (f"{name}: the model-verification process failed (exit status {failure.status}: "
            f"{failure.last_line or 'no message'})")


def _timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        from edgevision.errors import UsageError

        raise UsageError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_model(model_bytes: bytes, name: str = "model", backend: str = "auto",
                 timeout: Optional[float] = None, sha256: Optional[str] = None, delegate=None,
                 arena_size: Optional[int] = None) -> ModelSignature:
    """Make sure opening `model_bytes` in this process is safe, and return its classifier signature.

    Cheap in-process checks, then, unless a good verdict for these exact bytes and this backend version is
    cached, a child process that loads, allocates, checks and runs the model once. (For trusted models the
    caller runs `precheck` and `check_signature` itself and skips this.) With a delegate (a
    delegates.DelegateSpec) the child loads it too, and nothing is cached: the library can change under the
    same path; so is a fixed TFLite Micro arena, which is part of whether the model opens.
    """
    from edgevision.edge_runtime.interpreter import backend_version, resolve_backend

    precheck(model_bytes, name)
    backend = resolve_backend(backend)
    version = backend_version(backend)
    sha256 = sha256 or sha256_of(model_bytes)
    path = verdict_path(sha256, backend, version)
    cacheable = delegate is None and arena_size is None
    cached = _read_verdict(path, sha256) if cacheable else None
    if cached is not None:
        return cached
    command = child_command(backend, name, delegate, arena_size)
    verdict = run_child(command, model_bytes, name, timeout or _timeout())
    if not verdict.get("ok"):
        raise ModelError(str(verdict.get("error") or f"{name}: the model failed verification"))
    signature = ModelSignature.from_dict(verdict["signature"], source="child")
    if cacheable:
        _write_verdict(path, sha256, backend, version, signature)
    return signature


# --- child side ------------------------------------------------------------------------------------
def _child_verify(data: bytes, backend: str, name: str, delegate=None, arena_size: Optional[int] = None) -> dict:
    import numpy as np

    from edgevision.edge_runtime.interpreter import make_interpreter
    from edgevision.errors import EdgeVisionError

    try:
        interpreter = make_interpreter(data, num_threads=1, backend=backend, name=name, delegate=delegate,
                                       arena_size=arena_size)
        signature = check_signature(interpreter, name)
        # Run it once: a model can also be broken in a way that only shows when its kernels execute.
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
        try:
            interpreter.invoke()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{name}: the interpreter cannot run this model ({first_line(e)})") from e
        return {"ok": True, "signature": signature.to_dict()}
    except EdgeVisionError as e:
        return {"ok": False, "error": str(e)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Verify a TFLite model read from stdin (used in a child process).")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--name", default="model")
    parser.add_argument("--delegate", default=None)
    parser.add_argument("--arena-size", type=int, default=None)
    parser.add_argument("model", nargs="?", help="model file (default: read the bytes from stdin)")
    args = parser.parse_args(argv)
    with child_process.answer_channel() as out:  # native chatter on fd 1 must not end up in the verdict
        data = Path(args.model).read_bytes() if args.model else sys.stdin.buffer.read()
        from edgevision.edge_runtime.delegates import parse_delegate

        reply = _child_verify(data, args.backend, args.name, parse_delegate(args.delegate), args.arena_size)
        child_process.write_reply(out, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
