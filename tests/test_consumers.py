"""edgevision's .tflite files as third-party tools read them: MediaPipe Tasks and the TFLite Task Library.

Both libraries take a classifier's input type, normalisation and labels from the file's standard TFLite
metadata alone. Each runs in its own venv (tests/_consumers.py; `make consumers` builds them) on a model file
and image files, with no edgevision, and must name the same classes and pick the same top-1 as edgevision's
runtime. Every image is written as PNG at the model's input size, so all three decode and see the same pixels
and what is compared is what the file says (input type, normalisation, labels), not three resizers.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from _consumers import (
    MEDIAPIPE,
    TFSUPPORT,
    mediapipe_classify,
    model_metadata,
    require,
    task_library_classify,
    write_standard_metadata,
)
from conftest import run_cli, shared_path
from edgevision.bundled import BUNDLED, bundled_path
from edgevision.edge_runtime.classifier import Classifier
from edgevision.edge_runtime.preprocess import MINUS_ONE_TO_ONE, PreprocessConfig

pytestmark = pytest.mark.slow

AGREEMENT = 0.96  # top-1 agreement asked of a consumer, per model
CIFAR_PER_CLASS = 12  # 120 CIFAR-10 images per bundled model
SHAPES_PER_CLASS = 40  # 120 freshly drawn shapes for the tiny converted models
CONVERTED = "convert-default"
# Per-channel normalisation for the float model of the last test: far from [-1, 1] on every channel, so a
# runtime that ignored the file's values would feed that model very different numbers.
FLOAT_MEAN = (30.0, 128.0, 220.0)
FLOAT_STD = (40.0, 90.0, 20.0)


# --- images -------------------------------------------------------------------------------------------------
def _write_pngs(images, out_dir: Path, size) -> list:
    """BGR arrays -> PNG files at `size` (height, width): lossless, so every decoder reads the same pixels."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        if image.shape[:2] != tuple(size):
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        path = out_dir / f"{i:04d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def cifar_sample():
    """CIFAR_PER_CLASS images of each CIFAR-10 class from ../shared, decoded once (BGR arrays)."""
    import cv2

    archive = shared_path("data", "cifar10-train.tar.gz")
    taken, images = {}, []
    with tarfile.open(archive) as tar:
        for member in tar:  # the archive is one folder per class: take the first few of each
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 2 or taken.get(parts[-2], 0) >= CIFAR_PER_CLASS:
                continue
            image = cv2.imdecode(np.frombuffer(tar.extractfile(member).read(), np.uint8), cv2.IMREAD_COLOR)
            if image is not None:
                taken[parts[-2]] = taken.get(parts[-2], 0) + 1
                images.append(image)
    assert len(taken) == 10 and len(images) == 10 * CIFAR_PER_CLASS, f"unexpected archive layout: {taken}"
    return images


@pytest.fixture(scope="session")
def fresh_shapes(tmp_path_factory):
    """Shapes the tiny run never saw (another seed), as BGR arrays with their true class names."""
    import cv2
    from _convert_helpers import make_shapes_folder

    root = make_shapes_folder(tmp_path_factory.mktemp("fresh-shapes"), per_class=SHAPES_PER_CLASS, seed=7,
                              corrupt=False)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [cv2.imread(str(p)) for p in files], [p.parent.name for p in files]


# --- the models ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def converted_default(tiny_run, tmp_path_factory) -> Path:
    """What `edgevision convert RUN --out FILE` writes with every option left at its default."""
    out = tmp_path_factory.mktemp("convert-default") / "model.tflite"
    proc = run_cli("convert", tiny_run, "--out", out)
    assert proc.returncode == 0, f"edgevision convert failed: {proc.stderr[-2000:]}"
    return out


def _top1(clf: Classifier, images) -> list:
    """edgevision's runtime on the image files: its top-1 label for each."""
    return [clf.classify(p, top_k=1)[0].label for p in images]


@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.shared) for name in BUNDLED]
                + [CONVERTED])
def case(request, tmp_path_factory):
    """One model file with its images (PNG at its input size), edgevision's labels and top-1 for each."""
    if request.param == CONVERTED:
        model = request.getfixturevalue("converted_default")
        pixels = request.getfixturevalue("fresh_shapes")[0]
    else:
        model = bundled_path(request.param)
        pixels = request.getfixturevalue("cifar_sample")
    clf = Classifier(model)
    images = _write_pngs(pixels, tmp_path_factory.mktemp(f"images-{request.param}"), clf.input_size)
    return {"name": request.param, "model": model, "images": images, "labels": clf.labels, "top1": _top1(clf, images)}


def _agreement(a, b) -> float:
    assert len(a) == len(b)
    return sum(x == y for x, y in zip(a, b)) / len(a)


def _check_consumer(rows, case, library: str) -> None:
    """Every answer names exactly edgevision's classes, and top-1 agrees on AGREEMENT of the images."""
    assert len(rows) == len(case["images"])
    for row in rows:
        assert sorted(label for label, _ in row) == sorted(case["labels"]), f"{library} reads other labels: {row}"
    # A uint8-score model ties often on a 1000-class output (upscaled CIFAR thumbnails give it little to go on),
    # and each library breaks ties its own way: where the consumer scores edgevision's top-1 as high as its own
    # top-1, both answers are right by the same scores.
    theirs = [ours if dict(row).get(ours) == row[0][1] else row[0][0] for row, ours in zip(rows, case["top1"])]
    rate = _agreement(theirs, case["top1"])
    assert rate >= AGREEMENT, (f"{library} agrees with edgevision's top-1 on {rate:.1%} of {len(rows)} images "
                               f"of {case['name']} (needs {AGREEMENT:.0%})")


