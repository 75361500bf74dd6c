"""Atomic file output: a reader never sees a half-written file, and a crash never destroys the old one.

Measured here: Keras `save()` writes in place, and a kill -9 during a save left a corrupt model and lost
the previous good one. So everything edgevision writes goes to a temporary file in the same directory
(same filesystem, so the rename is atomic), is fsync'ed, and then replaces the target with `os.replace`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_path(target: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` atomically.

    Use it for writers that want a file name (Keras `save`, OpenCV's VideoWriter, matplotlib):
    `suffix` keeps the extension those writers look at. On an exception the temporary file is removed
    and `target` is left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        _chmod_like_a_new_file(tmp_path)
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def _chmod_like_a_new_file(path: Path) -> None:
    """mkstemp makes files 0600; an ordinary write makes them 0666 less the umask, which is what users expect
    of a model or a report they share (the umask is read by setting it, so it is set straight back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, 0o666 & ~umask)


def write_bytes(target: PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: PathLike, text: str) -> Path:
    return write_bytes(target, text.encode("utf-8"))


def write_json(target: PathLike, obj, indent: int = 2) -> Path:
    return write_text(target, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def _fsync_file(path: Path) -> None:
    if not path.exists():
        return
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
