"""Bias correction of int8 weight rounding: a real conversion where rounding shifts the output, corrected."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="conversion needs the train extra")

from edgevision.convert import quantize  # noqa: E402
from edgevision.convert.bias_correction import bias_corrected, int8_rounding_error  # noqa: E402
from edgevision.edge_runtime.interpreter import make_interpreter  # noqa: E402

pytestmark = pytest.mark.slow
IN, OUT = 64, 8


def biased_rounding_model(nested: bool):
    """A 1x1 conv + batch norm whose int8 weights all round down by 0.45 of a step: with positive inputs
    (as after ReLU6) the errors add up to a fixed shift of every output channel instead of averaging out."""
    import keras

    steps = np.random.default_rng(0).integers(10, 100, size=(1, 1, IN, OUT)).astype(np.float32)
    kernel = (steps + 0.45) / 127.0
    kernel[0, 0, 0, :] = 1.0  # the channel maximum: scale = 1/127 exactly, so the others are 0.45 off the grid
    inputs = keras.Input((4, 4, IN))
    x = keras.layers.Conv2D(OUT, 1, use_bias=False, name="conv")(inputs)
    outputs = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").set_weights([kernel])
    if nested:  # as keras.applications backbones sit inside a classifier
        outer_in = keras.Input((4, 4, IN))
        model = keras.Model(outer_in, model(outer_in))
    return model


def int8_output(model, calib, x):
    with quantize.exported_saved_model(model) as saved:
        data = quantize.convert(saved, "int8", "float32", calib)
    interpreter = make_interpreter(data)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def test_rounding_error_is_tflites_per_channel_grid():
    kernel = np.random.default_rng(1).normal(size=(3, 3, 4, 5)).astype(np.float32)
    error = int8_rounding_error(kernel, depthwise=False)
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 127
    on_grid = (kernel + error) / scale
    np.testing.assert_allclose(on_grid, np.round(on_grid), atol=1e-3)
    assert np.all(np.abs(error) <= scale / 2 + 1e-7)
    depthwise = int8_rounding_error(kernel, depthwise=True)  # (h, w, in, mult): one scale per (in, mult) pair
    dw_scale = np.abs(kernel).max(axis=(0, 1)) / 127
    assert np.all(np.abs(depthwise) <= dw_scale / 2 + 1e-7) and not np.allclose(depthwise, error)


@pytest.mark.parametrize("nested", [False, True])
def test_correction_removes_the_systematic_shift_and_restores_the_model(nested):
    model = biased_rounding_model(nested)
    rng = np.random.default_rng(2)
    calib = rng.uniform(0.5, 1.5, size=(64, 4, 4, IN)).astype(np.float32)
    x = rng.uniform(0.5, 1.5, size=(32, 4, 4, IN)).astype(np.float32)
    reference = np.asarray(model(x))
    before = [np.array(w) for w in model.get_weights()]
    plain_shift = float(np.mean(int8_output(model, calib, x) - reference))
    with bias_corrected(model, calib) as correction:
        assert correction.corrected == ["conv"] and correction.skipped == []
        corrected = int8_output(model, calib, x)
    corrected_shift = float(np.mean(corrected - reference))
    assert plain_shift < -0.1  # every weight rounded down: a real, visible shift (~ -0.2)
    assert abs(corrected_shift) < 0.2 * abs(plain_shift)
    for w, b in zip(model.get_weights(), before):  # the model is back exactly as it was
        np.testing.assert_array_equal(np.asarray(w), b)


def test_qat_starts_from_the_corrected_weights():
    """QAT fake-quantizes kernels as TFLite rounds them, so its starting graph carries the same shift; corrected
    weights (what convert copies into tfmot's model when QAT runs alone) start it without that shift."""
    pytest.importorskip("tensorflow_model_optimization", reason="QAT needs the train extra")
    from edgevision.convert import qat_configs
    from edgevision.convert.optimize import seed_activation_ranges, seed_weight_ranges
    from edgevision.convert.tfmot_bridge import to_tf_keras

    model = biased_rounding_model(nested=False)
    rng = np.random.default_rng(3)
    calib = rng.uniform(0.5, 1.5, size=(64, 4, 4, IN)).astype(np.float32)
    x = rng.uniform(0.5, 1.5, size=(32, 4, 4, IN)).astype(np.float32)
    reference = np.asarray(model(x))

    def qat_start_shift() -> float:
        rebuilt = to_tf_keras(model)
        qat = qat_configs.quantize_apply(rebuilt)
        seed_activation_ranges(qat, rebuilt, calib, batch_size=16)
        assert seed_weight_ranges(qat) == 1
        return float(np.mean(np.asarray(qat(x, training=False)) - reference))

    plain = qat_start_shift()
    with bias_corrected(model, calib):
        corrected = qat_start_shift()
    assert plain < -0.1  # the fake-quantized kernels round down exactly as the int8 file's do
    assert abs(corrected) < 0.2 * abs(plain)
