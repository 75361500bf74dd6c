"""Atomic file output: a reader never sees a half-written file, and a crash never destroys the old one.

Measured here: Keras `save()` writes in place, and a kill -9 during a save left a corrupt model and lost
the previous good one. So everything edgevision writes goes to a temporary file in the same directory
(same filesystem, so the rename is atomic), is fsync'ed, and then replaces the target with `os.replace`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

from edgevision.errors import WriteError

PathLike = Union[str, os.PathLike]
#: Temporary files are named `.<target>.<TMP_MARK><pid>.<random><suffix>`: a process killed before it could
#: clean up leaves one behind, and the next write into that folder removes those whose process is gone.
TMP_MARK = "edgevision-tmp-"
#: Errors that mean "this place cannot take the file", as opposed to a bug in the writer.
DISK_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG}


@contextlib.contextmanager
def atomic_path(target: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` atomically.

    Use it for writers that want a file name (Keras `save`, OpenCV's VideoWriter, matplotlib):
    `suffix` keeps the extension those writers look at. On an exception the temporary file is removed
    and `target` is left exactly as it was.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{TMP_MARK}{os.getpid()}.",
                                   suffix=suffix or target.suffix, dir=target.parent)
    except OSError as e:  # read-only, full or forbidden: say so now, naming the target, not the temporary
        raise write_error(target, e) from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        _chmod_like_a_new_file(tmp_path)
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except OSError as e:
        if isinstance(e, WriteError) or e.errno not in DISK_ERRORS:
            raise
        raise write_error(target, e) from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def check_writable(target: PathLike) -> None:
    """WriteError now, naming `target`, if its folder cannot take a new file (read-only, forbidden, or no free
    inode or block at all): for commands whose output comes at the end of a long run."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=f".{target.name}.{TMP_MARK}{os.getpid()}.", dir=target.parent) as f:
            f.write(b"\0")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise write_error(target, e) from e


def write_error(target: Path, error: OSError) -> WriteError:
    """A one-line WriteError naming the target and the reason (not the temporary file the OS complained of)."""
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
              errno.EROFS: "the file system is read-only"}.get(error.errno, error.strerror or str(error))
    try:
        kept = f"; the existing {target.name} is unchanged" if target.is_file() else ""
    except OSError:
        kept = ""
    out = WriteError(f"cannot write {target}: {reason}{kept}")
    out.errno = error.errno
    return out


def remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporary files that killed edgevision processes left in `folder` (never a live one's)."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            pid = _temporary_owner(entry.name)
            if pid is not None and not pid_alive(pid) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _temporary_owner(name: str) -> Optional[int]:
    """The pid in a temporary file's name, or None for any other file."""
    if not name.startswith(".") or TMP_MARK not in name:
        return None
    digits = name.rsplit(TMP_MARK, 1)[1].split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but belongs to someone else
        return True
    return True


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


def write_figure(target: PathLike, fig, **savefig_options) -> Path:
    """A matplotlib figure as a PNG at `target`, atomically; the figure is closed either way (pyplot keeps every
    open figure alive otherwise)."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(target, ".png") as tmp:
            fig.savefig(tmp, format="png", **savefig_options)
    finally:
        plt.close(fig)
    return Path(target)


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
