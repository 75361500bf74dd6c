"""Empirical bias correction of int8 weight rounding (Nagel et al., 2019), before a full-integer conversion.

TFLite rounds each conv/depthwise kernel per output channel to int8 (symmetric, scale = max|w| / 127). The
rounding error of one channel's weights is tiny, but when its inputs are all positive (after ReLU6) it does not
average out: it shifts that channel's output by a fixed amount, in int8 and in int16x8 (whose weights are
int8 too). Weights moved off the int8 grid by fine-tuning suffer most (benchmarks/results/findings.md).

The correction measures each channel's mean output shift on calibration images, mean(conv(x, W_int8 - W)), and
subtracts it where the converter folds it in: the layer's bias, or the beta of the batch norm that follows.
Kernels are untouched, so the converter quantizes exactly the weights it would have; only the float model it
reads carries the compensation, which is why it is applied for the full-integer conversions alone.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

CORRECTION_IMAGES = 128  # mean shifts settle fast (benchmarks/results/findings.md)
BATCH = 16
INT8_MAX = 127  # TFLite's symmetric weight range is [-127, 127]: -128 is never used for weights
CONV_TYPES = ("Conv2D", "DepthwiseConv2D")


@dataclass
class BiasCorrection:
    """What was corrected: for the report and the model's metadata."""

    images: int
    corrected: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # conv layers with nowhere to fold a shift
    max_shift: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"method": "empirical bias correction of int8 weight rounding", "images": self.images,
                "layers": len(self.corrected), "skipped": list(self.skipped), "max_shift": round(self.max_shift, 6),
                "seconds": round(self.seconds, 3)}


@dataclass
class _Target:
    """A conv whose output shift can be folded away: `variable` (its bias, or the beta of the batch norm after
    it) absorbs `factor` times the shift of the conv's output."""

    conv: object
    variable: object
    factor: object  # 1.0 for a bias; gamma / sqrt(variance + eps) per channel for a batch norm's beta
    error: np.ndarray  # W_int8 - W of the conv's kernel
    sum: Optional[np.ndarray] = None
    count: int = 0


def int8_rounding_error(kernel: np.ndarray, depthwise: bool) -> np.ndarray:
    """W_int8 - W for TFLite's per-output-channel symmetric int8 weights. The output channel is the last axis
    of a Conv2D kernel (h, w, in, out) and the (in, multiplier) pair of a depthwise kernel (h, w, in, mult)."""
    axes = (0, 1) if depthwise else tuple(range(kernel.ndim - 1))
    scale = np.abs(kernel).max(axis=axes, keepdims=True) / INT8_MAX
    scale = np.where(scale == 0, 1.0, scale)
    return np.clip(np.round(kernel / scale), -INT8_MAX, INT8_MAX) * scale - kernel


@contextlib.contextmanager
def bias_corrected(model, calibration: np.ndarray, images: int = CORRECTION_IMAGES) -> Iterator[BiasCorrection]:
    """Correct `model` (Keras 3) in place for the duration of the block, then put every changed weight back,
    so the caller can export the corrected model and go on using the original."""
    x = np.asarray(calibration[:images], dtype=np.float32)
    result = BiasCorrection(images=len(x))
    targets = []
    for parent, conv in _convs(model) if len(model.inputs) == 1 else []:  # image classifiers: one image input
        target = _target(parent, conv)
        if target is None:
            result.skipped.append(conv.name)
        else:
            targets.append(target)
    saved = [_numpy(t.variable).copy() for t in targets]
    start = time.perf_counter()
    try:
        _measure(model, targets, x)
        for t in targets:
            if not t.count:
                result.skipped.append(t.conv.name)
                continue
            shift = t.sum / t.count
            t.variable.assign((_numpy(t.variable) - t.factor * shift).astype(np.float32))
            result.corrected.append(t.conv.name)
            result.max_shift = max(result.max_shift, float(np.abs(shift).max()))
        result.seconds = time.perf_counter() - start
        yield result
    finally:
        for t, value in zip(targets, saved):
            t.variable.assign(value)


