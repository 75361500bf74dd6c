"""External TFLite delegates (`--delegate PATH[:key=value,...]`): Coral's Edge TPU library, vendor NPU libraries.

An external delegate is a shared library exporting `tflite_plugin_create_delegate` and
`tflite_plugin_destroy_delegate`; the interpreter's `load_delegate(path, options)` opens it and hands the
pointer to `Interpreter(experimental_delegates=[...])`, which gives the delegate the operators it claims and
runs the rest on the CPU. Loading a library runs its code, and a delegate can crash on a model, so a model
with a delegate is verified in a child process (edge_runtime/safety.py) with the same library first; this
module is what both sides call.

What goes wrong, each said in one line: the file does not exist, it is not a shared library, it is a library
but not a delegate (no such symbols: libm, libc), or the delegate refuses to start (its own message, such as
no Edge TPU attached).
"""

from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from edgevision.errors import ModelError, UsageError, first_line

#: The two functions every external delegate exports (TFLite's external_delegate_interface.h).
ENTRY_POINTS = ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")
_OPTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*=")


@dataclass(frozen=True)
class DelegateSpec:
    """A library (a path, or a bare name the dynamic loader searches, as `libedgetpu.so.1`) and its options."""

    library: str
    options: Tuple[Tuple[str, str], ...] = field(default=())

    @property
    def options_dict(self) -> Dict[str, str]:
        return dict(self.options)

    def __str__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return f"{self.library}:{opts}" if opts else self.library


def parse_delegate(text: Optional[str]) -> Optional[DelegateSpec]:
    """'PATH' or 'PATH:key=value,key=value' -> DelegateSpec (None for None). UsageError when malformed.

    The options start at the first ':' followed by `key=`, so option values may hold colons
    (the Edge TPU's `device=usb:0`), and so may a path, as long as no part after a colon looks like `key=`.
    """
    if text is None:
        return None
    text = str(text).strip()
    library, options = text, ""
    for i, char in enumerate(text):
        if char == ":" and _OPTION.match(text[i + 1:]):
            library, options = text[:i], text[i + 1:]
            break
    if not library:
        raise UsageError(f"--delegate {text!r}: give the delegate's shared library, e.g. libedgetpu.so.1 or "
                         "/path/libdelegate.so:key=value")
    pairs = []
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--delegate {text!r}: options are key=value pairs separated by commas; got {item!r}")
        pairs.append((key.strip(), value.strip()))
    return DelegateSpec(library, tuple(pairs))


def as_delegate(value) -> Optional[DelegateSpec]:
    """A DelegateSpec, its text, or None -> DelegateSpec or None; the library's path checked (no loading)."""
    spec = value if isinstance(value, DelegateSpec) or value is None else parse_delegate(value)
    if spec is not None:
        check_library(spec)
    return spec


def check_library(spec: DelegateSpec) -> None:
    """The checks that need not load anything: a path (anything with a '/') must be a readable file."""
    if os.sep in spec.library or spec.library.startswith("."):
        if not os.path.exists(spec.library):
            raise ModelError(f"--delegate {spec.library}: no such file")
        if not os.path.isfile(spec.library):
            raise ModelError(f"--delegate {spec.library}: not a file; give the delegate's shared library (.so)")


def load_delegate(spec: DelegateSpec, backend: str):
    """The loaded delegate for `backend`'s interpreter, or a one-line ModelError saying why not."""
    check_library(spec)
    if backend == "tflite-micro":
        raise UsageError("--delegate needs a LiteRT interpreter; TensorFlow Lite Micro has no delegates "
                         "(use --backend ai-edge-litert or tflite-runtime)")
    try:
        library = ctypes.CDLL(spec.library)
    except OSError as e:
        raise ModelError(f"--delegate {spec.library}: cannot load it as a shared library ({first_line(e)})") from e
    missing = [name for name in ENTRY_POINTS if not hasattr(library, name)]
    if missing:
        raise ModelError(f"--delegate {spec.library}: not a TensorFlow Lite delegate (it does not export "
                         f"{' or '.join(missing)})")
    module = _interpreter_module(backend)
    from edgevision.native_log import quiet_native_stderr

    try:
        with quiet_native_stderr():
            return module.load_delegate(spec.library, spec.options_dict or None)
    except (ValueError, RuntimeError, OSError) as e:
        reason = first_line(e, skip=("Failed to load delegate from",))
        raise ModelError(f"--delegate {spec.library}: the delegate did not start ({reason}); is its hardware "
                         "attached and its driver installed?") from e


def _interpreter_module(backend: str):
    import importlib

    from edgevision.edge_runtime.interpreter import BACKENDS

    return importlib.import_module(BACKENDS[backend][0])


def child_args(spec: Optional[DelegateSpec]) -> list:
    """The verification child's command-line arguments that recreate `spec` there."""
    return [] if spec is None else ["--delegate", str(spec)]
