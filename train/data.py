"""Training data: CIFAR-10 through Keras, or any class-per-subfolder image folder, split once.

Images are decoded once (OpenCV, every core), prepared with the runtime's own `prepare_pixels` (so training
sees exactly what the device will), and cached in memory as uint8 at the model's input size. Batches are
normalised with the runtime's `normalize` and augmented in numpy; the random state is a pure function of
(seed, epoch, batch), so a resumed run sees the same batches as an uninterrupted one.

The train/validation split is drawn in one place, `draw_split`, from a `SplitSpec`, which run.json records
once (as "data_source"). Training draws it with every image in memory. Conversion redraws it from that record
with `lazy=True`: the folder is probed once (decoded and dropped, to learn which files are readable, since the
split is drawn over the readable ones) and only the images asked for are decoded at full size, because
calibration and QAT need a few thousand images of a split that, at MobileNetV2's input size, can be larger
than a laptop's memory.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from edgevision.edge_runtime.datasets import (HOLDOUT_RULE, ImageFolder, check_holdout, decode_folder, holdout_mask,
                                              scan_image_folder, without_holdout)
from edgevision.edge_runtime.preprocess import PreprocessConfig, normalize, prepare_pixels
from edgevision.errors import DataError, UsageError, first_line

log = logging.getLogger(__name__)

CIFAR10 = "cifar10"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_KIND = "keras.datasets.cifar10"  # the record's name for it: where the images come from

_READABLE = np.zeros(1, dtype=np.uint8)  # what a lazy split's probe keeps of an image: only that it decoded


@dataclass(frozen=True)
class Augmentation:
    """Random flips and translations (pad-and-crop), the standard CIFAR recipe, and optional extras (all off by
    default, so the recipes' batches stay what they were: a knob that is off draws no random numbers)."""

    flip: bool = True
    # Each image flipped every other epoch (a seeded half starts flipped) rather than by a coin each time, so
    # every two epochs show both sides of every image, where coins repeat a side about half the time (airbench).
    alternate_flip: bool = False
    pad: int = 4  # pixels of reflection padding before a random crop back to size; 0 disables
    cutout: int = 0  # side of a random square blanked out (in pixels); 0 disables
    rotation: float = 0.0  # degrees: each image turns by a random angle in [-rotation, rotation]
    zoom: float = 0.0  # each image scales by a random factor in [1 - zoom, 1 + zoom] about its centre
    color_jitter: float = 0.0  # brightness, contrast and saturation each scaled in [1 - j, 1 + j]
    random_erasing: float = 0.0  # probability of replacing a random rectangle with noise (Zhong et al. 2017)


def check_augmentation(rotation: float, zoom: float, color_jitter: float, random_erasing: float) -> None:
    """UsageError naming the option for a value outside its range."""
    for option, value, low, high in (("--rotation", rotation, 0, 180), ("--zoom", zoom, 0, 0.9),
                                     ("--color-jitter", color_jitter, 0, 1), ("--random-erasing", random_erasing, 0, 1)):
        if not low <= value <= high:
            raise UsageError(f"{option} must be between {low} and {high}, got {value}")


# --- the split -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitSpec:
    """Everything a train/validation split depends on: the same spec draws the same halves."""

    data: str  # CIFAR10, or an image folder (as typed; `record` makes it absolute)
    val_data: Optional[str] = None  # a folder that is the validation half; None: carve it out of `data`
    val_fraction: float = 0.1
    seed: int = 0  # draws the split, and the subset `limit_per_class` keeps
    limit_per_class: Optional[int] = None
    holdout: float = 0.0  # the fraction of each class of `data` set aside first, whatever the seed (0: none)

    def __post_init__(self):
        check_holdout(self.holdout)

    def record(self) -> dict:
        """run.json's "data_source": absolute paths, so the split can be redrawn from any working directory."""
        where = {"kind": CIFAR10_KIND} if self.data == CIFAR10 else {"kind": "folder", "path": _absolute(self.data)}
        val = ({"kind": "folder", "path": _absolute(self.val_data)} if self.val_data
               else {"kind": "split", "fraction": self.val_fraction})
        limit = {"limit_per_class": self.limit_per_class} if self.limit_per_class else {}
        held = {"holdout": {"fraction": self.holdout, "rule": HOLDOUT_RULE}} if self.holdout else {}
        return {**where, "seed": self.seed, "val": val, **limit, **held}

    @classmethod
    def from_record(cls, record: dict) -> "SplitSpec":
        val = record.get("val") or {}
        held = record.get("holdout") or {}
        if held and held.get("rule") != HOLDOUT_RULE:
            raise DataError(f"the run's held-out split follows rule {held.get('rule')!r}, which this edgevision "
                            f"does not know (it draws {HOLDOUT_RULE!r}); use the edgevision version that trained it")
        return cls(
            data=CIFAR10 if record.get("kind") == CIFAR10_KIND else record["path"],
            val_data=val.get("path") if val.get("kind") == "folder" else None,
            val_fraction=val.get("fraction", 0.1),
            seed=record["seed"],
            limit_per_class=record.get("limit_per_class"),
            holdout=held.get("fraction", 0.0),
        )


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


@dataclass(frozen=True)
class SplitPart:
    """One half of a split: labels now, pixels (uint8, model colour order and size) by position."""

    which: str  # "training" or "validation"
    labels: np.ndarray
    decode: Callable[[Optional[np.ndarray]], np.ndarray]  # positions in this part (None: all) -> their pixels

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, index: np.ndarray) -> np.ndarray:
        return self.decode(np.asarray(index, dtype=np.int64))

    def all_pixels(self) -> np.ndarray:
        """Every image of the part; no copy when it is the whole of an in-memory pool."""
        return self.decode(None)


