"""QAT, pruning and clustering end to end on the tiny trained model, and the Keras 3 -> tf_keras bridge."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow_model_optimization", reason="QAT/pruning/clustering need the train extra")

from edgevision.convert import ConvertOptions, Optimizations  # noqa: E402
from edgevision.convert.api import run_conversion  # noqa: E402
from edgevision.convert.options import Variant  # noqa: E402
from edgevision.edge_runtime.interpreter import make_interpreter  # noqa: E402
from edgevision.edge_runtime.metadata import read_metadata  # noqa: E402
from edgevision.errors import ConversionError  # noqa: E402

pytestmark = pytest.mark.slow
LR = 1e-3  # the tiny model has few steps to recover; real models use the gentler default


def kernel_tensors(model_bytes: bytes, ops=("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D")):
    """{op#i: weights} read from the .tflite flatbuffer: each op's second input (its kernel)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT8: np.int8}
    m = schema.Model.GetRootAs(bytearray(model_bytes), 0)
    sg = m.Subgraphs(0)
    out = {}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = m.OperatorCodes(op.OpcodeIndex())
        name = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        if name in ops:
            tensor = sg.Tensors(op.Inputs(1))
            data = m.Buffers(tensor.Buffer()).DataAsNumpy()
            weights = np.frombuffer(data.tobytes(), dtype=dtypes[tensor.Type()])
            out[f"{name}#{i}"] = weights.reshape(tuple(tensor.ShapeAsNumpy()))
    return out


def convert(tiny_run, tmp_path, variants, train_samples=None, **opts):
    options = ConvertOptions(optimizations=Optimizations(learning_rate=LR, qat_learning_rate=LR, **opts), eval_samples=30,
                             train_samples=train_samples)
    return run_conversion(tiny_run, variants, options, out_dir=tmp_path)


def test_qat(tiny_run, tmp_path):
    report = convert(tiny_run, tmp_path, [Variant("int8", optimized=True)], qat_epochs=2, train_samples=40)
    assert report.fine_tune["n"] == 40  # --train-samples: a seeded sample of the run's training split
    assert any("QAT ran only 4 steps" in note for note in report.warnings)  # 40 images x 2 epochs / batch 32
    (v,) = report.variants
    assert v.variant == "int8-qat" and v.path.name == "run-int8-qat.tflite"
    assert len(report.fine_tune and v.optimizations and report.variants[0].optimizations["steps"]) == 1
    meta = read_metadata(v.path.read_bytes())
    assert meta["optimizations"] == ["qat"]
    # QAT alone starts from bias-corrected weights (convert/api.py), and the file says so
    assert report.optimized_bias_correction["applied"] == "in the weights QAT started from"
    assert report.optimized_bias_correction["layers"] >= 3 and meta["bias_correction"]["layers"] >= 3
    assert "compensated in the weights QAT started from" in report.format_table()
    assert make_interpreter(v.path.read_bytes()).get_input_details()[0]["dtype"] == np.uint8  # the portable interface
    assert v.float_ops == []
    assert v.evaluation.accuracy >= v.evaluation.accuracy_float - 0.1


def test_pruning_shrinks_the_gzip_size(tiny_run, tmp_path):
    report = convert(tiny_run, tmp_path, [Variant("float32"), Variant("float32", optimized=True)],
                     prune=0.6, fine_tune_epochs=3)
    plain, pruned = report.variants
    assert pruned.variant == "float32-pruned60"
    assert pruned.gzip_bytes < 0.7 * plain.gzip_bytes  # measured 46 vs 89 KB
    zeros = np.concatenate([k.ravel() for k in kernel_tensors(pruned.model, ("CONV_2D", "FULLY_CONNECTED")).values()]) == 0
    assert zeros.mean() >= 0.55
    assert pruned.weight_sparsity >= 0.55 and plain.weight_sparsity < 0.01
    assert any("sparsity" in note for note in report.warnings)
    # Batch-norm statistics are re-estimated after pruning: without that the model fell to chance (33 %).
    assert pruned.evaluation.accuracy >= 0.6


def test_pruned_int8_converts_from_the_keras_model_with_bias_correction(tiny_run, tmp_path):
    report = convert(tiny_run, tmp_path, [Variant("int8", optimized=True)], prune=0.5, fine_tune_epochs=2)
    (v,) = report.variants
    assert v.variant == "int8-pruned50"
    # The pruned weights went back into the Keras model, which converted as a plain int8 model does: with its
    # int8 weight rounding compensated, which moves biases and batch-norm betas but never a pruned zero.
    bc = report.optimized_bias_correction
    assert bc["applied"] == "after pruning/clustering" and bc["layers"] >= 3
    assert read_metadata(v.model)["bias_correction"]["layers"] == bc["layers"]
    zeros = np.concatenate([k.ravel() for k in kernel_tensors(v.model, ("CONV_2D", "FULLY_CONNECTED")).values()]) == 0
    assert zeros.mean() >= 0.45
    assert v.float_ops == []
    assert v.evaluation.accuracy >= v.evaluation.accuracy_float - 0.1


def test_clustering_leaves_k_values_per_kernel(tiny_run, tmp_path):
    report = convert(tiny_run, tmp_path, [Variant("float32", optimized=True)], cluster=6, fine_tune_epochs=2)
    (v,) = report.variants
    kernels = kernel_tensors(v.model, ("CONV_2D", "FULLY_CONNECTED"))
    assert len(kernels) == 4
    for name, weights in kernels.items():
        # TFLite kernels are (out, ..., in); the converter folds batch norm into the kernel, which scales each
        # output channel differently, so K values per output channel is what survives in the file.
        per_channel = [len(np.unique(row)) for row in weights.reshape(weights.shape[0], -1)]
        assert max(per_channel) <= 6, name
    assert any("clustered: 4 of 5 kernels" in note for note in report.warnings)  # the depthwise one is not
    assert v.gzip_bytes < 0.5 * v.bytes
    assert v.evaluation.accuracy >= 0.6


def test_pruning_preserving_qat_keeps_the_zeros_in_int8(tiny_run, tmp_path):
    report = convert(tiny_run, tmp_path, [Variant("int8", optimized=True)], prune=0.5, qat_epochs=1)
    (v,) = report.variants
    assert v.variant == "int8-pruned50-qat"
    assert report.optimized_bias_correction is None  # pruning changed the weights; QAT then trains on them
    assert read_metadata(v.model)["optimizations"] == ["pruned", "qat"]
    kernels = [k.ravel() for k in kernel_tensors(v.model).values()]
    zeros = float(np.mean(np.concatenate(kernels) == 0))
    # tfmot's pruning-preserving QAT keeps most zeros (measured 35-41 % of 50 % depending on the batch order: one
    # conv+ReLU layer loses some); plain QAT after pruning would fill them all in (~0 %).
    assert zeros >= 0.3
    assert v.weight_sparsity == pytest.approx(zeros, abs=1e-6)  # the report states what the file holds


def test_bridge_rebuilds_mobilenetv2_with_a_head():
    import keras

    from edgevision.convert.tfmot_bridge import check_same_function, rebuild_in_tf_keras, weights_copied_back

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(96, 96, 3), alpha=0.35)
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    for layer in base.layers:  # non-trivial batch-norm statistics, so that copying them is checked too
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([gamma, beta, rng.normal(0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.5, 1.5, var.shape).astype("float32")])
    rebuilt, sources = rebuild_in_tf_keras(model)  # nested base flattened into one graph (tfmot cannot quantize nested models)
    assert not any(hasattr(layer, "layers") for layer in rebuilt.layers)
    assert len(rebuilt.layers) == len(base.layers) + 3
    assert check_same_function(model, rebuilt, samples=3, seed=1) < 1e-4

    # Fine-tuned weights (here: perturbed) carried back into the Keras 3 model, nested layers included, and the
    # model's own weights restored afterwards.
    original = [np.array(w) for w in model.get_weights()]
    rng = np.random.default_rng(2)
    rebuilt.set_weights([w * rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in rebuilt.get_weights()])
    with weights_copied_back(rebuilt, sources):
        assert check_same_function(model, rebuilt, samples=3, seed=1) < 1e-4
    for w, o in zip(model.get_weights(), original):
        np.testing.assert_array_equal(np.asarray(w), o)


