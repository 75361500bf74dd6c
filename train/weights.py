"""Where MobileNetV2's ImageNet weights come from: the Keras download and cache, or a file the user gives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

from edgevision.errors import UsageError, first_line

#: The widths and input sizes Keras publishes MobileNetV2 ImageNet weights for (keras.applications.MobileNetV2).
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
IMAGENET_SIZES = (96, 128, 160, 192, 224)
#: The size Keras falls back to (with a warning) for any other input size.
IMAGENET_DEFAULT_SIZE = 224
WEIGHTS_HOST = "storage.googleapis.com"


def keras_home() -> Path:
    """The folder Keras caches downloads in: the one keras.utils.get_file will really use.

    Keras fixes it when it is imported (from KERAS_HOME, else ~/.keras), and get_file falls back to
    /tmp/.keras when that folder is not writable; both are mirrored here so the "is it cached?" check
    looks where Keras will look.
    """
    try:
        from keras.src.backend.config import keras_home as _keras_home  # what the imported Keras decided

        base = _keras_home()
    except Exception:  # noqa: BLE001 - a Keras without that accessor: its documented rule
        base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    base = os.path.expanduser(base)
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return Path(base)


def keras_cache_dir() -> Path:
    return keras_home() / "models"


def imagenet_weights_name(alpha: float, input_size: int) -> str:
    # The file name keras.applications.MobileNetV2 asks for (include_top=False); sizes it has no file for
    # get the 224 weights (the convolutions do not depend on the input size).
    rows = input_size if input_size in IMAGENET_SIZES else IMAGENET_DEFAULT_SIZE
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"


def offline_weights_message(alpha: float, input_size: int, why: str) -> str:
    return (
        f"MobileNetV2 ImageNet weights are not in the Keras cache ({keras_cache_dir() / imagenet_weights_name(alpha, input_size)}) "
        f"and {why}: connect to the internet once so Keras can download and cache them, or pass a weights file "
        "with --weights PATH (or --weights none to train from scratch)"
    )


def resolve_mobilenet_weights(weights: Optional[str], alpha: float, input_size: int) -> Tuple[Optional[str], Optional[str]]:
    """(weights argument for keras.applications, weights file to load afterwards)."""
    if weights in (None, "none", "None", ""):
        return None, None
    if weights == "imagenet":
        if not any(abs(alpha - a) < 1e-9 for a in IMAGENET_ALPHAS):
            raise UsageError(
                f"ImageNet weights exist for --alpha {', '.join(map(str, IMAGENET_ALPHAS))}, not {alpha}; "
                "pick one of those, or --weights none"
            )
        if not (keras_cache_dir() / imagenet_weights_name(alpha, input_size)).exists() and not online():
            raise UsageError(offline_weights_message(alpha, input_size, "cannot be downloaded (no network)"))
        return "imagenet", None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UsageError(f"--weights must be imagenet, none or a weights file; {weights!r} is none of these")
    return None, str(path)


def online(host: str = WEIGHTS_HOST, timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


_online = online  # the name the first version used


def load_weights_file(base, path: str) -> None:
    """Load a weights file into the MobileNetV2 base; UsageError saying why it does not fit.

    Accepts Keras' no-top file (the usual case) and also the full ImageNet classifier file (its extra
    classification layer is ignored: layers are then matched by name, and nothing matching is an error).
    """
    import numpy as np

    first = base.layers[1] if len(base.layers) > 1 else base.layers[0]
    before = [np.array(w) for w in first.get_weights()]
    try:
        base.load_weights(path)
        return
    except ValueError as e:
        if "layer count mismatch" not in str(e).lower():
            raise UsageError(f"--weights {path} does not fit MobileNetV2 with this --alpha: {first_line(e)}") from e
    except Exception as e:  # h5py raises OSError for non-HDF5 files; Keras many types for foreign ones
        raise UsageError(f"cannot load weights from {path} (not a Keras/HDF5 weights file?): {first_line(e)}") from e
    try:
        base.load_weights(path, by_name=True)
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"--weights {path} does not fit MobileNetV2 with this --alpha: {first_line(e)}") from e
    after = first.get_weights()
    if before and all(np.array_equal(a, b) for a, b in zip(before, after)):
        raise UsageError(f"--weights {path}: none of its layers match MobileNetV2's; is it a MobileNetV2 weights file?")