@dataclass(frozen=True)
class Split:
    train: SplitPart
    val: SplitPart
    classes: Tuple[str, ...]
    skipped: List[str] = field(default_factory=list)  # one warning line per folder with undecodable files


@dataclass(frozen=True)
class ImagePool:
    """The images of one source (after `limit_per_class`): labels, and pixels by position (None: all)."""

    labels: np.ndarray
    classes: Tuple[str, ...]
    load: Callable[[Optional[np.ndarray]], np.ndarray]
    skipped: Optional[str] = None


def draw_split(spec: SplitSpec, preprocess: PreprocessConfig, lazy: bool = False) -> Split:
    """The split of `spec`'s images, prepared for the model: in memory, or with `lazy` decoded on demand."""
    if spec.data == CIFAR10:
        x, y, _, _ = load_cifar10_arrays()
        pool = array_pool(x, y, CIFAR10_CLASSES, spec, preprocess, lazy)
    else:
        pool = _folder_pool(spec.data, preprocess, lazy, limit=spec.limit_per_class, seed=spec.seed,
                            holdout=spec.holdout)
    return split_pool(pool, spec, preprocess, lazy)


def split_pool(pool: ImagePool, spec: SplitSpec, preprocess: PreprocessConfig, lazy: bool) -> Split:
    """`pool` (the images of `spec.data`) cut in two, or paired with the folder `spec.val_data`."""
    if spec.val_data:
        val = _folder_pool(spec.val_data, preprocess, lazy, classes=pool.classes)
        parts = SplitPart("training", pool.labels, pool.load), SplitPart("validation", val.labels, val.load)
        return Split(*parts, pool.classes, [s for s in (pool.skipped, val.skipped) if s])
    train_idx, val_idx = stratified_split(pool.labels, spec.val_fraction, spec.seed)
    if len(val_idx) == 0:
        raise DataError("the validation split is empty: add images or pass --val-data DIR")
    parts = _part("training", pool, train_idx), _part("validation", pool, val_idx)
    return Split(*parts, pool.classes, [pool.skipped] if pool.skipped else [])


