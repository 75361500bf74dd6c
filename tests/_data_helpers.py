"""Tiny synthetic image folders for the data, training and inference tests (real files, written with OpenCV)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

# Each class is a colour with a stripe pattern, so even a few steps of training separate them.
_CLASS_COLOURS = [(40, 40, 220), (40, 200, 40), (220, 60, 40), (30, 200, 220), (200, 40, 200)]  # BGR
_FORMATS = (".jpg", ".png", ".bmp")


def synthetic_image(label: int, index: int, size=(40, 48), seed: int = 0) -> np.ndarray:
    """uint8 BGR image for class `label`; `index` varies noise and stripe phase."""
    rng = np.random.default_rng([seed, label, index])
    h, w = size
    img = np.empty((h, w, 3), np.float32)
    img[:] = _CLASS_COLOURS[label % len(_CLASS_COLOURS)]
    stripes = ((np.arange(w) + index) // (2 + label)) % 2
    img[:, stripes == 1] *= 0.6
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image(path: Path, image: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise RuntimeError(f"could not write {path}")
    return path


def make_image_folder(root: Path, classes: Sequence[str] = ("cat", "dog"), per_class: int = 6,
                      size=(40, 48), seed: int = 0) -> Dict[str, list]:
    """root/<class>/NN.<jpg|png|bmp>, formats rotating; returns {class: [paths]}."""
    out = {}
    for label, name in enumerate(classes):
        files = []
        for i in range(per_class):
            ext = _FORMATS[i % len(_FORMATS)]
            files.append(write_image(root / name / f"{i:02d}{ext}", synthetic_image(label, i, size, seed)))
        out[name] = files
    return out


def add_odd_files(root: Path, class_name: str) -> Dict[str, Path]:
    """A grayscale PNG, an RGBA PNG, a corrupt JPEG and a zero-byte PNG in root/<class_name>."""
    import cv2

    folder = root / class_name
    base = synthetic_image(0, 99)
    gray = write_image(folder / "gray.png", cv2.cvtColor(base, cv2.COLOR_BGR2GRAY))
    rgba = write_image(folder / "rgba.png", np.dstack([base, np.full(base.shape[:2], 128, np.uint8)]))
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" + os.urandom(64))
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    return {"gray": gray, "rgba": rgba, "corrupt": corrupt, "empty": empty}


@contextlib.contextmanager
def _captured():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def run_main(*args, env: dict = None) -> subprocess.CompletedProcess:
    """Run `edgevision.cli.main` in this process (TensorFlow is already imported here: no 10 s start-up).

    Same code path as the console script (main() turns errors into one line and an exit status); the
    subprocess tests elsewhere cover the real entry point.
    """
    from edgevision.cli import main

    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    code = 0
    try:
        with _captured() as (out, err):
            try:
                main([str(a) for a in args])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def python_cmd(*args) -> list:
    return [sys.executable, "-m", "edgevision.cli", *map(str, args)]


def make_split_folders(root: Path) -> Dict[str, Path]:
    """The folders the split-compatibility test draws splits from (tests/split_before_issue18.json).

    Uneven classes, so rounding of the per-class fraction matters, and two undecodable files among "bee", so
    the split must be drawn over the readable files only; plus a separate validation folder.
    """
    data, val = root / "data", root / "val"
    for label, (name, count) in enumerate((("ant", 9), ("bee", 6), ("cow", 13))):
        for i in range(count):
            write_image(data / name / f"{i:02d}{_FORMATS[i % len(_FORMATS)]}", synthetic_image(label, i, (20, 24)))
    add_odd_files(data, "bee")
    make_image_folder(val, ("ant", "bee", "cow"), per_class=3, size=(20, 24), seed=5)
    return {"data": data, "val": val}


def write_run_dir(path: Path, run_json: dict, classes: Sequence[str], preprocess) -> Path:
    """A run directory as far as reading its split needs: run.json, labels, preprocessing (no real model)."""
    import json

    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps(run_json))
    (path / "labels.txt").write_text("\n".join(classes) + "\n")
    preprocess.save(path / "preprocess.json")
    (path / "model.keras").write_bytes(b"not read: only the split is")
    return path
