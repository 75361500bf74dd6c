"""Keep TensorFlow's native start-up chatter off the user's terminal, without hiding real messages.

TensorFlow 2.21 logs from C++ through absl before its logging is initialised, which ignores
TF_CPP_MIN_LOG_LEVEL: every `edgevision convert` printed a dozen lines (oneDNN notes, "could not find cuda
drivers", "failed call to cuInit", the converter's "fully_quantize: ..." summary) around its one-line
errors. So while the conversion runs, file descriptor 2 goes to a temporary file and Python's own stderr
(progress, warnings, our errors) to a duplicate of the real one; afterwards every captured line that is not
known noise is replayed, so nothing of substance is lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator, List

NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]0000 \d\d:\d\d:\d\d"
    r"|E0000 \S+ +\d+ cuda_"
    r"|fully_quantize: \d"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|To enable the following instructions:.*rebuild TensorFlow"
    r"|Estimated count of arithmetic ops"
    r"|$)"
)


def is_noise(line: str) -> bool:
    return bool(NOISE.match(line.strip()))


@contextlib.contextmanager
def captured_native_stderr(lines: List[str]) -> Iterator[None]:
    """What native code writes to file descriptor 2 while the block runs, appended to `lines`, none of it shown
    (TFLite Micro, for one, reports its errors only there)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreters): nothing to read
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines.extend(capture.read().decode("utf-8", "replace").splitlines())


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Native chatter captured, Python's own stderr still shown; what was not noise is replayed afterwards."""
    try:
        sys.stderr.flush()
        python_stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreters): do nothing
        yield
        return
    lines: List[str] = []
    old_stderr = sys.stderr
    try:
        with captured_native_stderr(lines):
            sys.stderr = python_stderr
            try:
                yield
            finally:
                python_stderr.flush()
                sys.stderr = old_stderr
    finally:
        python_stderr.close()
    kept = [line for line in lines if not is_noise(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
        sys.stderr.flush()