def _part(which: str, pool: ImagePool, index: np.ndarray) -> SplitPart:
    return SplitPart(which, pool.labels[index], lambda i: pool.load(index if i is None else index[i]))


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


def _limit_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


# --- where the images come from --------------------------------------------------------------------------
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


def array_pool(x: np.ndarray, y: np.ndarray, classes: Sequence[str], spec: SplitSpec,
                preprocess: PreprocessConfig, lazy: bool) -> ImagePool:
    """Images already in memory (CIFAR-10's 32x32 arrays are small): lazily, only their resizing is put off."""
    if spec.holdout:
        keep = ~holdout_mask(array_keys(len(y)), y, spec.holdout)
        x, y = x[keep], y[keep]
    if spec.limit_per_class:
        keep = _limit_indices(y, spec.limit_per_class, spec.seed)
        x, y = x[keep], y[keep]
    if lazy:
        return ImagePool(y, tuple(classes), lambda i: _prepare_array(x if i is None else x[i], preprocess))
    x = _prepare_array(x, preprocess)
    return ImagePool(y, tuple(classes), lambda i: x if i is None else x[i])


def array_keys(n: int) -> List[str]:
    """`holdout_mask`'s keys of CIFAR-10's training arrays: their positions."""
    return [f"{CIFAR10_KIND}/{i}" for i in range(n)]


def _folder_pool(path: str, preprocess: PreprocessConfig, lazy: bool, classes: Optional[Sequence[str]] = None,
                 limit: Optional[int] = None, seed: int = 0, holdout: float = 0.0) -> ImagePool:
    """A folder's readable images (less its held-out split). `classes` given: a validation folder, which may
    hold only some of them."""
    folder = without_holdout(scan_image_folder(path, classes=classes), holdout)
    indices = _limit_indices(folder.labels, limit, seed) if limit else None
    transform = decoded_image_transform(preprocess)
    decoded = decode_folder(folder, (lambda image: _READABLE) if lazy else transform, indices)
    if classes is None:
        _check_every_class_decoded(decoded.labels, folder.classes, folder.root)
    if lazy:
        load = _file_loader(folder, tuple(decoded.files), decoded.labels, transform)
    else:
        pixels = decoded.pixels
        load = lambda i: pixels if i is None else pixels[i]  # noqa: E731
    return ImagePool(decoded.labels, folder.classes, load, decoded.skipped_summary())


def _file_loader(folder: ImageFolder, files: Tuple[Path, ...], labels: np.ndarray, transform):
    def load(index: Optional[np.ndarray]) -> np.ndarray:
        index = np.arange(len(files)) if index is None else index
        subset = ImageFolder(folder.root, folder.classes, tuple(files[i] for i in index), labels[index])
        decoded = decode_folder(subset, transform)
        if len(decoded.pixels) != len(index):  # a file changed since the probe: the positions no longer hold
            raise DataError(f"{len(index) - len(decoded.pixels)} image(s) in {folder.root} became unreadable "
                            f"while loading them: {decoded.skipped_summary()}")
        return decoded.pixels

    return load


def _check_every_class_decoded(y: np.ndarray, classes: Sequence[str], root: Path) -> None:
    """A class folder whose files are all undecodable is as empty as one without files: say so."""
    empty = [name for i, name in enumerate(classes) if not np.any(y == i)]
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(repr(n) for n in empty)} in {root} have no decodable images; "
            "add images or remove the folder(s)"
        )


def decoded_image_transform(preprocess: PreprocessConfig):
    """OpenCV-decoded (BGR) image -> the model's uint8 pixels, as the runtime prepares them."""
    return lambda image: prepare_pixels(image, preprocess, source_order="BGR")


# --- the split as training and conversion use it ---------------------------------------------------------
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


def load_split(
    data: str,
    preprocess: PreprocessConfig,
    val_split: float = 0.1,
    seed: int = 0,
    val_data: Optional[str] = None,
    limit_per_class: Optional[int] = None,
    holdout: float = 0.0,
) -> SplitData:
    """Load training data and carve (or load) the validation set, all prepared for the model."""
    spec = SplitSpec(data, val_data, val_split, seed, limit_per_class, holdout)
    return _in_memory(draw_split(spec, preprocess), spec)


