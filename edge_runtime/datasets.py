"""Labelled image folders (one subfolder per class), read with OpenCV: no TensorFlow needed.

The folder is scanned once up front. tf.data's `ignore_errors` drops whole batches silently, so instead every
file is decoded here: undecodable files are skipped and counted (and named in one warning by the caller),
never a crash; a missing folder, an empty class folder or fewer than two classes is a clear DataError.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from edgevision.edge_runtime.images import is_image_file, read_image
from edgevision.errors import DataError, ImageError, UsageError


@dataclass(frozen=True)
class ImageFolder:
    """The result of scanning a class-per-subfolder image tree (files are not decoded yet)."""

    root: Path
    classes: Tuple[str, ...]
    files: Tuple[Path, ...]
    labels: np.ndarray  # int64, one per file

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class DecodedImages:
    """Decoded pixels of an ImageFolder (uint8, all resized to one size) and what was skipped."""

    pixels: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    files: List[Path]
    skipped: List[Tuple[Path, str]] = field(default_factory=list)

    def skipped_summary(self, limit: int = 3) -> Optional[str]:
        """One warning line naming a few of the skipped files, or None if nothing was skipped."""
        if not self.skipped:
            return None
        names = ", ".join(p.name for p, _ in self.skipped[:limit])
        more = f" and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        return f"skipped {len(self.skipped)} file(s) that are not decodable images: {names}{more}"


def image_files(folder: Path) -> List[Path]:
    """The image files in `folder` and its subfolders, sorted: what one class folder holds."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_file(p))


def scan_image_folder(root, classes: Optional[Sequence[str]] = None) -> ImageFolder:
    """List the images of a class-per-subfolder tree. `classes` fixes the class order (e.g. a model's labels)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; expected a folder with one subfolder per class")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
        if len(classes) < 2:
            raise DataError(
                f"{root} has {len(classes)} class folder(s); a classifier needs at least two "
                "(one subfolder per class, e.g. data/cat/*.jpg, data/dog/*.jpg)"
            )
    files, labels = [], []
    for index, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue  # evaluating on a subset of a model's classes is allowed
        images = image_files(folder)
        if not images:
            raise DataError(
                f"class folder {folder} has no images (expected .jpg, .jpeg, .png, .bmp or .webp files)"
            )
        files.extend(images)
        labels.extend([index] * len(images))
    if not files:
        raise DataError(f"{root} has no class folders matching the model's classes ({', '.join(classes[:5])}...)")
    return ImageFolder(root, tuple(classes), tuple(files), np.asarray(labels, dtype=np.int64))


# --- the fixed held-out split ------------------------------------------------------------------------------
#: Salts the hash that ranks images for the held-out split. Part of the split's definition: changing it moves
#: every image, so it is versioned ("holdout-v1" in run.json) rather than ever edited.
HOLDOUT_RULE = "holdout-v1"


def check_holdout(fraction: float) -> None:
    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"--holdout must be at least 0 (off) and below 1, got {fraction}")


def holdout_mask(keys: Sequence[str], labels: np.ndarray, fraction: float) -> np.ndarray:
    """True for the images of the fixed held-out split: in each class, the `fraction` of images whose keys
    hash lowest.

    A key names an image within its source ("cat/0001.jpg": its path below the data folder), so the held-out
    images depend only on the images themselves: not on the seed, on which files decode, on the order they
    are listed in or on the other classes. Training leaves them out and `evaluate --holdout` scores exactly
    them, so no recipe, seed or checkpoint is chosen on them.
    """
    check_holdout(fraction)
    labels = np.asarray(labels)
    mask = np.zeros(len(keys), dtype=bool)
    if fraction == 0.0:
        return mask
    salt = HOLDOUT_RULE.encode()
    rank = np.asarray([int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8, key=salt).digest(), "big")
                       for k in keys], dtype=np.uint64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        mask[members[np.argsort(rank[members], kind="stable")[: int(round(len(members) * fraction))]]] = True
    return mask


def file_keys(root: Path, files: Sequence[Path]) -> List[str]:
    """`holdout_mask`'s keys of image files below the data folder `root`: their relative paths, '/'-separated."""
    return [Path(f).relative_to(root).as_posix() for f in files]


def without_holdout(folder: ImageFolder, fraction: float, keep_holdout: bool = False) -> ImageFolder:
    """`folder` less its held-out images (or, `keep_holdout`, only them)."""
    if not fraction:
        return folder
    mask = holdout_mask(file_keys(folder.root, folder.files), folder.labels, fraction)
    keep = np.flatnonzero(mask if keep_holdout else ~mask)
    return ImageFolder(folder.root, folder.classes, tuple(folder.files[i] for i in keep), folder.labels[keep])


def decode_folder(
    folder: ImageFolder,
    transform: Callable[[np.ndarray], np.ndarray],
    indices: Optional[Sequence[int]] = None,
    workers: Optional[int] = None,
) -> DecodedImages:
    """Decode (a subset of) a folder's images, apply `transform` (BGR image -> fixed-size uint8), skip bad files.

    OpenCV releases the GIL while decoding and resizing, so a thread pool uses every core.
    """
    idx = range(len(folder.files)) if indices is None else indices
    paths = [folder.files[i] for i in idx]
    labels = [int(folder.labels[i]) for i in idx]

    def load(path: Path):
        try:
            return transform(read_image(path)), None
        except ImageError as e:
            return None, str(e)

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(load, paths, chunksize=64))
    kept = [(img, lab, p) for (img, _), lab, p in zip(results, labels, paths) if img is not None]
    skipped = [(p, err) for (img, err), p in zip(results, paths) if img is None]
    if not kept:
        raise DataError(f"none of the {len(paths)} images in {folder.root} could be decoded")
    pixels = np.stack([k[0] for k in kept])
    return DecodedImages(
        pixels=pixels,
        labels=np.asarray([k[1] for k in kept], dtype=np.int64),
        files=[k[2] for k in kept],
        skipped=skipped,
    )
