"""`edgevision convert` through a real subprocess: success, and one clear line for each kind of bad input."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("tensorflow", reason="conversion needs the train extra")

from conftest import run_cli  # noqa: E402
from edgevision.edge_runtime.metadata import read_metadata  # noqa: E402

pytestmark = pytest.mark.slow


def bare_model(tiny_run, folder, labels=None):
    """model.keras with labels.txt and preprocess.json beside it (not a run directory)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_run / "model.keras", folder / "model.keras")
    shutil.copy(tiny_run / "preprocess.json", folder / "preprocess.json")
    (folder / "labels.txt").write_text(labels if labels is not None else (tiny_run / "labels.txt").read_text())
    return folder / "model.keras"


def assert_one_line_error(result, *needles, code=1):
    assert result.returncode == code, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_nothing_written(folder):
    leftovers = [p.name for p in folder.iterdir() if p.suffix == ".tflite" or p.name.startswith(".")]
    assert leftovers == []


def test_convert_int8_with_report(tiny_run, tmp_path):
    out, report = tmp_path / "cnn-int8.tflite", tmp_path / "report.json"
    r = run_cli("convert", tiny_run, "--quant", "int8", "--out", out, "--report", report, "--eval-samples", "12")
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stdout and "agree" in r.stdout and f"wrote {out}" in r.stdout
    assert out.is_file() and (tmp_path / "labels.txt").read_text() == (tiny_run / "labels.txt").read_text()
    doc = json.loads(report.read_text())
    (variant,) = doc["variants"]
    assert variant["quant"] == "int8" and variant["bytes"] == out.stat().st_size and variant["agreement"] >= 0.8
    assert "... loading" in r.stderr  # progress goes to stderr, the table to stdout


def test_missing_and_corrupt_model(tiny_run, tmp_path):
    assert_one_line_error(run_cli("convert", tmp_path / "nope.keras", "-q"), "does not exist")
    model = bare_model(tiny_run, tmp_path / "corrupt")
    model.write_bytes(model.read_bytes()[:1000])  # truncated download
    out = tmp_path / "corrupt" / "m.tflite"
    assert_one_line_error(run_cli("convert", model, "--quant", "float32", "--out", out, "-q"), "corrupt")
    assert_nothing_written(tmp_path / "corrupt")


def test_lambda_layer_refused_then_accepted_with_unsafe_load(tiny_run, tmp_path):
    import keras

    folder = tmp_path / "lambda"
    bare_model(tiny_run, folder)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Lambda(lambda x: x * 0.5),
        keras.layers.Conv2D(4, 3),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.save(folder / "model.keras")
    out = folder / "m.tflite"
    refused = run_cli("convert", folder / "model.keras", "--quant", "float32", "--out", out, "-q")
    assert_one_line_error(refused, "Lambda", "--unsafe-load", "run")
    assert_nothing_written(folder)
    accepted = run_cli("convert", folder / "model.keras", "--quant", "float32", "--out", out, "-q", "--unsafe-load")
    assert accepted.returncode == 0, accepted.stderr
    assert out.is_file()


def test_labels_that_do_not_match_the_outputs(tiny_run, tmp_path):
    model = bare_model(tiny_run, tmp_path / "m", labels="cat\ndog\n")
    r = run_cli("convert", model, "--quant", "float32", "--out", tmp_path / "m" / "m.tflite", "-q")
    assert_one_line_error(r, "2 class names", "3 outputs")
    assert_nothing_written(tmp_path / "m")


def test_calibration_errors(tiny_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    out = tmp_path / "m.tflite"
    assert_one_line_error(run_cli("convert", tiny_run, "--calib", empty, "--out", out, "-q"), "has no images")
    model = bare_model(tiny_run, tmp_path / "bare")
    assert_one_line_error(run_cli("convert", model, "--quant", "int8", "-q"), "calibration", "--calib")
    assert not out.exists()
    assert_nothing_written(tmp_path / "bare")


def test_usage_errors(tiny_run, tmp_path):
    assert_one_line_error(run_cli("convert", tiny_run, "--all", "-q"), "--out-dir", code=2)
    assert_one_line_error(run_cli("convert", tiny_run, "--quant", "float16", "--io", "int8", "-q"), "--io", code=2)
    assert_one_line_error(run_cli("convert", tiny_run, "--quant", "dynamic", "--qat-epochs", "1", "-q"), "int8", code=2)
    assert_one_line_error(run_cli("convert", tiny_run, "--prune", "1.5", "-q"), "sparsity", code=2)
    assert_one_line_error(run_cli("convert", tiny_run, "--out", tmp_path / "m.onnx", "-q"), ".tflite", code=2)


def test_run_trained_with_a_relative_data_path_converts_from_another_directory(tmp_path):
    """run.json records --data as typed; calibration must use the recorded absolute path, not the current cwd."""
    from _convert_helpers import make_shapes_folder

    train_cwd = tmp_path / "project"
    make_shapes_folder(train_cwd / "data", per_class=12, corrupt=False)
    trained = run_cli("train", "cnn", "--data", "data", "--out", "run", "--epochs", "1", "--batch-size", "8",
                      cwd=train_cwd)
    assert trained.returncode == 0, trained.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("convert", train_cwd / "run", "--quant", "int8", "--out", "m.tflite", "--no-eval", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    from edgevision.edge_runtime.metadata import read_metadata

    calibration = read_metadata((elsewhere / "m.tflite").read_bytes())["calibration"]
    assert "training split" in calibration["source"] and calibration["n"] > 0


def test_bias_correction_can_be_turned_off(tiny_run, tmp_path):
    out = tmp_path / "m.tflite"
    result = run_cli("convert", tiny_run, "--quant", "int8", "--no-bias-correction", "--no-eval", "--out", out,
                     "--report", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["bias_correction"] is None
    assert "bias_correction" not in read_metadata(out.read_bytes())