def count_images(spec: SplitSpec) -> Tuple[int, int]:
    """(training, validation) image counts of `spec` before decoding anything (files listed, not read; a file
    that turns out undecodable is still counted): what choosing between memory and disk goes by."""
    if spec.data == CIFAR10:
        counts, classes = np.full(len(CIFAR10_CLASSES), 5000), CIFAR10_CLASSES
    else:
        folder = scan_image_folder(spec.data)
        counts, classes = np.bincount(folder.labels, minlength=len(folder.classes)), folder.classes
    counts = counts - np.round(counts * spec.holdout).astype(int)
    total = int(np.minimum(counts, spec.limit_per_class).sum() if spec.limit_per_class else counts.sum())
    if spec.val_data:
        return total, len(scan_image_folder(spec.val_data, classes=classes))
    val = int(round(total * spec.val_fraction))
    return total - val, val


def _in_memory(split: Split, spec: SplitSpec) -> SplitData:
    return SplitData(split.train.all_pixels(), split.train.labels, split.val.all_pixels(), split.val.labels,
                     split.classes, spec.record(), split.skipped)


def recorded_split(run):
    """(RunInfo, SplitSpec) of a run directory or RunInfo: the split as run.json recorded it."""
    from edgevision.train.run_dir import RunInfo, load_run

    info = run if isinstance(run, RunInfo) else load_run(run)
    source = info.settings.get("data_source") or {}
    if "seed" in source:
        return info, SplitSpec.from_record(source)
    return info, _spec_before_issue18(info)


def _spec_before_issue18(info) -> SplitSpec:
    """run.json files written before the split was recorded once: its inputs as flat top-level copies of the
    settings (the paths as typed, relative to where training ran) and the absolute paths in "data_source"."""
    flat = info.settings
    if not flat.get("data"):
        raise DataError(f"{info.path}/run.json does not record the training data; pass the images explicitly")
    source = flat.get("data_source") or {}
    data = source["path"] if source.get("kind") == "folder" and source.get("path") else flat["data"]
    val_data = flat.get("val_data") and ((source.get("val") or {}).get("path") or flat["val_data"])
    return SplitSpec(data, val_data, flat.get("val_split", 0.1), flat.get("seed", 0), flat.get("limit_per_class"))


def reload_split(run) -> SplitData:
    """A run's training and validation data, recomputed exactly as `edgevision train` made it.

    `run` is a run directory or a RunInfo. The split is redrawn from run.json's record (absolute data paths,
    fraction and seed), so the validation half is exactly the one the model never trained on, whatever the
    current working directory.
    """
    info, spec = recorded_split(run)
    split = draw_split(spec, info.preprocess)
    check_run_classes(split.classes, info)
    return _in_memory(split, spec)


def reload_split_parts(run) -> Tuple[SplitPart, SplitPart]:
    """(training, validation) parts of a run's split, as `reload_split` gives them, decoded only on demand."""
    info, spec = recorded_split(run)
    split = draw_split(spec, info.preprocess, lazy=True)
    check_run_classes(split.classes, info)
    return split.train, split.val


def holdout_arrays(run) -> Tuple[np.ndarray, np.ndarray]:
    """The held-out images of a run (uint8, model colour order, input size) and labels: the images of its
    data that training left out before drawing the validation split (`train --holdout`)."""
    info, spec = recorded_split(run)
    if not spec.holdout:
        raise UsageError(f"{info.path} was trained without a held-out split (train --holdout FRACTION); "
                         "score it on a folder it never saw with `edgevision evaluate --data DIR`")
    if spec.data == CIFAR10:
        x, y, _, _ = load_cifar10_arrays()
        held = holdout_mask(array_keys(len(y)), y, spec.holdout)
        return _prepare_array(x[held], info.preprocess), y[held]
    folder = without_holdout(scan_image_folder(spec.data, classes=info.labels), spec.holdout, keep_holdout=True)
    decoded = decode_folder(folder, decoded_image_transform(info.preprocess))
    return decoded.pixels, decoded.labels


