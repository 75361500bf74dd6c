"""The converter through its Python API: real TensorFlow conversion, run by the real edge runtime."""

from __future__ import annotations

import json
from dataclasses import replace
import zipfile

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="conversion needs the train extra")

from edgevision.convert import ConvertOptions, convert_all, convert_model  # noqa: E402
from edgevision.convert.options import QUANT_MODES  # noqa: E402
from edgevision.edge_runtime.interpreter import make_interpreter  # noqa: E402
from edgevision.edge_runtime.metadata import METADATA_FORMAT, read_metadata  # noqa: E402
from edgevision.edge_runtime.model_metadata import read_model_metadata  # noqa: E402
from edgevision.edge_runtime.tflite_metadata import read_associated_file  # noqa: E402
from edgevision.edge_runtime.preprocess import PreprocessConfig, normalize  # noqa: E402
from edgevision.errors import ConversionError, DataError, ModelError  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def all_report(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("all")
    report = convert_all(tiny_run, out, report=out / "report.json")
    return report, out


def by_quant(report):
    return {v.variant: v for v in report.variants}


def test_every_mode_converts_and_runs_in_the_edge_runtime(all_report, tiny_run):
    report, out = all_report
    variants = by_quant(report)
    assert list(variants) == list(QUANT_MODES)
    pixels = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    for quant, v in variants.items():
        data = v.path.read_bytes()
        assert data == v.model and v.path.parent == out
        interpreter = make_interpreter(data, name=str(v.path))
        detail = interpreter.get_input_details()[0]
        assert tuple(detail["shape"]) == (1, 32, 32, 3)
        # The default interface: every mode takes the uint8 pixels; int8 scores leave as uint8, others as float32.
        assert detail["dtype"] == np.uint8 and detail["quantization"] == (1.0, 0)
        out_type = interpreter.get_output_details()[0]["dtype"]
        assert out_type == (np.uint8 if quant == "int8" else np.float32)
        assert v.io == ("uint8", "uint8" if quant == "int8" else "float32")
        interpreter.set_tensor(detail["index"], pixels)
        interpreter.invoke()
        assert interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).shape == (1, 3)


def test_sizes_shrink_as_expected(all_report):
    v = by_quant(all_report[0])
    assert v["float16"].bytes < 0.6 * v["float32"].bytes
    assert v["int8"].bytes < 0.4 * v["float32"].bytes
    assert v["dynamic"].bytes < 0.4 * v["float32"].bytes
    for variant in v.values():
        assert 0 < variant.gzip_bytes < variant.bytes
        assert variant.convert_seconds > 0


def test_int8_agrees_with_the_keras_model_on_real_images(all_report):
    report, _ = all_report
    v = by_quant(report)
    ev = v["int8"].evaluation
    assert ev.n == report.evaluation["n"] == 30  # the run's validation split (25 % of 120)
    assert ev.accuracy_float >= 0.7  # the tiny model did learn the shapes
    assert ev.agreement >= 0.9
    assert ev.prob_mae < 0.05
    assert abs(ev.delta) <= 0.1
    assert v["float32"].evaluation.agreement == 1.0 and v["float32"].evaluation.prob_mae < 1e-4
    assert v["int16x8"].evaluation.agreement >= 0.9


def test_ops_are_listed_and_int8_has_no_float_op(all_report):
    v = by_quant(all_report[0])
    int8_ops = {o.op: o for o in v["int8"].ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "FULLY_CONNECTED", "SOFTMAX"} <= set(int8_ops)
    assert int8_ops["CONV_2D"].output_types == ("int8",)
    assert v["int8"].float_ops == []
    assert any("int16" in o.output_types for o in v["int16x8"].ops)
    assert all("float32" in o.output_types for o in v["float32"].ops)


def test_metadata_round_trip(all_report, tiny_run):
    report, out = all_report
    labels = (tiny_run / "labels.txt").read_text().split()
    for v in report.variants:
        data = v.path.read_bytes()
        described = read_model_metadata(data)
        meta = described.document
        assert described.origin == "standard+edgevision" and list(described.labels) == labels
        assert meta["format"] == METADATA_FORMAT and meta["task"] == "image_classification"
        trained = PreprocessConfig.load(tiny_run / "preprocess.json")
        # The default interface takes the pixels and normalises inside the graph, as the metadata says.
        assert described.preprocess(trained.input_size) == replace(trained, mean=(0.0,) * 3, std=(1.0,) * 3)
        assert meta["normalization_in_graph"] == {"mean": list(trained.mean), "std": list(trained.std)}
        assert meta["quantization"] == v.quant
        assert ("bias_correction" in meta) == (v.quant in ("int8", "int16x8"))  # only where weights are int8
        if "bias_correction" in meta:  # the model card says where the correction went from this field
            assert meta["bias_correction"]["applied"] == "before conversion"
        assert meta["source"]["kind"] == "run" and len(meta["source"]["sha256"]) == 64
        assert meta["metrics"]["accuracy"] == pytest.approx(v.evaluation.accuracy)
        assert meta["producer"]["tensorflow"]
        assert read_associated_file(data, "labels.txt").decode().split() == labels
        # The appended zip is an ordinary archive for third-party tools too.
        with zipfile.ZipFile(v.path) as z:
            assert z.read("labels.txt").decode().split() == labels
    assert (out / "labels.txt").read_text().split() == labels


