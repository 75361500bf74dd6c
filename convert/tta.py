"""Test-time augmentation baked into the converted graph, so the device gets it from one `invoke()`.

Horizontal-flip TTA ("flip") classifies an image and its mirror image and averages the two probability
vectors. Inside the graph the two views travel as one batch (original images first, then their mirrors)
through the unchanged model: no extra weights, one interpreter call, and every TFLite tool that runs the
file gets the same answers as the edge runtime. The price is twice the compute per image.

What it buys on the bundled models is in benchmarks/results/findings.md. Mirroring is only right when the classes look the same mirrored
(objects, animals: not text, not left/right arrows), which is why it is opt-in.
"""

from __future__ import annotations

from typing import Optional, Tuple

from edgevision.errors import UsageError

FLIP = "flip"
#: Supported modes and how many views each one runs.
TTA_VIEWS = {FLIP: 2}
TTA_MODES: Tuple[str, ...] = tuple(TTA_VIEWS)
WIDTH_AXIS = 2  # images are NHWC


def check_mode(mode: Optional[str]) -> None:
    if mode is not None and mode not in TTA_VIEWS:
        raise UsageError(f"unknown test-time augmentation {mode!r}; choose one of: {', '.join(TTA_MODES)}")


def describe(mode: str) -> dict:
    """What the metadata and the report record: enough for a reader to know what one invoke computes."""
    return {"mode": mode, "views": TTA_VIEWS[mode],
            "output": "mean of the class probabilities of the image and its horizontal mirror"}


def with_tta(model, mode: str):
    """A Keras 3 model that runs `model` on every view of its input and averages the probabilities."""
    import keras
    from keras import ops

    check_mode(mode)
    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="image")
    probabilities = model(ops.concatenate([inputs, ops.flip(inputs, axis=WIDTH_AXIS)], axis=0))
    outputs = _average_views(ops.reshape, ops.mean, probabilities, TTA_VIEWS[mode])
    return keras.Model(inputs, outputs, name=f"{model.name}_{mode}_tta")


def with_tta_tf_keras(model, mode: str):
    """The same for a tf_keras model (a QAT graph, which exists only in tf_keras), built from tf ops in Lambda layers:
    these are never saved, only traced by the converter, so Lambda's load-time code risk does not apply."""
    import tensorflow as tf
    import tf_keras

    check_mode(mode)
    inputs = tf_keras.Input(shape=tuple(model.input_shape[1:]), name="image")
    views = tf_keras.layers.Lambda(lambda x: tf.concat([x, tf.reverse(x, [WIDTH_AXIS])], axis=0), name="tta_views")
    average = tf_keras.layers.Lambda(lambda p: _average_views(tf.reshape, tf.reduce_mean, p, TTA_VIEWS[mode]), name="tta_average")
    return tf_keras.Model(inputs, average(model(views(inputs))), name=f"{model.name}_{mode}_tta")


def _average_views(reshape, mean, probabilities, views: int):
    # (views * batch, classes) -> (views, batch, classes) -> mean over views. A reshape, not slicing at a
    # dynamic batch size, so the converted graph stays RESHAPE + MEAN (both have int8 kernels).
    classes = probabilities.shape[-1]
    return mean(reshape(probabilities, (views, -1, classes)), axis=0)
