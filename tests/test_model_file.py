"""One model file that every runtime reads: the portable interface, standard metadata, one description.

Real models from TensorFlow's converter (tests/_edge_helpers.py) and the bundled files, run by the real
interpreter; the portable rewrite is compared with the int8 route it replaces, code for code.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from _edge_helpers import LABELS, tiny_models_for
from edgevision.bundled import BUNDLED, bundled_path
from edgevision.convert.interface import make_portable
from edgevision.edge_runtime.classifier import Classifier
from edgevision.edge_runtime.interpreter import make_interpreter
from edgevision.edge_runtime.model_metadata import read_model_metadata
from edgevision.edge_runtime.preprocess import CIFAR10_MEAN_STD, MINUS_ONE_TO_ONE, PreprocessConfig, normalize
from edgevision.edge_runtime.quantization import quantize, tensor_quantization
from edgevision.edge_runtime.tflite_metadata import associated_file_names, read_standard_metadata
from edgevision.errors import ModelError


@pytest.fixture(scope="module", autouse=True)
def verdict_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEVISION_CACHE_DIR", str(tmp_path_factory.mktemp("verdicts")))
        yield


@pytest.fixture(scope="module")
def models(request, tmp_path_factory):
    return tiny_models_for(request, tmp_path_factory)


def _run(data: bytes, tensor: np.ndarray) -> np.ndarray:
    interpreter = make_interpreter(data)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _pixels(n: int, size=(32, 32), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *size, 3), dtype=np.uint8)


ORIGINAL_INPUT = "serving_default_image:0"  # what TensorFlow names the input of the tiny models


def _normalised_input(portable: bytes, pixels: np.ndarray) -> np.ndarray:
    """The tensor the portable file's first operators make: the original model's input."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=portable, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
    interpreter.invoke()
    by_name = {t["name"]: t["index"] for t in interpreter.get_tensor_details()}
    return interpreter.get_tensor(by_name[ORIGINAL_INPUT])


def test_portable_int8_computes_what_the_int8_route_computed(models):
    """uint8 pixels through the in-graph normalisation give the int8 route's input tensor and scores."""
    data = models["int8"].read_bytes()
    config = PreprocessConfig((32, 32), mean=MINUS_ONE_TO_ONE[0], std=(120.0, 127.5, 135.0))
    portable = make_portable(data, config.mean, config.std)
    q_in = tensor_quantization(make_interpreter(data).get_input_details()[0])
    details = make_interpreter(portable).get_input_details()[0]
    assert details["dtype"] == np.uint8 and details["quantization"] == (1.0, 0)
    assert make_interpreter(portable).get_output_details()[0]["dtype"] == np.uint8
    rng, codes = np.random.default_rng(3), np.tile(np.arange(256, dtype=np.uint8), 4)  # every value, 4 times
    frames = [np.stack([rng.permutation(codes) for _ in range(3)], -1).reshape(32, 32, 3) for _ in range(4)]
    for frame in frames:
        expected = quantize(normalize(frame[None], config), q_in).astype(int)
        got = _normalised_input(portable, frame[None]).astype(int)
        assert np.abs(expected - got).max() <= 1 and (expected == got).mean() > 0.99  # ties round apart
        scores = _run(data, expected.astype(np.int8)).astype(int) + 128
        assert np.array_equal(_run(portable, frame[None]).astype(int), _run(data, got.astype(np.int8)).astype(int) + 128)
        assert scores.argmax() == _run(portable, frame[None]).argmax()


def test_portable_float_is_the_float_route(models):
    data = models["float"].read_bytes()
    mean, std = (120.0, 110.0, 100.0), (60.0, 62.0, 64.0)
    portable = make_portable(data, mean, std)
    config = PreprocessConfig((32, 32), mean=mean, std=std)
    assert make_interpreter(portable).get_output_details()[0]["dtype"] == np.float32
    for pixels in _pixels(10, seed=1):
        np.testing.assert_allclose(_run(portable, pixels[None]), _run(data, normalize(pixels[None], config)),
                                   atol=1e-5)


def test_make_portable_refuses_a_portable_file(models):
    data = models["portable_int8"].read_bytes()
    with pytest.raises(ModelError, match="portable already"):
        make_portable(data, (0, 0, 0), (1, 1, 1))


def test_classifier_feeds_portable_files_the_pixels(models):
    clf = Classifier(str(models["portable_int8"]))
    assert clf.input_dtype == "uint8" and clf.preprocess.mean == (0.0, 0.0, 0.0)
    assert clf.labels == LABELS and clf.labels_source == "metadata" and clf.notes == []
    int8 = Classifier(str(models["meta_int8"]))
    frames = _pixels(20, size=(48, 40), seed=2)
    same = [clf.classify(f, top_k=1)[0].index == int8.classify(f, top_k=1)[0].index for f in frames]
    assert all(same)


def test_standard_metadata_alone_says_labels_and_per_channel_normalisation(models):
    data = models["standard_float"].read_bytes()
    meta = read_model_metadata(data)
    assert meta.origin == "standard" and meta.labels == tuple(LABELS)
    assert meta.mean == pytest.approx(CIFAR10_MEAN_STD[0]) and meta.std == pytest.approx(CIFAR10_MEAN_STD[1])
    clf = Classifier(str(models["standard_float"]))
    assert clf.preprocess_source == "metadata" and clf.labels == LABELS
    assert clf.preprocess.mean == pytest.approx(CIFAR10_MEAN_STD[0])


