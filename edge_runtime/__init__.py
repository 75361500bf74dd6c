"""edgevision.edge_runtime: classify images and camera frames on a device, without TensorFlow.

Needs only the `edge` extra (numpy, OpenCV, a LiteRT interpreter). Importing this package is cheap:
the names below are loaded on first use.

This folder is installed as `edgevision.edge_runtime`: pyproject.toml's package-dir maps each top-level folder of the
repository to a subpackage of the one package `edgevision`, so code imports `edgevision.edge_runtime.<module>`.
"""

from __future__ import annotations

import importlib

# Must happen before anything imports cv2: caps the pixels OpenCV will allocate for one image.
from edgevision.edge_runtime import images as _images  # noqa: F401  (sets OPENCV_IO_MAX_IMAGE_PIXELS)

_EXPORTS = {
    "Classifier": "edgevision.edge_runtime.classifier",
    "Classification": "edgevision.edge_runtime.classifier",
    "PreprocessConfig": "edgevision.edge_runtime.preprocess",
    "read_image": "edgevision.edge_runtime.images",
    "decode_image": "edgevision.edge_runtime.images",
    "read_metadata": "edgevision.edge_runtime.metadata",
    "load_labels": "edgevision.edge_runtime.labels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
