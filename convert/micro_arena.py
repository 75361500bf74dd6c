"""Run a converted model in TFLite Micro's own Python interpreter and measure the arena it needs.

TFLite Micro allocates every tensor, kernel state and scratch buffer from one arena the firmware gives it, so
the arena size is what a microcontroller's RAM must hold. Its Python interpreter does not report the size it
needed (print_allocations lists what its recording allocator handed out, not the allocator's own objects),
and an arena that is too small can crash it instead of failing. So each try runs in a forked child, and the
smallest arena that allocates is found by bisection, then invoked once to prove it runs.

Everything here runs in a child process (`python -m edgevision.convert.micro_arena MODEL`), so a crash in the
interpreter is an error message, never the end of `convert`.

What a real microcontroller differs in: this is a 64-bit host, whose pointers (in every tensor and node
record) are twice a Cortex-M's, and the recording allocator keeps a little bookkeeping of its own, so the
figure is slightly more than a 32-bit build needs with the reference kernels; optimised kernels (CMSIS-NN)
may ask for extra scratch memory, which the header's note leaves room for.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from edgevision.errors import ConversionError

# Sizes tried until one allocates: small models settle on the first, MobileNet-sized ones on a later one.
_TRIAL_ARENAS = (1 << 20, 16 << 20, 256 << 20)
_ALIGN = 16  # TFLite Micro aligns its allocations to 16 bytes; so does the header's arena
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'")
_RECORDED = re.compile(r"Arena allocation total (\d+) bytes")
TIMEOUT_S = 600


@dataclass(frozen=True)
class MicroRun:
    """What TFLite Micro's interpreter did with the model."""

    arena_bytes: int  # the smallest arena it allocated the model in (rounded up to 16 bytes), then invoked
    recorded_bytes: int  # what its recording allocator reported handing out (the model's own allocations)
    version: str  # the tflite-micro package
    output: List[int]  # the output for the probe input (a seeded random image)
    litert_max_diff: Optional[int] = None  # largest difference from LiteRT's output on the same input, in codes

    def to_dict(self) -> dict:
        return asdict(self)


def installed() -> bool:
    return importlib.util.find_spec("tflite_micro") is not None


def run(model: bytes) -> Optional[MicroRun]:
    """Load, measure and invoke `model` in TFLite Micro (in a child process); None when it is not installed.
    ConversionError with TFLite Micro's reason when it cannot run the model."""
    if not installed():
        return None
    with tempfile.TemporaryDirectory(prefix="edgevision-micro-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        try:
            done = subprocess.run([sys.executable, "-m", "edgevision.convert.micro_arena", str(path)],
                                  capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"TFLite Micro's interpreter took over {TIMEOUT_S} s to allocate and run "
                                  "the model; nothing was written") from None
    answer = _last_json(done.stdout)
    if answer is None or "error" in answer:
        reason = answer["error"] if answer else (done.stderr.strip().splitlines() or ["it crashed"])[-1]
        raise ConversionError(f"TFLite Micro cannot run the model: {reason}; nothing was written")
    result = MicroRun(**answer)
    return MicroRun(**{**answer, "litert_max_diff": _litert_diff(model, result.output)})


def _last_json(stdout: str) -> Optional[dict]:
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def probe_input(shape, dtype):
    """The seeded random image both interpreters run: any input allocates the same arena."""
    import numpy as np

    info = np.iinfo(dtype)
    return np.random.default_rng(0).integers(info.min, info.max + 1, size=tuple(shape)).astype(dtype)


def _litert_diff(model: bytes, micro_output: List[int]) -> Optional[int]:
    """How far LiteRT's answer on the probe input is from TFLite Micro's, in output codes (their kernels round
    differently, so a code or two is expected; more would mean one of them runs the file wrongly)."""
    import numpy as np

    from edgevision.edge_runtime.interpreter import make_interpreter

    interpreter = make_interpreter(model)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], probe_input(inp["shape"], inp["dtype"]))
    interpreter.invoke()
    litert = interpreter.get_tensor(out["index"]).astype(np.int64).ravel()
    micro = np.asarray(micro_output, dtype=np.int64).ravel()
    return int(np.abs(litert - micro).max()) if litert.shape == micro.shape else None


# --- the child process ------------------------------------------------------------------------------------


def _attempt(model: bytes, arena: int, invoke: bool) -> Tuple[bool, str, Optional[list]]:
    """(allocated and, if asked, invoked; TFLite Micro's log; the output) for one arena size, in a fork."""
    log_r, log_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(log_r), os.close(out_r)
        os.dup2(log_w, 1), os.dup2(log_w, 2)
        os._exit(_child(model, arena, invoke, out_w))
    os.close(log_w), os.close(out_w)
    log, output = _read_all(log_r), _read_all(out_r)
    _, status = os.waitpid(pid, 0)
    ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return ok, log.decode(errors="replace"), json.loads(output) if ok and output else None


def _child(model: bytes, arena: int, invoke: bool, out_fd: int) -> int:
    try:
        from tflite_micro.python.tflite_micro import runtime

        interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
        if invoke:
            details = interpreter.get_input_details(0)
            interpreter.set_input(probe_input(details["shape"], details["dtype"]), 0)
            interpreter.invoke()
            os.write(out_fd, json.dumps(interpreter.get_output(0).ravel().tolist()).encode())
            interpreter.print_allocations()
        return 0
    except Exception as e:  # noqa: BLE001 - any failure is an answer ("does not fit"), told by the exit code
        print(f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _first_fit(model: bytes) -> Tuple[int, str, list]:
    """The first trial arena that allocates and invokes, with its log and output; ConversionError if none."""
    log = ""
    for arena in _TRIAL_ARENAS:
        ok, log, output = _attempt(model, arena, invoke=True)
        if ok:
            return arena, log, output
        missing = sorted(set(_MISSING_OP.findall(log)))
        if missing:
            raise ConversionError(f"TFLite Micro has no kernel for {', '.join(missing)}")
    lines = [line for line in log.splitlines() if line.strip()]
    raise ConversionError(lines[0] if lines else "TFLite Micro's interpreter failed without a message")


def measure(model: bytes) -> dict:
    """The child's work: the smallest arena by bisection between what was recorded and what worked."""
    import tflite_micro

    arena, log, output = _first_fit(model)
    recorded = int(_RECORDED.search(log).group(1)) if _RECORDED.search(log) else 0
    lo, hi = max(recorded // _ALIGN - 1, 0), -(-arena // _ALIGN)  # in units of 16 bytes; lo never fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _attempt(model, mid * _ALIGN, invoke=False)[0]:
            hi = mid
        else:
            lo = mid
    ok, log, output = _attempt(model, hi * _ALIGN, invoke=True)  # the figure must run, not just allocate
    if not ok:
        raise ConversionError(f"TFLite Micro allocated the model in {hi * _ALIGN} bytes but could not invoke it")
    version = getattr(tflite_micro, "__version__", None) or _package_version()
    return {"arena_bytes": hi * _ALIGN, "recorded_bytes": recorded, "version": version, "output": output}


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tflite-micro")
    except PackageNotFoundError:
        return "unknown"


def main(argv: List[str]) -> int:
    try:
        answer = measure(Path(argv[0]).read_bytes())
    except ConversionError as e:
        answer = {"error": str(e)}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
