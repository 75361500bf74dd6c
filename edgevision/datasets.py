"""Named data sets that `edgevision evaluate --data` takes besides a folder: `cifar10`, the official test split.

The figures the bundled CIFAR-10 models publish come from validation splits of the training images; this is
how a user measures them on the 10,000 official test images instead. Keras downloads CIFAR-10 once (the `train`
extra); the test half is written once as PNGs, one folder per class, beside Keras' own cache, so the one
evaluation engine reads it like any folder and later runs reuse it. Keras is imported only when a named set
is asked for and not yet written, so `evaluate` on a folder stays TensorFlow-free.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Tuple

from edgevision.errors import DataError, UsageError

#: What `--data` takes as a name rather than a folder.
NAMED_DATA = ("cifar10",)
CIFAR10_TEST_IMAGES = 10_000
#: Written last: a folder without it is a write that was interrupted, and is written again.
COMPLETE = ".complete"
TRAIN_EXTRA = ("--data cifar10 gets the official CIFAR-10 test split through Keras, which needs the train extra: "
               "pip install 'edgevision[train]'; or pass a folder of the test images (one subfolder per class)")


def resolve_data(data: str, cache: Optional[Path] = None) -> Tuple[str, Optional[str]]:
    """`--data` as a folder the evaluation engine reads, and a note to show when a named set was written now."""
    if data not in NAMED_DATA:
        return data, None
    folder, written = cifar10_test_folder(cache)
    note = (f"wrote the official CIFAR-10 test split ({CIFAR10_TEST_IMAGES:,} images) to {folder}; later runs "
            "reuse it" if written else None)
    return str(folder), note


def cifar10_test_folder(cache: Optional[Path] = None) -> Tuple[Path, bool]:
    """The official test split as a class folder; (folder, whether it was written by this call)."""
    # Keras' cache folder, found without importing Keras (which brings TensorFlow) when the PNGs are there.
    root = cache or Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"
    folder = root / "edgevision-cifar10-test"
    if (folder / COMPLETE).is_file():
        return folder, False
    from edgevision.train.data import CIFAR10_CLASSES, load_cifar10_arrays

    from edgevision.native_log import quiet_native_stderr

    with quiet_native_stderr():  # TensorFlow's start-up lines would bury the one-line answer
        try:
            import keras  # noqa: F401  (the loader imports it; a device install has none: say what to install)
        except ImportError as e:
            raise UsageError(TRAIN_EXTRA) from e
        _, _, x_test, y_test = load_cifar10_arrays()  # one-line DataError offline, from the training loader
    write_class_folder(x_test, y_test, CIFAR10_CLASSES, folder)
    return folder, True


def write_class_folder(images_rgb, labels, classes: Sequence[str], folder: Path) -> Path:
    """uint8 RGB arrays as `folder/<class>/<index>.png` (lossless, so the pixels are the data set's own).

    Written into a temporary sibling and renamed, so an interrupted write never looks complete."""
    import cv2
    import numpy as np

    labels = np.asarray(labels).reshape(-1)
    if len(images_rgb) != len(labels) or (len(labels) and (labels.min() < 0 or labels.max() >= len(classes))):
        raise DataError(f"{len(images_rgb)} images and {len(labels)} labels in 0..{len(classes) - 1} do not match")
    tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:  # a folder per class that has images: the evaluation engine refuses an empty class folder
        for label in sorted(set(int(v) for v in labels)):
            (tmp / classes[label]).mkdir(parents=True)
    except OSError as e:
        raise DataError(f"cannot write the images under {folder.parent}: {e.strerror or e}") from e
    for i, (image, label) in enumerate(zip(images_rgb, labels)):
        path = tmp / classes[int(label)] / f"{i:05d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)):
            raise DataError(f"could not write {path} (disk full or not writable?)")
    (tmp / COMPLETE).write_text(f"{len(labels)} images\n")
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted earlier write, without its marker
    tmp.rename(folder)
    return folder
