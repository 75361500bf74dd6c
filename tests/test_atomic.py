"""Atomic writes keep the mode an ordinary write would give (0666 less the umask), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat

from edgevision.atomic import write_bytes


def test_atomic_write_keeps_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        target = write_bytes(tmp_path / "model.tflite", b"x")
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
        os.umask(0o022)
        write_bytes(target, b"y")  # replacing a file gives the new file the same rule
        assert stat.S_IMODE(target.stat().st_mode) == 0o644 and target.read_bytes() == b"y"
    finally:
        os.umask(old)