def test_precedence_argument_then_file_then_beside_then_assumed(models, tmp_path):
    beside = tmp_path / "float.tflite"
    shutil.copy(models["float"], beside)
    assert Classifier(str(beside)).labels_source == "assumed"
    assert "labels" in Classifier(str(beside)).notes[-1]
    (tmp_path / "float.labels.txt").write_text("\n".join(f"b{i}" for i in range(len(LABELS))) + "\n")
    clf = Classifier(str(beside))
    assert clf.labels_source == "beside" and clf.labels[0] == "b0"
    packed = tmp_path / "packed.tflite"
    shutil.copy(models["portable_int8"], packed)
    (tmp_path / "labels.txt").write_text("\n".join(f"x{i}" for i in range(len(LABELS))) + "\n")
    assert Classifier(str(packed)).labels == LABELS  # the file's own labels beat a file beside it
    given = [f"g{i}" for i in range(len(LABELS))]
    assert Classifier(str(packed), labels=given).labels == given
    assert Classifier(str(beside)).preprocess_source == "inferred" and Classifier(str(beside)).notes


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_files_are_portable_and_carry_standard_metadata(name):
    data = bundled_path(name).read_bytes()
    standard = read_standard_metadata(data)
    assert standard is not None and standard.labels_file in associated_file_names(data)
    assert standard.mean == (0.0,) * len(standard.mean) and set(standard.std) == {1.0}
    clf = Classifier(name)
    assert clf.input_dtype == "uint8" and clf.output_dtype == "uint8"
    assert clf.labels_source == "metadata" and len(clf.labels) == clf.num_classes
    meta = clf.model_metadata
    assert meta.origin == "standard+edgevision" and meta.license and meta.name == name
    assert meta.document["normalization_in_graph"]["std"][0] > 1


def test_reference_model_needs_no_labels_option(reference_model, cat_image):
    clf = Classifier(str(reference_model))
    assert clf.labels_source == "metadata" and clf.preprocess_source == "metadata"
    assert clf.preprocess.mean == (127.5, 127.5, 127.5)
    assert clf.classify(str(cat_image), top_k=1)[0].label == "Egyptian cat"


# --- one resolver ----------------------------------------------------------------------------------------
def test_resolver_names_each_kind_and_its_files(tiny_run, tmp_path):
    from edgevision.edge_runtime.model_ref import RUN, TFLITE, resolve_model_ref

    bundled = resolve_model_ref("cifar10-cnn")
    assert bundled.kind == TFLITE and bundled.bundled and bundled.model_file == bundled_path("cifar10-cnn")
    run = resolve_model_ref(tiny_run)
    assert run.kind == RUN and run.model_file == tiny_run / "model.keras" and run.labels_file.is_file()
    (tmp_path / "noext").write_bytes(bundled_path("cifar10-cnn").read_bytes()[:64])
    assert resolve_model_ref(tmp_path / "noext").kind == TFLITE  # sniffed by its identifier


@pytest.mark.parametrize("name, message", [
    ("missing.tflite", "does not exist"),
    ("m.h5", "HDF5"),
    ("notes.txt", "unknown model format"),
    ("", "without model.keras or saved_model.pb"),
])
def test_resolver_refuses_what_no_command_opens(tmp_path, name, message):
    from edgevision.edge_runtime.model_ref import resolve_model_ref

    if name and name != "missing.tflite":
        (tmp_path / name).write_bytes(b"not a model")
    with pytest.raises(ModelError, match=message):
        resolve_model_ref(tmp_path / name)


def test_resolver_refuses_a_fifo_without_blocking(tmp_path):
    import os

    from edgevision.edge_runtime.model_ref import resolve_model_ref

    os.mkfifo(tmp_path / "pipe.tflite")
    with pytest.raises(ModelError, match="not a regular file"):
        resolve_model_ref(tmp_path / "pipe.tflite")


def test_classifier_refuses_a_keras_model_in_one_line(tiny_run):
    with pytest.raises(ModelError, match="runs .tflite files.*convert it first"):
        Classifier(str(tiny_run / "model.keras"))


def test_a_bgr_model_is_refused_the_portable_interface_before_converting(tiny_run, tmp_path):
    import json
    import shutil as sh

    from edgevision.convert import ConvertOptions, convert_model
    from edgevision.errors import UsageError

    sh.copy(tiny_run / "model.keras", tmp_path / "m.keras")
    sh.copy(tiny_run / "labels.txt", tmp_path / "labels.txt")
    pre = json.loads((tiny_run / "preprocess.json").read_text())
    (tmp_path / "preprocess.json").write_text(json.dumps({**pre, "color_order": "BGR"}))
    with pytest.raises(UsageError, match="takes RGB pixels.*--io int8"):
        convert_model(tmp_path / "m.keras", "float32", tmp_path / "m.tflite", options=ConvertOptions(evaluate=False))
    assert not (tmp_path / "m.tflite").exists()