def test_report_json(all_report):
    report, out = all_report
    doc = json.loads((out / "report.json").read_text())
    assert [v["quant"] for v in doc["variants"]] == list(QUANT_MODES)
    for v, result in zip(doc["variants"], report.variants):
        for key in ("quant", "path", "bytes", "gzip_bytes", "accuracy", "accuracy_float", "agreement",
                    "convert_seconds", "ops", "prob_mae", "float_ops", "ratio_to_float32"):
            assert key in v
        assert v["bytes"] == result.path.stat().st_size
    assert doc["variants"][0]["ratio_to_float32"] == 1.0
    assert doc["eval_set"]["n"] == 30 and doc["calibration"]["n"] == 90
    assert doc["bias_correction"]["layers"] >= 3 and doc["bias_correction"]["images"] == 90
    table = report.format_table()
    assert "int16x8" in table and "accuracy" in table


@pytest.mark.parametrize("io, dtype", [("uint8", np.uint8), ("int8", np.int8), ("float32", np.float32)])
def test_int8_io_types(tiny_run, tmp_path, io, dtype):
    out = tmp_path / f"m-{io}.tflite"
    result = convert_model(tiny_run, "int8", out, options=ConvertOptions(io=io, evaluate=True, eval_samples=12))
    interpreter = make_interpreter(out.read_bytes())
    assert interpreter.get_input_details()[0]["dtype"] == dtype
    assert interpreter.get_output_details()[0]["dtype"] == dtype
    assert read_metadata(out.read_bytes())["io"] == {"input": io, "output": io}
    assert result.evaluation.agreement >= 0.9
    if io == "float32":  # quantize/dequantize at the edges only; everything inside integer
        assert {o.op for o in result.ops if "float32" in o.input_types + o.output_types} == {"QUANTIZE", "DEQUANTIZE"}
        assert result.float_ops == []


def test_calibration_and_evaluation_folders(tiny_run, tmp_path):
    data = tiny_run.parent / "data"
    out = tmp_path / "m.tflite"
    result = convert_model(tiny_run, "int8", out,
                           options=ConvertOptions(calib_dir=data, calib_samples=20, eval_dir=data))
    meta = read_metadata(out.read_bytes())
    assert meta["calibration"]["n"] == 20  # the broken files were sampled or not; 20 asked, all decodable ones kept
    assert result.evaluation.n == 120  # every decodable image; the two corrupt ones skipped
    assert meta["metrics"]["eval_set"] == str(data)