def test_bridge_names_the_layers_it_cannot_carry_over():
    import keras

    from edgevision.convert.tfmot_bridge import to_tf_keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Lambda(lambda t: t * 2, name="doubler")(x)
    x = keras.layers.LayerNormalization(name="ln")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(ConversionError, match=r"doubler \(Lambda\), ln \(LayerNormalization\)"):
        to_tf_keras(model)


def test_qat_ranges_start_from_the_float_activations():
    """tfmot starts every activation range at [-6, 6]; seeding puts them where the float model's activations are."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from edgevision.convert.optimize import seed_activation_ranges

    inputs = tf_keras.Input((4,))
    hidden = tf_keras.layers.Dense(8, name="dense")(inputs)
    outputs = tf_keras.layers.ReLU(name="relu")(hidden)
    model = tf_keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(scale=40.0, size=(64, 4)).astype(np.float32)  # activations far beyond 6
    qat = tfmot.quantization.keras.quantize_model(model)
    relu = qat.get_layer("quant_relu")
    assert float(relu._output_quantizer_vars["max_var"].numpy()) == 6.0  # tfmot's start
    assert seed_activation_ranges(qat, model, x, batch_size=16) >= 2  # the input and the ReLU output at least
    batch_max = np.mean([model(x[i : i + 16]).numpy().max() for i in range(0, 64, 16)])
    assert float(relu._output_quantizer_vars["max_var"].numpy()) == pytest.approx(batch_max, rel=1e-5)
    assert batch_max > 20


def test_qat_quantizes_depthwise_kernels_per_channel():
    """tfmot 0.8 fake-quantizes a DepthwiseConv2D kernel per axis on its last axis, the depth multiplier: one range
    for the whole kernel, which wrecked MobileNetV2's QAT (12 % before training vs 91.7 % per channel). QAT must use
    one range per output channel, as TFLite's int8 depthwise kernels do."""
    import keras

    from edgevision.convert.optimize import optimize
    from edgevision.convert.quantize import convert as to_tflite

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(6, 1, use_bias=False, name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU(6.0, name="dw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="head")(x))
    dw = model.get_layer("dw")
    (kernel,) = dw.get_weights()
    scale = np.array([1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0], np.float32)  # channel ranges a per-tensor range flattens
    dw.set_weights([kernel * scale[None, None, :, None]])
    x_train = np.random.default_rng(0).normal(size=(32, 8, 8, 4)).astype(np.float32)
    y_train = np.arange(32) % 2

    tuned = optimize(model, x_train, y_train, Optimizations(qat_epochs=1, qat_learning_rate=1e-6))
    wrapper = tuned.model.get_layer("quant_dw")
    ((kernel, _, ranges),) = wrapper._weight_vars  # tfmot's QuantizeWrapper: (kernel, quantizer, its range vars)
    assert ranges["max_var"].shape == (6,)  # tfmot's default: (1,)
    # Each channel's range is its own largest |weight| (recorded before the last Adam step, hence the tolerance).
    np.testing.assert_allclose(ranges["max_var"].numpy(), np.abs(kernel.numpy()).max(axis=(0, 1, 3)), rtol=0.01)

    from ai_edge_litert.interpreter import Interpreter

    tflite = to_tflite(tuned.model, "int8", calibration=x_train)
    details = Interpreter(model_content=tflite).get_tensor_details()
    assert {d["dtype"] for d in details} <= {np.int8, np.int32}  # full int8: int32 only for biases and axes
    (dw_kernel,) = [d for d in details if d["dtype"] == np.int8 and tuple(d["shape"]) == (1, 3, 3, 6)]
    scales = dw_kernel["quantization_parameters"]["scales"]
    assert len(scales) == 6  # one scale per channel in the .tflite file
    # Each channel kept its own range. With tfmot's per-tensor fake-quant the file still has 6 scales (batch norm
    # is folded in per channel) but they were 0.24 ... 0.045: the small channels rounded to zero.
    assert scales[-1] / scales[0] > 1e4
