"""Sacrificial child processes: work that may crash or hang the interpreter runs in a process of its own.

A segfault in native code cannot be caught in Python, and a hung `allocate_tensors()` cannot be interrupted,
so the model verifier (edge_runtime.safety) and the benchmark (benchmarks.runner) both hand such work to a
fresh Python process and read its answer. This module is both sides of that protocol:

- Parent: `run_child(command, data, timeout_s)` starts the command in a process group of its own, writes
  `data` on its stdin and waits. It returns a `ChildRun` holding either the child's JSON reply or a
  `ChildFailure` that says how it went wrong (timed out, could not start, died of a signal, exited without
  an answer). The caller words the failure for its user: the advice differs (a verification timeout is set
  by an environment variable, a benchmark's by --timeout).
- Child: `stage(name)` marks progress on stderr, so that the parent can say in which stage a child died;
  `answer_channel()` keeps native libraries' chatter on fd 1 off the reply; `write_reply` sends the reply.

The reply is one JSON object on the last stdout line that starts with "{". Nothing here imports TensorFlow:
the device needs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional, Sequence, TextIO

#: A child's progress marker on stderr: "stage: load".
STAGE_PREFIX = "stage: "
#: How long to wait for a killed child's pipes to close. Only a grandchild that left the process group can
#: hold them open, and its output is not worth hanging the parent for.
_DRAIN_S = 5.0

TIMEOUT = "timeout"
CANNOT_START = "cannot-start"
SIGNAL = "signal"
NO_ANSWER = "no-answer"


@dataclass(frozen=True)
class ChildFailure:
    """Why a child gave no answer. `kind` is TIMEOUT, CANNOT_START, SIGNAL or NO_ANSWER."""

    kind: str
    program: str
    #: The time limit it ran under.
    seconds: float
    #: The OS's reason, for CANNOT_START.
    reason: str = ""
    #: Exit status (negative: the signal that killed it); None when it timed out or never started.
    status: Optional[int] = None
    #: The last stage the child marked on stderr, if any.
    stage: Optional[str] = None
    #: The last other line it wrote to stderr (often the error that ended it), if any.
    last_line: Optional[str] = None

    @property
    def signal_name(self) -> str:
        """"SIGSEGV" for a child killed by signal 11 ("signal 99" for one without a name)."""
        if self.status is None or self.status >= 0:
            return ""
        return signal_name(-self.status)

    @property
    def out_of_memory(self) -> bool:
        """SIGKILL, which is what the kernel's out-of-memory killer sends."""
        return self.status == -signal.SIGKILL

    @property
    def while_stage(self) -> str:
        """" while invoke" when the child had marked a stage, else ""."""
        return f" while {self.stage}" if self.stage else ""


@dataclass(frozen=True)
class ChildRun:
    """What a child process gave: its JSON reply, or the failure that took its place."""

    #: Empty when the child failed.
    reply: Dict[str, Any] = field(default_factory=dict)
    failure: Optional[ChildFailure] = None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def child_env() -> Dict[str, str]:
    """This process's environment, with TensorFlow Lite's native logging quiet unless the user set it."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}


# --- parent side ---------------------------------------------------------------------------------
def run_child(command: Sequence[str], data: bytes, timeout_s: float) -> ChildRun:
    """Run `command` with `data` on its stdin for at most `timeout_s` seconds; its reply or its failure."""
    program = str(command[0]) if command else "(no command)"
    try:
        proc = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=child_env(), start_new_session=True)
    except OSError as e:
        return ChildRun(failure=ChildFailure(CANNOT_START, program, timeout_s, reason=e.strerror or str(e)))
    stdout, stderr, timed_out = _communicate(proc, data, timeout_s)
    err_text = stderr.decode("utf-8", errors="replace")
    if timed_out:
        return ChildRun(failure=_failure(TIMEOUT, program, timeout_s, None, err_text))
    if proc.returncode < 0:
        return ChildRun(failure=_failure(SIGNAL, program, timeout_s, proc.returncode, err_text))
    reply = parse_reply(stdout.decode("utf-8", errors="replace"))
    if reply is None:
        return ChildRun(failure=_failure(NO_ANSWER, program, timeout_s, proc.returncode, err_text))
    return ChildRun(reply=reply)


def _communicate(proc: subprocess.Popen, data: bytes, timeout_s: float):
    """(stdout, stderr, timed_out). A child that overstays, or a parent interrupted by Ctrl-C, takes the
    child's whole process group down with it: nothing it started is left running."""
    try:
        stdout, stderr = proc.communicate(data, timeout=timeout_s)
        return stdout, stderr, False
    except subprocess.TimeoutExpired as e:
        _kill_group(proc)
        try:
            stdout, stderr = proc.communicate(timeout=_DRAIN_S)
        except subprocess.TimeoutExpired:
            stdout, stderr = e.output or b"", e.stderr or b""
        return stdout, stderr, True
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own group (start_new_session)
    except (AttributeError, ProcessLookupError, PermissionError):
        proc.kill()  # no process groups here (Windows), or the group is already gone


def _failure(kind: str, program: str, seconds: float, status: Optional[int], stderr: str) -> ChildFailure:
    return ChildFailure(kind, program, seconds, status=status, stage=last_stage(stderr),
                        last_line=last_line(stderr))


def parse_reply(stdout: str) -> Optional[Dict[str, Any]]:
    """The JSON object on the last stdout line that starts with "{" (lines before it are native chatter)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                reply = json.loads(line)
            except ValueError:
                return None
            return reply if isinstance(reply, dict) else None
    return None


def last_stage(stderr: str) -> Optional[str]:
    stages = [line[len(STAGE_PREFIX):] for line in stderr.splitlines() if line.startswith(STAGE_PREFIX)]
    return stages[-1] if stages else None


def last_line(stderr: str) -> Optional[str]:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith(STAGE_PREFIX)]
    return lines[-1] if lines else None


# --- child side ----------------------------------------------------------------------------------
def stage(name: str) -> None:
    """Mark the stage the child is in, so that the parent can say where it died."""
    sys.stderr.write(f"{STAGE_PREFIX}{name}\n")
    sys.stderr.flush()


@contextlib.contextmanager
def answer_channel() -> Iterator[TextIO]:
    """The child's real stdout, for the reply alone.

    Native libraries print to fd 1 (XNNPACK's "INFO: Created TensorFlow Lite XNNPACK delegate"), so fd 1 and
    sys.stdout point at stderr from here on, for the rest of the process (native code can still print as it
    shuts down), and the reply goes to a private duplicate of the old fd 1. Only for a child's main().
    """
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with os.fdopen(answer_fd, "w") as out:
        yield out


def write_reply(out: TextIO, reply: Dict[str, Any]) -> None:
    out.write(json.dumps(reply) + "\n")
    out.flush()
