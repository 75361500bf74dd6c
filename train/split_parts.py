"""A run's training/validation split rebuilt without holding its pixels: decode only the images asked for.

`reload_split` decodes every image at the model's input size, which training needs but conversion does not:
calibration wants 500 training images and QAT a sample of a few thousand. At MobileNetV2's 160 px the full
CIFAR-10 split is 3.8 GB of uint8 and peaked at ~13 GB during a conversion, more than a laptop has. Here the
folder is probed once (decoded and dropped, to learn which files are readable, since the split is drawn over
the readable ones) and the requested images are decoded again at full size. The images are exactly those
`reload_split` gives at the same positions (the test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Tuple

import numpy as np

from edgevision.edge_runtime.datasets import ImageFolder, decode_folder, scan_image_folder
from edgevision.edge_runtime.preprocess import PreprocessConfig
from edgevision.errors import DataError

_READABLE = np.zeros(1, dtype=np.uint8)  # what the probe keeps of an image: only that it decoded


@dataclass(frozen=True)
class SplitPart:
    """One half of a run's split: labels now, pixels (uint8, model colour order and size) on demand."""

    which: str  # "training" or "validation"
    labels: np.ndarray
    decode: Callable[[np.ndarray], np.ndarray]  # positions in this part -> their pixels

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, index: np.ndarray) -> np.ndarray:
        return self.decode(np.asarray(index, dtype=np.int64))


def reload_split_parts(run) -> Tuple[SplitPart, SplitPart]:
    """(training, validation) parts of a run directory's split, recomputed as `edgevision train` made it."""
    from edgevision.train.data import (
        CIFAR10,
        CIFAR10_CLASSES,
        _check_every_class_decoded,
        _limit,
        _limit_indices,
        _prepare_array,
        check_run_classes,
        load_cifar10_arrays,
        recorded_data,
        stratified_split,
    )

    info, data, val_data = recorded_data(run)
    settings, preprocess = info.settings, info.preprocess
    seed, limit = settings.get("seed", 0), settings.get("limit_per_class")
    if data == CIFAR10:  # small 32x32 arrays in memory: only the resize to the input size is deferred
        x, y, _, _ = load_cifar10_arrays()
        if limit:
            x, y = _limit(x, y, limit, seed)
        classes = CIFAR10_CLASSES
        load = lambda index: _prepare_array(x[index], preprocess)  # noqa: E731
    else:
        folder = scan_image_folder(data)
        files, y = _probe(folder, _limit_indices(folder.labels, limit, seed) if limit else None)
        _check_every_class_decoded(y, folder.classes, folder.root)
        classes = folder.classes
        load = _file_loader(folder, files, y, preprocess)
    check_run_classes(classes, info)
    if val_data:
        val_folder = scan_image_folder(val_data, classes=classes)
        val_files, val_y = _probe(val_folder, None)
        return (SplitPart("training", y, load),
                SplitPart("validation", val_y, _file_loader(val_folder, val_files, val_y, preprocess)))
    train_idx, val_idx = stratified_split(y, settings.get("val_split", 0.1), seed)
    if len(val_idx) == 0:
        raise DataError("the validation split is empty")
    return (SplitPart("training", y[train_idx], lambda i: load(train_idx[i])),
            SplitPart("validation", y[val_idx], lambda i: load(val_idx[i])))


def _probe(folder: ImageFolder, indices) -> Tuple[Tuple[Path, ...], np.ndarray]:
    """The readable files (in folder order) and their labels: the split is drawn over these."""
    probed = decode_folder(folder, lambda image: _READABLE, indices)
    return tuple(probed.files), probed.labels


def _file_loader(folder: ImageFolder, files, labels, preprocess: PreprocessConfig):
    from edgevision.train.data import decoded_image_transform

    transform = decoded_image_transform(preprocess)

    def load(index: np.ndarray) -> np.ndarray:
        subset = ImageFolder(folder.root, folder.classes, tuple(files[i] for i in index), labels[index])
        decoded = decode_folder(subset, transform)
        if len(decoded.pixels) != len(index):  # a file changed since the probe: the positions no longer hold
            raise DataError(f"{len(index) - len(decoded.pixels)} image(s) in {folder.root} became unreadable "
                            f"while loading them: {decoded.skipped_summary()}")
        return decoded.pixels

    return load
