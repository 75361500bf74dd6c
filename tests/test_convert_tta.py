"""Flip test-time augmentation baked into the converted graph (`convert --tta flip`), on the tiny trained model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="conversion needs the train extra")

from conftest import run_cli  # noqa: E402
from edgevision.convert import ConvertOptions, Optimizations  # noqa: E402
from edgevision.convert.api import run_conversion  # noqa: E402
from edgevision.convert.options import Variant  # noqa: E402
from edgevision.edge_runtime.interpreter import make_interpreter  # noqa: E402
from edgevision.edge_runtime.metadata import read_metadata  # noqa: E402
from edgevision.edge_runtime.preprocess import PreprocessConfig, normalize  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tta_report(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("tta")
    options = ConvertOptions(tta="flip")
    return run_conversion(tiny_run, [Variant("float32"), Variant("int8")], options, out_dir=out), out


def shape_images(tiny_run, per_class=4):
    """Real images of the tiny run's data folder (RGB uint8, 32x32), a few per class."""
    import cv2

    files = [p for c in sorted((tiny_run.parent / "data").iterdir()) for p in sorted(c.glob("*.png"))[:per_class]]
    return np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in files])


def run_tflite(path, x):
    """Run a .tflite on a batch of images (uint8 pixels for the default interface), one per invoke, as a device does."""
    interpreter = make_interpreter(path.read_bytes())
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    probs = []
    for image in x:
        interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
        interpreter.invoke()
        probs.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(probs)


def test_flip_tta_file_computes_the_mean_of_the_image_and_its_mirror(tta_report, tiny_run):
    import keras

    report, _ = tta_report
    variants = {v.variant: v for v in report.variants}
    assert set(variants) == {"float32-flip-tta", "int8-flip-tta"}
    pixels = shape_images(tiny_run)
    x = normalize(pixels, PreprocessConfig.load(tiny_run / "preprocess.json"))
    model = keras.models.load_model(tiny_run / "model.keras")
    plain, mirrored = np.asarray(model(x)), np.asarray(model(x[:, :, ::-1]))
    got = run_tflite(variants["float32-flip-tta"].path, pixels)  # the file normalises the pixels itself
    np.testing.assert_allclose(got, (plain + mirrored) / 2, atol=1e-5)
    assert np.abs(got - plain).max() > 1e-3  # the shapes sit off-centre: the two views do differ


def test_flip_tta_int8_is_fully_integer_and_agrees_with_its_float_model(tta_report):
    report, _ = tta_report
    v = {v.variant: v for v in report.variants}["int8-flip-tta"]
    ops = {o.op for o in v.ops}
    assert {"REVERSE_V2", "CONCATENATION", "MEAN"} <= ops
    assert v.float_ops == []
    assert v.evaluation.agreement >= 0.9 and v.evaluation.prob_mae < 0.05


def test_flip_tta_is_recorded_in_the_metadata_and_the_report(tta_report):
    report, _ = tta_report
    for v in report.variants:
        meta = read_metadata(v.path.read_bytes())
        assert meta["test_time_augmentation"]["mode"] == "flip" and meta["test_time_augmentation"]["views"] == 2
    doc = report.to_dict()["test_time_augmentation"]
    assert doc["mode"] == "flip" and 0.0 <= doc["accuracy_float_single_view"] <= 1.0
    assert "flip test-time augmentation" in report.format_table()


def test_flip_tta_after_qat(tiny_run, tmp_path):
    pytest.importorskip("tensorflow_model_optimization", reason="QAT needs the train extra")
    options = ConvertOptions(tta="flip", eval_samples=30, train_samples=40,
                             optimizations=Optimizations(qat_epochs=1, qat_learning_rate=1e-3))
    (v,) = run_conversion(tiny_run, [Variant("int8", optimized=True)], options, out_dir=tmp_path).variants
    assert v.variant == "int8-qat-flip-tta"
    assert "REVERSE_V2" in {o.op for o in v.ops} and v.float_ops == []
    assert v.evaluation.agreement >= 0.8


def test_cli_rejects_an_unknown_tta_mode(tiny_run, tmp_path):
    result = run_cli("convert", tiny_run, "--quant", "float32", "--tta", "crops", "--out", tmp_path / "m.tflite")
    assert result.returncode == 2 and "Invalid value for '--tta'" in result.stderr
    assert not list(tmp_path.iterdir())