# --- metadata helpers ---------------------------------------------------------------------------------------
def _normalization(meta: dict):
    """(mean, std) from the input tensor's NormalizationOptions, or None."""
    for unit in meta["subgraph_metadata"][0]["input_tensor_metadata"][0].get("process_units", []):
        if unit.get("options_type") == "NormalizationOptions":
            return unit["options"]["mean"], unit["options"]["std"]
    return None


def _label_files(meta: dict) -> list:
    files = meta["subgraph_metadata"][0]["output_tensor_metadata"][0].get("associated_files", [])
    return [f["name"] for f in files if f.get("type") == "TENSOR_AXIS_LABELS"]


# --- a) Google's reference model: these validate the harness --------------------------------------------
@pytest.mark.shared
@pytest.mark.parametrize("classify", [mediapipe_classify, task_library_classify], ids=[MEDIAPIPE, TFSUPPORT])
def test_reference_model_sees_an_egyptian_cat(classify, reference_model, cat_image):
    (row,) = classify(reference_model, [cat_image], top_k=3)
    assert len(row) == 3 and row[0][0] == "Egyptian cat", row
    assert row[0][1] > row[1][1] > 0, f"scores not best first: {row}"


@pytest.mark.shared
def test_reference_model_metadata_as_the_displayer_shows_it(reference_model, imagenet_labels):
    meta = model_metadata(reference_model)
    assert _normalization(meta["json"]) == ([127.5], [127.5])
    (label_file,) = _label_files(meta["json"])
    assert label_file in meta["packed"]
    packed = meta["packed"][label_file].strip().splitlines()
    assert len(packed) == 1001 and packed[:2] == ["background", "tench, Tinca tinca"]
    assert packed == imagenet_labels.read_text().strip().splitlines()


# --- b) edgevision's own files: bundled models and a default conversion -----------------------------------
def test_mediapipe_agrees_with_edgevision(case):
    rows = mediapipe_classify(case["model"], case["images"], top_k=len(case["labels"]))
    _check_consumer(rows, case, "MediaPipe")


def test_task_library_agrees_with_edgevision(case):
    rows = task_library_classify(case["model"], case["images"], top_k=len(case["labels"]))
    _check_consumer(rows, case, "the Task Library")


def test_metadata_carries_the_labels_as_a_standard_file(case):
    meta = model_metadata(case["model"])
    files = _label_files(meta["json"])
    assert len(files) == 1, f"{case['name']}: expected one TENSOR_AXIS_LABELS file, metadata has {files}"
    assert files[0] in meta["packed"], f"{case['name']}: {files[0]} is not packed in the file"
    assert meta["packed"][files[0]].strip().splitlines() == case["labels"]


# --- c) a float file with only standard metadata: edgevision must preprocess as the file says -----------
def _float_model_expecting(run_dir: Path, mean, std, out: Path) -> Path:
    """The tiny run's Keras model behind a layer that undoes per-channel (mean, std) normalisation into the
    [-1, 1] range it was trained on, converted to a float32 .tflite with plain TensorFlow (no edgevision
    metadata): the file classifies well only when fed (pixel - mean) / std per channel."""
    import keras
    import tensorflow as tf

    base = keras.saving.load_model(run_dir / "model.keras")
    inputs = keras.Input(base.input_shape[1:], name="image")
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    x = keras.layers.Rescaling(scale=std / 127.5, offset=(mean - 127.5) / 127.5)(inputs)
    model = keras.Model(inputs, base(x))
    saved = out.parent / "saved_model"
    model.export(str(saved), verbose=False)
    out.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
    return out


@pytest.fixture(scope="module")
def standard_float_model(tiny_run, tmp_path_factory) -> Path:
    require(TFSUPPORT)
    work = tmp_path_factory.mktemp("standard-float")
    bare = _float_model_expecting(tiny_run, FLOAT_MEAN, FLOAT_STD, work / "bare.tflite")
    return write_standard_metadata(bare, work / "standard.tflite", FLOAT_MEAN, FLOAT_STD, tiny_run / "labels.txt")


def test_standard_metadata_normalisation_is_what_edgevision_applies(standard_float_model, tiny_run,
                                                                     fresh_shapes, tmp_path):
    meta = model_metadata(standard_float_model)["json"]
    assert _normalization(meta) == (list(FLOAT_MEAN), list(FLOAT_STD))  # the writer wrote what we asked
    pixels, truth = fresh_shapes
    images = _write_pngs(pixels, tmp_path / "images", (32, 32))
    clf = Classifier(standard_float_model)
    assert clf.labels == (tiny_run / "labels.txt").read_text().split()
    ours = _top1(clf, images)
    theirs = [row[0][0] for row in task_library_classify(standard_float_model, images, top_k=1)]
    # The Task Library applies the file's normalisation; it must classify the shapes, or agreeing with it
    # would prove nothing.
    assert _agreement(theirs, truth) >= 0.7, f"the Task Library gets {_agreement(theirs, truth):.1%} right"
    # ... and a runtime that ignored the file's values (MobileNet's [-1, 1] for every channel) must fail here.
    ignoring = Classifier(standard_float_model, preprocess=PreprocessConfig(
        input_size=(32, 32), color_order="RGB", mean=MINUS_ONE_TO_ONE[0], std=MINUS_ONE_TO_ONE[1]))
    assert _agreement(_top1(ignoring, images), theirs) < AGREEMENT
    rate = _agreement(ours, theirs)
    assert rate >= AGREEMENT, (f"edgevision agrees with the Task Library on {rate:.1%} of {len(images)} images "
                               f"of a float model whose standard metadata says mean {FLOAT_MEAN}, std {FLOAT_STD}")
