"""Reading a user-named file safely: a regular file of bounded size, or a clear error.

`Path.read_bytes()` trusts the path: `/dev/zero` given as an image read until memory ran out, and a FIFO
given as a model or an image blocked for ever waiting for a writer. Every reader of models, images, labels
and JSON settings goes through `read_regular_file`, which checks the file type and size before reading,
opens without blocking, and never reads more than its limit even when the file grows meanwhile.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Type

from edgevision.errors import EdgeVisionError

MIB = 1024 * 1024
#: Largest model file read: edge image classifiers are a few MB to a few hundred; a bigger file is far more
#: likely a wrong path than a model, and would be held in memory whole.
MAX_MODEL_BYTES = int(os.environ.get("EDGEVISION_MAX_MODEL_BYTES", 512 * MIB))


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size_text(n: int) -> str:
    return f"{n / MIB:.1f} MB" if n >= MIB else f"{n} bytes"


def read_regular_file(path, max_bytes: int, what: str, error: Type[EdgeVisionError] = EdgeVisionError) -> bytes:
    """The bytes of `path`, which must be a regular file of at most `max_bytes`; `error` (one line) otherwise.

    `what` names the file in messages ("image", "model", "labels file"). The type and size are checked on
    the open descriptor (so a path swapped between a check and the read cannot slip through), and the read
    stops one byte past the limit, so a file that grows while it is read is refused rather than followed.
    """
    path = Path(path)
    check_regular_file(path, what, error)  # before opening: opening some devices (a serial port, a tape) acts
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before fstat could refuse it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as e:
        raise error(f"{what} {path}: no such file") from e
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {path} is {_kind(info.st_mode)}; expected a regular file")
        if info.st_size > max_bytes:
            raise error(f"{what} {path} is {_size_text(info.st_size)}, more than the {_size_text(max_bytes)} "
                        "limit; is it the right file?")
        data = _read_at_most(fd, max_bytes + 1, path, what, error)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{what} {path} grew past {_size_text(max_bytes)} while it was read; refusing it")
    return data


def check_regular_file(path, what: str, error: Type[EdgeVisionError] = EdgeVisionError) -> os.stat_result:
    """`error` unless `path` is an existing regular file (for readers that open it themselves, e.g. a zip)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError as e:
        raise error(f"{what} {path}: no such file") from e
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from e
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is {_kind(info.st_mode)}; expected a regular file")
    return info


def _read_at_most(fd: int, limit: int, path: Path, what: str, error) -> bytes:
    chunks, total = [], 0
    while total < limit:
        try:
            chunk = os.read(fd, min(limit - total, 8 * MIB))
        except OSError as e:
            raise error(f"cannot read {what} {path}: {e.strerror or e}") from e
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)
