"""Training data: CIFAR-10 through Keras, or any class-per-subfolder image folder.

Images are decoded once (OpenCV, every core), prepared with the runtime's own `prepare_pixels` (so training
sees exactly what the device will), and cached in memory as uint8 at the model's input size. Batches are
normalised with the runtime's `normalize` and augmented in numpy; the random state is a pure function of
(seed, epoch, batch), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edgevision.edge_runtime.datasets import decode_folder, scan_image_folder
from edgevision.edge_runtime.preprocess import PreprocessConfig, normalize, prepare_pixels
from edgevision.errors import DataError, UsageError, first_line

log = logging.getLogger(__name__)

CIFAR10 = "cifar10"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Augmentation:
    """Random flips and translations (pad-and-crop), the standard CIFAR recipe."""

    flip: bool = True
    pad: int = 4  # pixels of reflection padding before a random crop back to size; 0 disables
    cutout: int = 0  # side of a random square blanked out (in pixels); 0 disables


@dataclass
class SplitData:
    """uint8 pixels in the model's colour order at its input size, with integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: Tuple[str, ...]
    source: dict  # how to get the same data again: recorded in run.json
    skipped: List[str]


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): each class contributes `val_fraction` of its samples (at least one) to val."""
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"--val-split must be between 0 and 1 (exclusive), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = max(1, int(round(len(idx) * val_fraction))) if len(idx) > 1 else 0
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


CIFAR10_HOST = "www.cs.toronto.edu"
CIFAR10_CACHE_NAME = "cifar-10-batches-py-target"  # the folder keras.datasets.cifar10 caches it in


def load_cifar10_arrays() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """keras.datasets.cifar10 (downloaded once, then cached by Keras): RGB uint8 32x32."""
    import contextlib
    import sys

    from edgevision.train.weights import keras_home, online

    cached = keras_home() / "datasets" / CIFAR10_CACHE_NAME
    # Checked first so that offline the user gets one line, not Keras' "Downloading data from ..." and a stack.
    if not cached.exists() and not online(CIFAR10_HOST):
        raise DataError(
            f"CIFAR-10 is not in the Keras cache ({cached}) and cannot be downloaded (no network): "
            "pass an image folder with --data DIR (one subfolder per class), or connect once so Keras can cache it"
        )
    import keras

    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras' download progress must not pollute stdout
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as e:  # urllib's URLError, socket errors, a truncated cache: all mean "not available"
        raise DataError(
            f"could not get CIFAR-10 through Keras ({first_line(e)}); "
            "pass an image folder instead with --data DIR (one subfolder per class)"
        ) from e
    return x_train, y_train.reshape(-1).astype(np.int64), x_test, y_test.reshape(-1).astype(np.int64)


def _prepare_array(x_rgb: np.ndarray, preprocess: PreprocessConfig) -> np.ndarray:
    if x_rgb.shape[1:3] == tuple(preprocess.input_size) and preprocess.color_order == "RGB":
        return x_rgb
    return np.stack([prepare_pixels(img, preprocess, source_order="RGB") for img in x_rgb])


def load_split(
    data: str,
    preprocess: PreprocessConfig,
    val_split: float = 0.1,
    seed: int = 0,
    val_data: Optional[str] = None,
    limit_per_class: Optional[int] = None,
) -> SplitData:
    """Load training data and carve (or load) the validation set, all prepared for the model."""
    transform = decoded_image_transform(preprocess)
    skipped: List[str] = []
    if data == CIFAR10:
        x, y, _, _ = load_cifar10_arrays()
        if limit_per_class:
            x, y = _limit(x, y, limit_per_class, seed)
        x = _prepare_array(x, preprocess)
        classes = CIFAR10_CLASSES
        source = {"kind": "keras.datasets.cifar10"}
    else:
        folder = scan_image_folder(data)
        indices = None
        if limit_per_class:
            indices = _limit_indices(folder.labels, limit_per_class, seed)
        decoded = decode_folder(folder, transform, indices)
        if decoded.skipped:
            skipped.append(decoded.skipped_summary())
        x, y, classes = decoded.pixels, decoded.labels, folder.classes
        _check_every_class_decoded(y, classes, folder.root)
        source = {"kind": "folder", "path": str(Path(data).resolve())}
    if val_data:
        val_folder = scan_image_folder(val_data, classes=classes)
        decoded_val = decode_folder(val_folder, transform)
        if decoded_val.skipped:
            skipped.append(decoded_val.skipped_summary())
        x_train, y_train, x_val, y_val = x, y, decoded_val.pixels, decoded_val.labels
        source["val"] = {"kind": "folder", "path": str(Path(val_data).resolve())}
    else:
        train_idx, val_idx = stratified_split(y, val_split, seed)
        if len(val_idx) == 0:
            raise DataError("the validation split is empty: add images or pass --val-data DIR")
        x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
        source["val"] = {"kind": "split", "fraction": val_split, "seed": seed}
    if limit_per_class:
        source["limit_per_class"] = limit_per_class
    return SplitData(x_train, y_train, x_val, y_val, tuple(classes), source, skipped)


def _check_every_class_decoded(y: np.ndarray, classes: Sequence[str], root: Path) -> None:
    """A class folder whose files are all undecodable is as empty as one without files: say so."""
    empty = [name for i, name in enumerate(classes) if not np.any(y == i)]
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(repr(n) for n in empty)} in {root} have no decodable images; "
            "add images or remove the folder(s)"
        )


def _limit_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def _limit(x, y, per_class, seed):
    idx = _limit_indices(y, per_class, seed)
    return x[idx], y[idx]


def recorded_data(run):
    """(RunInfo, data, val_data) of a run directory or RunInfo: where its images were, as run.json recorded.

    The recorded absolute paths win over the paths as typed (relative to where training ran), so a split can
    be rebuilt from any working directory."""
    from edgevision.train.run_dir import RunInfo, load_run

    info = run if isinstance(run, RunInfo) else load_run(run)
    settings = info.settings
    data = settings.get("data")
    if not data:
        raise DataError(f"{info.path}/run.json does not record the training data; pass the images explicitly")
    source = settings.get("data_source") or {}
    if source.get("kind") == "folder" and source.get("path"):
        data = source["path"]
    val_data = settings.get("val_data")
    val_source = source.get("val") or {}
    if val_data and val_source.get("kind") == "folder" and val_source.get("path"):
        val_data = val_source["path"]
    return info, data, val_data


def reload_split(run) -> SplitData:
    """A run's training and validation data, recomputed exactly as `edgevision train` made it.

    `run` is a run directory or a RunInfo. The split is rebuilt from what run.json recorded (the absolute
    data paths, the fraction and the seed), so the validation half is exactly the one the model never
    trained on, whatever the current working directory. (To load only part of it, see split_parts.py.)
    """
    info, data, val_data = recorded_data(run)
    settings = info.settings
    split = load_split(
        data,
        info.preprocess,
        val_split=settings.get("val_split", 0.1),
        seed=settings.get("seed", 0),
        val_data=val_data,
        limit_per_class=settings.get("limit_per_class"),
    )
    check_run_classes(split.classes, info)
    return split


def check_run_classes(classes: Sequence[str], info) -> None:
    """The data a run's split is rebuilt from must still have the classes the run was trained on."""
    if tuple(classes) != tuple(info.labels):
        raise DataError(
            f"the training data now has classes {list(classes)} but {info.path} was trained on "
            f"{list(info.labels)}; its split cannot be rebuilt"
        )