# --- finding the layers --------------------------------------------------------------------------------------
def _functional(layer) -> bool:
    return hasattr(layer, "layers") and len(getattr(layer, "inputs", None) or []) == 1


def _convs(model) -> List[Tuple[object, object]]:
    """(parent model, conv) for every per-channel-quantized conv of the model and of its nested models."""
    out = []
    for layer in model.layers:
        if _functional(layer):
            out += _convs(layer)
        elif _is_conv(layer):
            out.append((model, layer))
    return out


def _is_conv(layer) -> bool:
    return (type(layer).__name__ in CONV_TYPES and getattr(layer, "data_format", "channels_last") == "channels_last"
            and getattr(layer, "groups", 1) == 1)


def _consumers(model, layer) -> List[object]:
    import keras

    out = []
    for other in model.layers:
        try:
            inputs = keras.tree.flatten(other.input)
        except (AttributeError, ValueError):  # never called, or called more than once: not a plain consumer
            continue
        if any(t is layer.output for t in inputs):
            out.append(other)
    return out


def _target(model, conv) -> Optional[_Target]:
    """Where a shift of conv's output can be subtracted: its own bias, or the beta of its only consumer when
    that is a batch norm (which the converter folds into the conv); None when neither exists."""
    error = int8_rounding_error(_numpy(conv.kernel), _depthwise(conv))  # Keras 3: `kernel` for depthwise too
    if getattr(conv, "use_bias", False):
        return _Target(conv, conv.bias, 1.0, error)
    consumers = _consumers(model, conv)
    if len(consumers) == 1 and type(consumers[0]).__name__ == "BatchNormalization" and consumers[0].center:
        bn = consumers[0]  # output = gamma * (z - mean) / sqrt(var + eps) + beta: a shift of z moves it by k
        gamma = _numpy(bn.gamma) if bn.scale else 1.0
        return _Target(conv, bn.beta, gamma / np.sqrt(_numpy(bn.moving_variance) + bn.epsilon), error)
    return None


def _depthwise(conv) -> bool:
    return type(conv).__name__ == "DepthwiseConv2D"


# --- measuring and folding -------------------------------------------------------------------------------------
def _measure(model, targets: List[_Target], x: np.ndarray) -> None:
    """Accumulate, per target, the per-channel sum of conv(input, W_int8 - W) over calibration batches."""
    from keras import ops

    by_conv = {id(t.conv): t for t in targets}
    probes: Dict[int, object] = {}
    for start in range(0, len(x), BATCH):
        for conv, inputs in _conv_inputs(model, x[start : start + BATCH], probes):
            t = by_conv.get(id(conv))
            if t is None:
                continue
            op = ops.depthwise_conv if _depthwise(conv) else ops.conv
            z = _numpy(op(inputs, t.error, strides=conv.strides, padding=conv.padding,
                          dilation_rate=conv.dilation_rate))
            batch_sum = z.reshape(-1, z.shape[-1]).sum(axis=0, dtype=np.float64)
            t.sum = batch_sum if t.sum is None else t.sum + batch_sum
            t.count += z.size // z.shape[-1]


def _conv_inputs(model, x, probes) -> Iterator[Tuple[object, np.ndarray]]:
    """(conv layer, its input on x) for every conv in `model` and its nested functional models."""
    import keras

    layers = [layer for layer in model.layers if _is_conv(layer) or _functional(layer)]
    if not layers:
        return
    if id(model) not in probes:
        # One input tensor, not a list of one: a list makes Keras warn on every call that the structures differ.
        probes[id(model)] = keras.Model(model.inputs[0], [_node_input(layer) for layer in layers])
    values = probes[id(model)](x, training=False)
    for layer, value in zip(layers, values if isinstance(values, (list, tuple)) else [values]):
        value = _numpy(value)
        if _functional(layer):
            yield from _conv_inputs(layer, value, probes)
        else:
            yield layer, value


def _numpy(value) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(value))


def _node_input(layer):
    """The tensor a layer is called on in its parent's graph. For a nested model, `.input` is the nested model's
    own Input instead, so ask Operation's node-based property, which every layer and model inherits."""
    import keras

    return keras.Operation.input.fget(layer)
