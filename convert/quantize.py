"""TFLiteConverter settings for each quantization mode, and converter errors turned into one clear line.

Keras 3 models go through a SavedModel (`model.export`), which is what TFLiteConverter reads reliably for
Keras 3; tf_keras models (after QAT, pruning or clustering with tfmot) go through `from_keras_model`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np

from edgevision.convert.options import DYNAMIC, FLOAT16, FLOAT32, INT8, INT16X8, QUANT_MODES
from edgevision.errors import ConversionError, DataError, UsageError, WriteError, first_line


#: Export folders are `<tmp>/<EXPORT_PREFIX><pid>-<random>`: a convert that is killed cannot remove its own, so
#: each conversion first removes those whose process is gone.
EXPORT_PREFIX = "edgevision-export-"


@contextlib.contextmanager
def exported_saved_model(keras_model) -> Iterator[Path]:
    """A temporary SavedModel of a Keras 3 model (removed afterwards, or by the next conversion if killed)."""
    remove_stale_exports()
    folder = tempfile.gettempdir()
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{EXPORT_PREFIX}{os.getpid()}-"))
    except OSError as e:
        raise WriteError(f"cannot export the model for conversion into {folder}: {e.strerror or e} "
                         "(set TMPDIR to a writable folder with space)") from e
    try:
        try:
            keras_model.export(str(tmp / "saved_model"), format="tf_saved_model", verbose=False)
        except Exception as e:
            if _out_of_space(e):
                raise WriteError(f"cannot export the model for conversion into {folder}: the disk is full "
                                 "(free space there, or set TMPDIR to a folder with space)") from e
            raise ConversionError(f"cannot export the Keras model for conversion: {_first_line(e)}") from e
        yield tmp / "saved_model"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _out_of_space(error: Exception) -> bool:
    # TensorFlow's file writers raise their own error types; only the text says what the OS said.
    return getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(error)


def remove_stale_exports(folder: Optional[Path] = None) -> List[Path]:
    """Remove the export folders of conversions that were killed (their process is gone); returns them."""
    from edgevision.atomic import pid_alive

    removed = []
    root = Path(folder or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            pid = entry.name[len(EXPORT_PREFIX):].split("-", 1)[0]
            if entry.name.startswith(EXPORT_PREFIX) and pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _converter(source):
    import tensorflow as tf

    if isinstance(source, (str, Path)):
        return tf.lite.TFLiteConverter.from_saved_model(str(source))
    return tf.lite.TFLiteConverter.from_keras_model(source)  # a tf_keras model


def representative_dataset(inputs: np.ndarray):
    """The generator TFLite calibrates with: one normalised float32 sample at a time."""

    def gen():
        for i in range(len(inputs)):
            yield [inputs[i : i + 1].astype(np.float32, copy=False)]

    return gen


_TF_TYPES = {"int8": "int8", "uint8": "uint8", FLOAT32: "float32"}


def configure(converter, quant: str, io: str = "int8", calibration: Optional[np.ndarray] = None,
              allow_tf_ops: bool = False) -> None:
    """Apply the settings for `quant` to a TFLiteConverter."""
    import tensorflow as tf

    if quant not in QUANT_MODES:
        raise UsageError(f"unknown quantization {quant!r}; choose one of: {', '.join(QUANT_MODES)}")
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quant == FLOAT32:
        pass
    elif quant == FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quant == DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative dataset: weights only
    else:
        if calibration is None:
            raise DataError(
                f"{quant} quantization needs calibration images to measure activation ranges: pass --calib DIR "
                "(a folder of typical input images) or convert a run directory whose training data is available"
            )
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if calibration is not None:
            converter.representative_dataset = representative_dataset(calibration)
        if quant == INT8:
            builtins = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = getattr(tf, _TF_TYPES[io])
            converter.inference_output_type = getattr(tf, _TF_TYPES[io])
        elif quant == INT16X8:
            builtins = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if allow_tf_ops:
        # SELECT_TF_OPS keeps unconvertible ops as TensorFlow ops: the model then needs an interpreter built
        # with the Flex delegate, which few devices have. Opt-in only.
        builtins = builtins + [tf.lite.OpsSet.SELECT_TF_OPS]
        if quant == INT8:
            builtins.append(tf.lite.OpsSet.TFLITE_BUILTINS)
    converter.target_spec.supported_ops = builtins


def convert(source, quant: str, io: str = "int8", calibration: Optional[np.ndarray] = None,
            allow_tf_ops: bool = False) -> bytes:
    """Convert a SavedModel directory or a tf_keras model to TFLite bytes; ConversionError on failure."""
    converter = _converter(source)
    configure(converter, quant, io, calibration, allow_tf_ops)
    try:
        with warnings.catch_warnings():
            # Converting a QAT model with integer I/O warns that input statistics "were expected": the
            # representative dataset supplies them; the warning is noise for our users.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return bytes(converter.convert())
    except Exception as e:  # ConverterError, RuntimeError, ValueError: all mean "cannot convert as asked"
        raise conversion_error(e, quant, allow_tf_ops) from e


_TF_OP = re.compile(r"'(tf\.[A-Za-z0-9_]+)' op")
_UNQUANTIZABLE = re.compile(r"[Qq]uantization not yet supported for op: '?([A-Za-z0-9_.]+)")


def conversion_error(error: Exception, quant: str, allow_tf_ops: bool) -> ConversionError:
    """A converter exception as one line that names the op and says what to do."""
    text = str(error)
    ops = sorted(set(_TF_OP.findall(text)))
    if ops and not allow_tf_ops:
        return ConversionError(
            f"TensorFlow Lite has no built-in kernel for {', '.join(ops)} (in this model, --quant {quant}); "
            "replace the layer that uses it, or pass --allow-tf-ops to keep it as a TensorFlow op "
            "(SELECT_TF_OPS: the device's interpreter must then include the Flex delegate, which few do)"
        )
    unquantizable = sorted(set(_UNQUANTIZABLE.findall(text)))
    if unquantizable:
        return ConversionError(
            f"TensorFlow Lite cannot quantize {', '.join(unquantizable)} to {quant}; "
            "use --quant dynamic or float16 for this model"
        )
    if ops:
        return ConversionError(
            f"TensorFlow Lite cannot convert {', '.join(ops)}, not even as TensorFlow ops (--allow-tf-ops): "
            "replace the layer that uses it"
        )
    return ConversionError(f"TensorFlow Lite cannot convert this model with --quant {quant}: {_first_line(error)}")


def _first_line(error: Exception) -> str:
    # The converter's MLIR diagnostics start many lines with "<unknown>" (no source location): not the reason.
    return first_line(error, 400, skip=("<unknown>",))