def check_run_classes(classes: Sequence[str], info) -> None:
    """The data a run's split is rebuilt from must still have the classes the run was trained on."""
    if tuple(classes) != tuple(info.labels):
        raise DataError(
            f"the training data now has classes {list(classes)} but {info.path} was trained on "
            f"{list(info.labels)}; its split cannot be rebuilt"
        )


def validation_arrays(run) -> Tuple[np.ndarray, np.ndarray]:
    """The validation images of a run (uint8, model colour order, input size) and labels, as in training.

    Lazily drawn, so that only the validation half is ever held at the input size: for MobileNetV2 the
    training half would be several GB of pixels that the caller never sees."""
    _, val = reload_split_parts(run)
    return val.all_pixels(), val.labels


# --- batches ----------------------------------------------------------------------------------------------
def loader_threads() -> int:
    """Threads preparing batches: 1 (in the training loop itself) on small CPUs, where the model already uses
    every core; several on a workstation feeding a GPU, which otherwise waits on numpy between steps.
    Batches are a pure function of (seed, epoch, index), so the count never changes what is trained on."""
    cores = os.cpu_count() or 1
    return 1 if cores <= 4 else min(8, cores // 2)


class BatchPlan:
    """The batches of one epoch, in numpy: a pure function of (seed, epoch, index), whatever asks for them."""

    def __init__(self, x, targets: np.ndarray, preprocess: PreprocessConfig, batch_size: int,
                 seed: int, augment: Optional[Augmentation] = None, shuffle: bool = True,
                 shard: Tuple[int, int] = (0, 1), multiple: int = 1, teacher: Optional["Teacher"] = None):
        """`x`: uint8 images, an array or an array-like that reads them on demand (`streaming.PixelSource`).
        `shard` (index, count): this process keeps its share of every batch, the rest go to the other
        processes of a multi-host run. `multiple`: every batch is cut to a multiple of this (the device count,
        which must split each batch evenly), which can only shorten the last batch of an epoch.
        `teacher`: mixes a trained model's probabilities of each augmented image into its targets."""
        self.x, self.targets, self.preprocess, self.teacher = x, targets, preprocess, teacher
        self.batch_size, self.seed, self.augment, self.shuffle = batch_size, seed, augment, shuffle
        self.shard, self.multiple = shard, multiple
        # Cutout fills with the normalisation mean, so a blanked square becomes zero after normalize():
        # "no information" to the network, not a black patch with its own statistics.
        self.blank = np.clip(np.rint(preprocess.mean), 0, 255).astype(x.dtype)
        p = augment.pad if augment else 0
        # In memory, the padded copy is made once; a streamed source pads each batch as it is read (the same
        # reflection of the same pixels, so the same crops).
        self.padded = np.pad(x, _pad_widths(p), mode="reflect") if p and isinstance(x, np.ndarray) else None
        # A key no (seed, epoch) or (seed, epoch, batch) stream uses.
        flips_first = augment is not None and augment.flip and augment.alternate_flip
        self.flipped_first = np.random.default_rng([seed, 0, 0, 0xF11F]).random(len(x)) < 0.5 if flips_first else None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        shuffled = np.random.default_rng([self.seed, epoch]).permutation(len(self.x)) if self.shuffle else None
        self.order = np.arange(len(self.x)) if shuffled is None else shuffled

    def __len__(self) -> int:
        last = len(self.x) % self.batch_size
        return len(self.x) // self.batch_size + (1 if last - last % self.multiple else 0)

    def batch(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        idx = idx[: len(idx) - len(idx) % self.multiple]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        pixels = self._augmented(idx, rng) if self.augment else self.x[idx]
        # Each process prepares the whole global batch (the random draws are made for all of it) and keeps
        # its share, so the processes together train on exactly the batches one process would.
        index, count = self.shard
        share = slice(index * len(idx) // count, (index + 1) * len(idx) // count)
        targets = self.targets[idx][share]
        if self.teacher is not None:
            targets = self.teacher.mix(pixels[share], targets)
        return normalize(pixels[share], self.preprocess), targets

    def _augmented(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # The draws happen in a fixed order (crop, flip, [rotate/zoom, jitter], cutout, [erase]): changing it
        # would change every batch. The bracketed ones draw nothing when off, so the recipes are unchanged.
        a = self.augment
        batch = self._cropped(idx, rng) if a.pad else self.x[idx].copy()
        if a.flip:
            flip = self.flipped_first[idx] ^ bool(self.epoch % 2) if a.alternate_flip else rng.random(len(idx)) < 0.5
            batch[flip] = batch[flip, :, ::-1]
        if a.rotation or a.zoom:
            batch = rotate_and_zoom(batch, rng, a.rotation, a.zoom)
        if a.color_jitter:
            batch = color_jitter(batch, rng, a.color_jitter)
        if a.cutout:
            self._cut_out(batch, rng)
        if a.random_erasing:
            random_erase(batch, rng, a.random_erasing)
        return batch

    def _cropped(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = self.x.shape[1:3]
        dy, dx = rng.integers(0, 2 * self.augment.pad + 1, size=(2, len(idx)))
        if self.padded is None:
            padded = np.pad(self.x[idx], _pad_widths(self.augment.pad), mode="reflect")
            return np.stack([padded[k, a : a + h, b : b + w] for k, (a, b) in enumerate(zip(dy, dx))])
        return np.stack([self.padded[j, a : a + h, b : b + w] for j, a, b in zip(idx, dy, dx)])

    def _cut_out(self, batch: np.ndarray, rng: np.random.Generator) -> None:
        n, h, w = batch.shape[:3]
        half = self.augment.cutout // 2
        cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
        for k in range(n):
            top, left = max(0, cy[k] - half), max(0, cx[k] - half)
            batch[k, top : cy[k] + half, left : cx[k] + half] = self.blank


def _pad_widths(pad: int):
    return ((0, 0), (pad, pad), (pad, pad), (0, 0))


def rotate_and_zoom(batch: np.ndarray, rng: np.random.Generator, degrees: float, zoom: float) -> np.ndarray:
    """Each image turned and scaled about its centre by random amounts, bilinear, edges repeated outwards (no
    black corners for the network to learn)."""
    n, h, w = batch.shape[:3]
    angle = np.deg2rad(rng.uniform(-degrees, degrees, n))
    scale = rng.uniform(1 - zoom, 1 + zoom, n)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy, xx = yy - cy, xx - cx
    cos, sin = (np.cos(angle) / scale)[:, None, None], (np.sin(angle) / scale)[:, None, None]
    # Where each output pixel comes from: the inverse rotation and scale of its position.
    sy = np.clip(cos * yy - sin * xx + cy, 0, h - 1)
    sx = np.clip(sin * yy + cos * xx + cx, 0, w - 1)
    y0, x0 = np.floor(sy).astype(np.intp), np.floor(sx).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (sy - y0)[..., None], (sx - x0)[..., None]
    k = np.arange(n)[:, None, None]
    src = batch.astype(np.float32)
    top = src[k, y0, x0] * (1 - fx) + src[k, y0, x1] * fx
    bottom = src[k, y1, x0] * (1 - fx) + src[k, y1, x1] * fx
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(batch.dtype)


def color_jitter(batch: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast (about each image's mean) and saturation (about its grey) scaled at random."""
    n = len(batch)
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, (3, n, 1, 1, 1))
    x = batch.astype(np.float32) * brightness
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) * contrast + x.mean(axis=(1, 2, 3), keepdims=True)
    grey = x.mean(axis=3, keepdims=True)
    x = (x - grey) * saturation + grey
    return np.clip(np.rint(x), 0, 255).astype(batch.dtype)


def random_erase(batch: np.ndarray, rng: np.random.Generator, probability: float) -> None:
    """Random erasing (Zhong et al. 2017), in place: with `probability`, a rectangle of 2-33 % of the image at
    an aspect ratio of 0.3-3.3 becomes uniform noise."""
    n, h, w, c = batch.shape
    chosen = rng.random(n) < probability
    area = rng.uniform(0.02, 0.33, n) * h * w
    aspect = np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3), n))
    eh = np.clip(np.rint(np.sqrt(area * aspect)), 1, h).astype(int)
    ew = np.clip(np.rint(np.sqrt(area / aspect)), 1, w).astype(int)
    top, left = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
    for k in np.flatnonzero(chosen):
        patch = rng.integers(0, 256, (eh[k], ew[k], c))
        batch[k, top[k] : top[k] + eh[k], left[k] : left[k] + ew[k]] = patch.astype(batch.dtype)


@dataclass(frozen=True)
class Teacher:
    """Knowledge distillation (Hinton et al., 2015) with soft targets: each training image's target becomes
    `weight` of a trained model's probabilities for that image, as augmented, plus the rest of its one-hot
    label. A .tflite teacher runs in LiteRT, so it costs the student's backend nothing and runs anywhere the
    edge runtime does (a run directory is scored by Keras); it sees the student's pixels, before normalisation."""

    probabilities: Callable[[np.ndarray], np.ndarray]  # uint8 pixels (N, H, W, 3) -> (N, classes)
    weight: float

    def mix(self, pixels: np.ndarray, one_hot: np.ndarray) -> np.ndarray:
        soft = np.asarray(self.probabilities(pixels), dtype=np.float32)
        return (self.weight * soft + (1.0 - self.weight) * one_hot).astype(np.float32)


def make_batches(
    x: np.ndarray,
    y: np.ndarray,
    preprocess: PreprocessConfig,
    batch_size: int,
    seed: int,
    augment: Optional[Augmentation] = None,
    shuffle: bool = True,
    num_classes: Optional[int] = None,
    shard: Tuple[int, int] = (0, 1),
    multiple: int = 1,
    teacher: Optional[Teacher] = None,
):
    """A keras.utils.PyDataset over the uint8 images (works on every Keras backend): cached arrays, or a
    streamed source (`streaming.PixelSource`, which reads each batch's images in parallel itself).

    Targets are one-hot float32 when `num_classes` is given (label smoothing needs them), else integers.
    `shard` and `multiple`: see BatchPlan.
    """
    targets = np.eye(num_classes, dtype=np.float32)[y] if num_classes else y
    plan = BatchPlan(x, targets, preprocess, batch_size, seed, augment, shuffle, shard, multiple, teacher)
    return _keras_batches(plan)


def _keras_batches(plan: BatchPlan):
    """The plan as Keras reads it; Keras is imported only here, so this module loads without it."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            # The same workers for cached and streamed images: Keras' batch order depends on them.
            super().__init__(workers=loader_threads(), use_multiprocessing=False)
            self.plan = plan

        def set_epoch(self, epoch: int):
            plan.set_epoch(epoch)

        def __len__(self):
            return len(plan)

        def __getitem__(self, i):
            return plan.batch(i)

        def on_epoch_end(self):
            plan.set_epoch(plan.epoch + 1)

    return Batches()


def channel_stats(x: np.ndarray, sample: int = 10000, seed: int = 0) -> Tuple[Sequence[float], Sequence[float]]:
    """Per-channel mean and std (pixel units) of uint8 images, on a sample: the normalisation for a new model."""
    rng = np.random.default_rng(seed)
    pick = x[:] if len(x) <= sample else x[rng.choice(len(x), sample, replace=False)]  # [:]: a source reads
    flat = pick.reshape(-1, pick.shape[-1]).astype(np.float64)
    return tuple(np.round(flat.mean(0), 2)), tuple(np.round(np.maximum(flat.std(0), 1e-3), 2))
