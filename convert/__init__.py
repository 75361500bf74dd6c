"""edgevision.convert: Keras models to TensorFlow Lite, with every quantization a device needs.

Importing this package is cheap; TensorFlow is imported when a conversion runs.

This folder is installed as `edgevision.convert`: pyproject.toml's package-dir maps each top-level folder of the
repository to a subpackage of the one package `edgevision`, so code imports `edgevision.convert.<module>`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "convert_model": "edgevision.convert.api",
    "convert_all": "edgevision.convert.api",
    "run_conversion": "edgevision.convert.api",
    "ConvertOptions": "edgevision.convert.options",
    "Optimizations": "edgevision.convert.options",
    "Variant": "edgevision.convert.options",
    "QUANT_MODES": "edgevision.convert.options",
    "ConversionResult": "edgevision.convert.report",
    "ConversionReport": "edgevision.convert.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