def test_bare_keras_file_needs_calibration_data(tiny_run, tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes((tiny_run / "model.keras").read_bytes())
    (tmp_path / "labels.txt").write_text((tiny_run / "labels.txt").read_text())
    (tmp_path / "preprocess.json").write_text((tiny_run / "preprocess.json").read_text())
    with pytest.raises(DataError, match="--calib"):
        convert_model(model, "int8", tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()
    result = convert_model(model, "dynamic")  # no calibration needed; default output beside the model
    assert result.path == tmp_path / "model-dynamic.tflite" and result.path.is_file()
    assert result.evaluation is None  # no run, no --eval: no accuracy, and no invented one


def _without_dtypes(config):
    if isinstance(config, list):
        return [_without_dtypes(item) for item in config]
    if isinstance(config, dict):
        return {k: _without_dtypes(v) for k, v in config.items() if k != "dtype"}
    return config


def test_a_model_trained_in_mixed_precision_converts_as_float32(tiny_run, tmp_path):
    """`train --mixed-precision` saves layers that compute in bfloat16 (CPU) or float16 (GPU); the converter
    and int8 calibration take float32, so loading for conversion makes the maths float32 again."""
    import shutil

    import keras

    from edgevision.convert.loading import load_keras

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    trained = keras.saving.load_model(tiny_run / "model.keras", compile=False)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = keras.Model.from_config(_without_dtypes(trained.get_config()))  # every layer takes the policy
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(trained.get_weights())
    mixed.save(run / "model.keras")
    assert {layer.dtype_policy.name for layer in mixed.layers} == {"mixed_bfloat16"}
    loaded = load_keras(run / "model.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    for got, want in zip(loaded.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(got, want)
    result = convert_model(run, "int8", tmp_path / "m.tflite", options=ConvertOptions(evaluate=True, eval_samples=12))
    assert result.evaluation.agreement >= 0.9


def _custom_op_model(tmp_path, op):
    import keras

    @keras.saving.register_keras_serializable(package="edgevision_test")
    class MathLayer(keras.layers.Layer):
        def __init__(self, op="det", **kwargs):
            super().__init__(**kwargs)
            self.op = op

        def call(self, x):
            if self.op == "erfinv":
                return keras.ops.erfinv(keras.ops.tanh(x)) * 0.1
            det = keras.ops.linalg.det(keras.ops.reshape(x[:, :2, :2, 0], (-1, 2, 2)))
            return x + keras.ops.reshape(det, (-1, 1, 1, 1))

        def get_config(self):
            return {**super().get_config(), "op": self.op}

    inputs = keras.Input((32, 32, 3))
    x = MathLayer(op)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    folder = tmp_path / op
    folder.mkdir()
    model.save(folder / "model.keras")
    return folder / "model.keras"


def test_unconvertible_op_is_named_and_tf_ops_are_opt_in(tiny_run, tmp_path):
    path = _custom_op_model(tmp_path, "det")
    opts = ConvertOptions(labels=tiny_run / "labels.txt", preprocess=tiny_run / "preprocess.json")
    out = tmp_path / "det.tflite"
    with pytest.raises(ConversionError, match=r"tf\.MatrixDeterminant.*--allow-tf-ops"):
        convert_model(path, "float32", out, options=opts)
    assert not out.exists() and not list(tmp_path.glob(".det.tflite*"))
    from dataclasses import replace

    result = convert_model(path, "float32", out, options=replace(opts, allow_tf_ops=True))
    assert any(o.op == "CUSTOM:FlexMatrixDeterminant" for o in result.ops)
    with pytest.raises(ConversionError, match=r"tf\.Erfinv, not even as TensorFlow ops"):
        convert_model(_custom_op_model(tmp_path, "erfinv"), "float32", tmp_path / "e.tflite",
                      options=replace(opts, allow_tf_ops=True))


def test_lambda_layer_is_refused_before_keras_runs_it(tmp_path):
    import keras

    marker = tmp_path / "ran"
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Lambda(lambda x: x * 2.0), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "lambda.keras")
    from edgevision.convert.loading import check_keras_file, code_carrying_layers, keras_config

    assert code_carrying_layers(keras_config(tmp_path / "lambda.keras"))[0][1] == "Lambda"
    with pytest.raises(ModelError, match="Lambda layer.*--unsafe-load"):
        check_keras_file(tmp_path / "lambda.keras")
    check_keras_file(tmp_path / "lambda.keras", unsafe_load=True)
    assert not marker.exists()


def test_saved_model_source(tiny_run, tmp_path):
    import keras

    model = keras.saving.load_model(tiny_run / "model.keras")
    model.export(str(tmp_path / "sm"), verbose=False)
    data = tiny_run.parent / "data"
    opts = ConvertOptions(labels=tiny_run / "labels.txt", preprocess=tiny_run / "preprocess.json",
                          calib_dir=data, calib_samples=16, eval_dir=data, eval_samples=30)
    result = convert_model(tmp_path / "sm", "int8", tmp_path / "sm.tflite", options=opts)
    assert result.evaluation.agreement >= 0.9
    assert read_metadata(result.path.read_bytes())["source"]["kind"] == "saved_model"


def test_split_parts_decode_exactly_the_images_of_the_full_reload(tiny_run):
    from edgevision.train.data import reload_split
    from edgevision.train.data import reload_split_parts

    full = reload_split(tiny_run)  # the tiny run's folder has two corrupt files: positions must still line up
    train, val = reload_split_parts(tiny_run)
    np.testing.assert_array_equal(train.labels, full.y_train)
    np.testing.assert_array_equal(val.labels, full.y_val)
    some = np.array([0, 7, len(train) - 1])
    np.testing.assert_array_equal(train.pixels(some), full.x_train[some])
    np.testing.assert_array_equal(val.pixels(np.arange(len(val))), full.x_val)