def decoded_image_transform(preprocess: PreprocessConfig):
    """OpenCV-decoded (BGR) image -> the model's uint8 pixels, as the runtime prepares them."""
    return lambda image: prepare_pixels(image, preprocess, source_order="BGR")


def validation_arrays(run) -> Tuple[np.ndarray, np.ndarray]:
    """The validation images of a run (uint8, model colour order, input size) and labels, as in training.

    Only the validation half is kept at the input size (split_parts.py): for MobileNetV2 at 160 px the
    training half alone would be 3.5 GB of pixels that the caller never sees."""
    from edgevision.train.split_parts import reload_split_parts

    _, val = reload_split_parts(run)
    return val.pixels(np.arange(len(val))), val.labels


def loader_threads() -> int:
    """Threads preparing batches: 1 (in the training loop itself) on small CPUs, where the model already uses
    every core; several on a workstation feeding a GPU, which otherwise waits on numpy between steps.
    Batches are a pure function of (seed, epoch, index), so the count never changes what is trained on."""
    cores = os.cpu_count() or 1
    return 1 if cores <= 4 else min(8, cores // 2)


def _keras_pydataset():
    import keras

    return keras.utils.PyDataset


def make_batches(
    x: np.ndarray,
    y: np.ndarray,
    preprocess: PreprocessConfig,
    batch_size: int,
    seed: int,
    augment: Optional[Augmentation] = None,
    shuffle: bool = True,
    num_classes: Optional[int] = None,
):
    """A keras.utils.PyDataset over the cached uint8 arrays (works on every Keras backend).

    Targets are one-hot float32 when `num_classes` is given (label smoothing needs them), else integers.
    """
    targets = np.eye(num_classes, dtype=np.float32)[y] if num_classes else y
    PyDataset = _keras_pydataset()

    class Batches(PyDataset):
        def __init__(self):
            super().__init__(workers=loader_threads(), use_multiprocessing=False)
            self.epoch = 0
            self._order = self._permutation()
            # Cutout fills with the normalisation mean, so a blanked square becomes zero after normalize():
            # "no information" to the network, not a black patch with its own statistics.
            self._blank = np.clip(np.rint(preprocess.mean), 0, 255).astype(x.dtype)
            if augment and augment.pad:
                p = augment.pad
                self._padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")

        def _permutation(self):
            if not shuffle:
                return np.arange(len(x))
            return np.random.default_rng([seed, self.epoch]).permutation(len(x))

        def set_epoch(self, epoch: int):
            self.epoch = epoch
            self._order = self._permutation()

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, i):
            idx = self._order[i * batch_size : (i + 1) * batch_size]
            if augment:
                rng = np.random.default_rng([seed, self.epoch, i])
                batch = self._augment(idx, rng)
            else:
                batch = x[idx]
            return normalize(batch, preprocess), targets[idx]

        def _augment(self, idx, rng):
            n = len(idx)
            h, w = x.shape[1:3]
            if augment.pad:
                p = augment.pad
                dy, dx = rng.integers(0, 2 * p + 1, size=(2, n))
                batch = np.stack([self._padded[j, a : a + h, b : b + w] for j, a, b in zip(idx, dy, dx)])
            else:
                batch = x[idx].copy()
            if augment.flip:
                flip = rng.random(n) < 0.5
                batch[flip] = batch[flip, :, ::-1]
            if augment.cutout:
                c = augment.cutout
                cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
                for k in range(n):
                    top, left = max(0, cy[k] - c // 2), max(0, cx[k] - c // 2)
                    batch[k, top : cy[k] + c // 2, left : cx[k] + c // 2] = self._blank
            return batch

        def on_epoch_end(self):
            self.set_epoch(self.epoch + 1)

    return Batches()


def channel_stats(x: np.ndarray, sample: int = 10000, seed: int = 0) -> Tuple[Sequence[float], Sequence[float]]:
    """Per-channel mean and std (pixel units) of uint8 images, on a sample: the normalisation for a new model."""
    rng = np.random.default_rng(seed)
    pick = x if len(x) <= sample else x[rng.choice(len(x), sample, replace=False)]
    flat = pick.reshape(-1, pick.shape[-1]).astype(np.float64)
    return tuple(np.round(flat.mean(0), 2)), tuple(np.round(np.maximum(flat.std(0), 1e-3), 2))
