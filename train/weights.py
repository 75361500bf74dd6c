"""Where MobileNetV2's ImageNet weights come from: the Keras download and cache, or a file the user gives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

from edgevision.errors import UsageError


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_weights_name(alpha: float, input_size: int) -> str:
    # The file name keras.applications.MobileNetV2 asks for (include_top=False).
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{input_size}_no_top.h5"


def resolve_mobilenet_weights(weights: Optional[str], alpha: float, input_size: int) -> Tuple[Optional[str], Optional[str]]:
    """(weights argument for keras.applications, weights file to load afterwards)."""
    if weights in (None, "none", "None", ""):
        return None, None
    if weights == "imagenet":
        if not (keras_cache_dir() / imagenet_weights_name(alpha, input_size)).exists() and not _online():
            raise UsageError(
                "MobileNetV2 ImageNet weights are not in the Keras cache "
                f"({keras_cache_dir() / imagenet_weights_name(alpha, input_size)}) and cannot be downloaded "
                "(no network): connect once so Keras can download and cache them, or pass a weights file with "
                "--weights PATH (or --weights none to train from scratch)"
            )
        return "imagenet", None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UsageError(f"--weights must be imagenet, none or a weights file; {weights!r} is none of these")
    return None, str(path)


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
