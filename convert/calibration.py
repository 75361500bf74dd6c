"""The images conversion needs: calibration, evaluation and fine-tuning data, prepared exactly as in training.

Every image goes through the runtime's own `read_image` -> `prepare_pixels` -> `normalize`, the functions
training uses, so the ranges int8 calibrates and the accuracy we report are those of the pixels the device
will see. Undecodable files are skipped and counted, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from edgevision.edge_runtime.datasets import ImageFolder, decode_folder, scan_image_folder
from edgevision.edge_runtime.images import is_image_file
from edgevision.edge_runtime.preprocess import PreprocessConfig, normalize, prepare_pixels
from edgevision.errors import DataError, EdgeVisionError


@dataclass
class ImageSet:
    """uint8 pixels (N, H, W, 3) in the model's colour order at its input size; labels when known."""

    pixels: np.ndarray
    labels: Optional[np.ndarray]
    source: str  # a human-readable description: a folder, or "the run's validation split"
    skipped: List[str] = field(default_factory=list)  # names of files that could not be decoded

    def __len__(self) -> int:
        return len(self.pixels)

    def inputs(self, preprocess: PreprocessConfig) -> np.ndarray:
        """The normalised float32 model input."""
        return normalize(self.pixels, preprocess)

    def describe(self) -> dict:
        d = {"source": self.source, "n": len(self)}
        if self.skipped:
            d["skipped"] = len(self.skipped)
        return d


def _transform(preprocess: PreprocessConfig):
    return lambda image: prepare_pixels(image, preprocess, source_order="BGR")


def _subsample(n: int, limit: Optional[int], seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset (all when `limit` is None or >= n)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def calibration_folder(folder, preprocess: PreprocessConfig, samples: int, seed: int = 0) -> ImageSet:
    """Up to `samples` images from anywhere under `folder` (class subfolders are optional here)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"calibration folder {root} does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise DataError(
            f"calibration folder {root} has no images (expected .jpg, .jpeg, .png, .bmp or .webp files); "
            "int8 needs a few hundred typical input images to calibrate its ranges"
        )
    index = _subsample(len(files), samples, seed)
    scanned = ImageFolder(root, (), tuple(files), np.zeros(len(files), dtype=np.int64))
    try:
        decoded = decode_folder(scanned, _transform(preprocess), indices=index)
    except DataError as e:
        raise DataError(f"calibration folder {root}: {e}") from e
    return ImageSet(decoded.pixels, None, str(root), [str(p) for p, _ in decoded.skipped])


def labelled_folder(folder, labels: Sequence[str], preprocess: PreprocessConfig,
                    limit: Optional[int] = None, seed: int = 0, purpose: str = "evaluation") -> ImageSet:
    """A class-per-subfolder image tree whose subfolder names are the model's labels."""
    root = Path(folder).expanduser()
    if root.is_dir():
        unknown = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in labels)
        if unknown:
            raise DataError(
                f"{purpose} folder {root} has class folder(s) the model does not know: {', '.join(unknown[:5])}; "
                f"the subfolders must be named after the model's labels ({', '.join(list(labels)[:5])}, ...)"
            )
    folder_scan = scan_image_folder(root, classes=list(labels))
    index = _subsample(len(folder_scan), limit, seed)
    decoded = decode_folder(folder_scan, _transform(preprocess), indices=index)
    return ImageSet(decoded.pixels, decoded.labels, str(root), [str(p) for p, _ in decoded.skipped])


_PARTS: dict = {}


def _run_parts(run):
    """The run's (training, validation) parts, probed once per process (QAT and calibration both need them)."""
    from edgevision.train.data import reload_split_parts

    key = str(Path(run.path).resolve())
    if key not in _PARTS:
        try:
            _PARTS[key] = reload_split_parts(run)
        except EdgeVisionError as e:
            raise DataError(f"cannot reload the data of run {run.path} ({e})") from e
    return _PARTS[key]


def run_split(run, which: str, limit: Optional[int] = None, seed: int = 0) -> ImageSet:
    """The training or validation split of a run, recomputed exactly as `edgevision train` made it; with
    `limit`, a seeded sample of it, and only those images are decoded."""
    train, val = _run_parts(run)
    part = train if which == "training" else val
    index = _subsample(len(part), limit, seed)
    try:
        pixels = part.pixels(index)
    except EdgeVisionError as e:
        raise DataError(f"cannot reload the data of run {run.path} ({e})") from e
    # Files the training scan skipped were reported when the run was trained: no second warning here.
    return ImageSet(pixels, part.labels[index], f"the {which} split of run {run.path} ({run.command.get('data')})")
