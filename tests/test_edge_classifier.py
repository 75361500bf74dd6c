"""edge_runtime.Classifier on real models with the real interpreter.

Google's reference MobileNetV2 (a model nobody here made) and tiny models built by TensorFlow's converter in
float32, int8, uint8 and int16x8 (tests/_edge_helpers.py). Scores are checked against the slow textbook route
(normalise, quantize, set_tensor, invoke, dequantize) and against each other, not against stored numbers.
"""

from __future__ import annotations

import shutil
import zlib
import struct
from pathlib import Path

import numpy as np
import pytest

from _edge_helpers import LABELS, NUM_CLASSES, tiny_models_for
from conftest import SHARED
from edgevision.edge_runtime.classifier import Classification, Classifier
from edgevision.edge_runtime.images import read_image
from edgevision.edge_runtime.interpreter import make_interpreter
from edgevision.edge_runtime.preprocess import PreprocessConfig, normalize, prepare_pixels
from edgevision.edge_runtime.quantization import dequantize, quantize, tensor_quantization
from edgevision.errors import DependencyError, ImageError, LabelsError, UsageError

PHOTOS = ("cat.bmp", "grace_hopper.bmp", "cat_720p.jpg")


@pytest.fixture(scope="module", autouse=True)
def verdict_cache(tmp_path_factory):
    """A private verdict cache, so the tests neither read nor fill the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("verdicts")
        mp.setenv("EDGEVISION_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def models(request, tmp_path_factory):
    return tiny_models_for(request, tmp_path_factory)


@pytest.fixture(scope="module")
def photos():
    """Real photos and their flips and quarter crops (21 images with varied content)."""
    paths = [SHARED / "images" / p for p in PHOTOS]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"needs the photos in {SHARED / 'images'} (the read-only ../shared data folder)")
    out = []
    for image in map(read_image, paths):
        h, w = image.shape[:2]
        out += [image, image[::-1], image[:, ::-1], image[: h // 2, : w // 2], image[h // 2 :, : w // 2],
                image[: h // 2, w // 2 :], image[h // 2 :, w // 2 :]]
    return [np.ascontiguousarray(i) for i in out]


@pytest.fixture(scope="module")
def reference(reference_model, imagenet_labels):
    return Classifier(reference_model, labels=imagenet_labels)


def textbook_scores(model_path, image_bgr, config: PreprocessConfig) -> np.ndarray:
    """The slow route, written out: resize, normalise, quantize, invoke, dequantize (softmax left out)."""
    interpreter = make_interpreter(model_path.read_bytes(), num_threads=1)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    x = normalize(prepare_pixels(image_bgr, config, "BGR")[None], config)
    q = tensor_quantization(inp)
    interpreter.set_tensor(inp["index"], x if q is None else quantize(x, q))
    interpreter.invoke()
    return dequantize(interpreter.get_tensor(out["index"]), tensor_quantization(out, "output")).reshape(-1)


# --- Google's reference model ---------------------------------------------------------------------
def test_reference_model_names_the_cat_and_the_uniform(reference, cat_image, grace_hopper_image, camera_frame):
    cat = reference.classify(read_image(cat_image), top_k=5)
    assert cat[0].label == "Egyptian cat" and cat[0].score > 0.5
    assert [c.score for c in cat] == sorted((c.score for c in cat), reverse=True)
    assert reference.classify(grace_hopper_image, top_k=1)[0].label == "military uniform"  # a path works too
    assert reference.classify(read_image(camera_frame), top_k=1)[0].label == "Egyptian cat"  # a 720p frame
    assert reference.num_classes == 1001 and reference.labels[0] == "background"
    assert (reference.input_shape, reference.input_dtype, reference.quantization) == ((1, 224, 224, 3), "uint8", "uint8")
    # Labels and normalisation come from the file's standard metadata; it has no edgevision document.
    assert reference.preprocess_source == "metadata" and reference.labels_source == "argument"
    assert reference.preprocess.mean == (127.5,) * 3 and reference.metadata is None
    assert reference.output_kind == "probabilities"  # a quantized softmax output is recognised as one


def test_reference_model_matches_the_textbook_route(reference, cat_image):
    """The metadata's mean = std = 127.5 is within one step of the input quantization's own 128/128 (scale 1/128,
    zero point 128), so the runtime feeds the pixels themselves: exactly the textbook route at 128/128."""
    image = read_image(cat_image)
    exact = PreprocessConfig(reference.input_size, mean=(128.0,) * 3, std=(128.0,) * 3)
    np.testing.assert_allclose(reference.scores(image), textbook_scores(reference.model_path, image, exact), atol=1e-7)
    stated = textbook_scores(reference.model_path, image, reference.preprocess)
    assert stated.argmax() == reference.scores(image).argmax()


def test_colour_order_batch_and_staged_api_agree(reference, cat_image, grace_hopper_image):
    bgr = [read_image(cat_image), read_image(grace_hopper_image)]
    rgb = [np.ascontiguousarray(i[:, :, ::-1]) for i in bgr]
    batch = reference.classify_batch(bgr, top_k=3)
    assert batch == [reference.classify(i, top_k=3) for i in bgr]
    assert reference.classify_batch(rgb, top_k=3, color_order="RGB") == batch
    tensor = reference.prepare(bgr[0])
    assert tensor.shape == (1, 224, 224, 3) and tensor.dtype == np.uint8
    raw = reference.invoke(tensor)
    assert raw.dtype == np.uint8 and raw.shape == (1, 1001)
    scores = reference.scores_from_output(raw)
    assert scores.dtype == np.float32 and scores.shape == (1, 1001)
    assert reference.top_k(scores[0], 3) == batch[0]
    assert isinstance(batch[0][0], Classification) and batch[0][0].to_dict()["label"] == "Egyptian cat"


def test_labels_that_do_not_fit_the_model_are_refused(reference_model, imagenet_labels, tmp_path):
    with pytest.raises(LabelsError, match="2 class names but the model has 1001 outputs"):
        Classifier(reference_model, labels=["cat", "dog"])
    short = tmp_path / "short.txt"
    short.write_text("a\nb\nc\n")
    with pytest.raises(LabelsError, match="3 class names"):
        Classifier(reference_model, labels=short)
    # 1000 ImageNet names without "background" still fit the 1001-output model (align_labels).
    no_background = tmp_path / "1000.txt"
    no_background.write_text("\n".join(imagenet_labels.read_text().splitlines()[1:]) + "\n")
    clf = Classifier(reference_model, labels=no_background)
    assert clf.labels[0] == "background" and clf.labels[286] == "Egyptian cat"


def test_a_backend_that_is_not_installed_is_a_clear_error(reference_model):
    from edgevision.edge_runtime.interpreter import available_backends

    if "tflite-runtime" in available_backends():
        pytest.skip("tflite-runtime is importable in this environment")
    with pytest.raises(DependencyError, match=r"edgevision\[tflite-runtime\]"):
        Classifier(reference_model, backend="tflite-runtime")
    with pytest.raises(UsageError, match="unknown interpreter backend"):
        Classifier(reference_model, backend="tensorflow")


# --- tiny converted models: float, int8, uint8, int16x8 -------------------------------------------
@pytest.mark.parametrize("name", ["float", "int8", "uint8", "int16x8"])
def test_each_input_type_matches_the_textbook_route(models, photos, name):
    clf = Classifier(models[name])
    assert clf.input_dtype == {"float": "float32", "int16x8": "int16"}.get(name, name)
    for image in photos[:7]:
        expected = textbook_scores(clf.model_path, image, clf.preprocess)
        # float and table paths are exact; the uint8 copy / int8 XOR fast paths may differ by one input step.
        atol = 1e-6 if name in ("float", "int16x8") else 0.05
        scores = clf.scores(image)
        np.testing.assert_allclose(scores, expected, atol=atol)
        # classify ranks the raw outputs and decodes only the winners: the same answer as the long way.
        assert clf.classify(image, top_k=3) == clf.top_k(scores, 3)


@pytest.mark.parametrize("name", ["int8", "uint8", "int16x8"])
def test_quantized_models_agree_with_the_float_model_on_real_photos(models, photos, name):
    reference, quantized = Classifier(models["float"]), Classifier(models[name])
    f = np.stack([reference.scores(p) for p in photos])
    q = np.stack([quantized.scores(p) for p in photos])
    assert len(set(f.argmax(1))) >= 3, "the test model should give varied answers on these photos"
    top2 = np.sort(f, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.1  # a clear float winner must survive quantization
    assert clear.sum() >= len(photos) // 2
    assert (f.argmax(1) == q.argmax(1))[clear].all()
    assert (f.argmax(1) == q.argmax(1)).mean() >= 0.85
    assert np.abs(f - q).mean() < 0.02 and np.abs(f - q).max() < 0.15


def test_logits_get_a_softmax(models, photos):
    probs, logits = Classifier(models["float"]), Classifier(models["logits"])
    assert logits.output_kind == probs.output_kind == "auto"  # no metadata, float outputs: look at one
    raw = logits.invoke(logits.prepare(photos[0]))
    assert raw.min() < 0 or raw.max() > 1 or abs(raw.sum() - 1) > 0.01  # really logits
    for image in photos[:5]:
        np.testing.assert_allclose(logits.scores(image), probs.scores(image), atol=1e-5)
        assert abs(float(logits.scores(image).sum()) - 1) < 1e-5
        ranked_l, ranked_p = logits.classify(image, top_k=5), probs.classify(image, top_k=5)
        assert [c.index for c in ranked_l] == [c.index for c in ranked_p]
        np.testing.assert_allclose([c.score for c in ranked_l], [c.score for c in ranked_p], atol=1e-5)
    assert (logits.output_kind, probs.output_kind) == ("logits", "probabilities")


def test_metadata_supplies_labels_and_preprocessing(models, photos):
    clf = Classifier(models["meta_int8"])
    assert clf.labels == LABELS and clf.preprocess_source == "metadata"
    assert clf.preprocess.resize == "center_crop" and clf.preprocess.mean[0] == pytest.approx(125.3)
    assert clf.quantization == "int8" and clf.metadata["task"] == "image_classification"
    for image in photos[:4]:
        np.testing.assert_allclose(clf.scores(image), textbook_scores(clf.model_path, image, clf.preprocess), atol=1e-6)
    assert clf.classify(photos[0], top_k=2)[0].label in LABELS


def test_third_party_model_without_metadata(models, photos, tmp_path):
    clf = Classifier(models["int8"])
    assert clf.labels == [f"class_{i}" for i in range(NUM_CLASSES)] and clf.preprocess_source == "inferred"
    # The 8-bit input's quantization says the range: calibrated on [-1, 1] -> mean ~127.5, std ~127.5.
    assert clf.preprocess.mean[0] == pytest.approx(127.5, abs=1.5) and clf.preprocess.std[0] == pytest.approx(127.5, rel=0.02)
    assert Classifier(models["float"]).preprocess.mean == (127.5,) * 3  # float: MobileNet-style [-1, 1]
    # preprocess= overrides the guess, and must fit the input size.
    zero_one = PreprocessConfig((32, 32), mean=(0, 0, 0), std=(255, 255, 255))
    other = Classifier(models["float"], preprocess=zero_one)
    assert other.preprocess_source == "argument" and not np.allclose(other.scores(photos[0]), clf.scores(photos[0]), atol=1e-3)
    with pytest.raises(UsageError, match=r"input_size is \[64, 64\] but .* takes \[32, 32\]"):
        Classifier(models["float"], preprocess=PreprocessConfig((64, 64)))


def test_labels_txt_beside_the_model(models, tmp_path):
    model = tmp_path / "third_party.tflite"
    shutil.copy(models["float"], model)
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    assert Classifier(model).labels == LABELS
    assert Classifier(model, labels=list("abcde")).labels == list("abcde")  # labels= comes first
    (tmp_path / "labels.txt").write_text("only\ntwo\n")
    with pytest.raises(LabelsError, match=r"labels\.txt has 2 class names but the model has 5 outputs"):
        Classifier(model)


def test_top_k(models, photos):
    clf = Classifier(models["float"])
    scores = clf.scores(photos[0])
    assert [c.index for c in clf.top_k(scores, NUM_CLASSES)] == list(np.argsort(-scores, kind="stable"))
    assert len(clf.classify(photos[0], top_k=50)) == NUM_CLASSES  # more than there are classes: all of them
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UsageError, match="top_k must be a positive integer"):
            clf.classify(photos[0], top_k=bad)


def test_image_inputs_of_every_kind(models, photos, tmp_path):
    import cv2

    clf = Classifier(models["float"])
    image = photos[0]
    ok, png = cv2.imencode(".png", image)
    expected = clf.scores(image)
    np.testing.assert_allclose(clf.scores(png.tobytes()), expected, atol=1e-6)  # encoded bytes
    path = tmp_path / "x.png"
    path.write_bytes(png.tobytes())
    np.testing.assert_allclose(clf.scores(path), expected, atol=1e-6)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    np.testing.assert_allclose(clf.scores(gray), clf.scores(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)), atol=1e-6)
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    np.testing.assert_allclose(clf.scores(bgra), expected, atol=1e-6)
    for bad in (np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros(10, np.uint8), [1, 2, 3]):
        with pytest.raises(ImageError):
            clf.classify(bad)
    with pytest.raises(UsageError, match="color.order must be one of"):
        clf.classify(image, color_order="HSV")
    with pytest.raises(UsageError, match=r"input tensor has shape \(1, 8, 8, 3\)"):
        clf.invoke(np.zeros((1, 8, 8, 3), np.float32))


def _png(width: int, height: int, rows: int) -> bytes:
    """A valid grayscale PNG whose header says width x height; only `rows` rows of data (zeros, compressed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = bytes(width + 1)
    body = b"".join(z.compress(row) for _ in range(rows)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_decompression_bombs_and_garbage_are_image_errors(models, tmp_path):
    clf = Classifier(models["float"])
    bomb = _png(20000, 20000, rows=2000)  # a real zlib stream; claims 400 Mpx
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match="20000x20000"):
        clf.classify(bomb)
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(ImageError, match="decompression bomb"):
        clf.classify(tmp_path / "bomb.png")
    for garbage in (b"", b"not an image at all", bytes(range(256)) * 40, _png(64, 64, rows=64)[:60]):
        with pytest.raises(ImageError):
            clf.classify(garbage)
    with pytest.raises(ImageError, match="no such file"):
        clf.classify(tmp_path / "missing.jpg")
    assert len(clf.classify(_png(64, 64, rows=64))) == NUM_CLASSES  # the same writer makes a valid image


def test_bundled_model_by_name():
    from edgevision.bundled import BUNDLED, MODELS_DIR

    name = next((n for n, f in BUNDLED.items() if (MODELS_DIR / f).is_file()), None)
    if name is None:
        pytest.skip("no bundled model in this checkout yet")
    clf = Classifier(name)
    assert clf.model_path == MODELS_DIR / BUNDLED[name]
    assert clf.preprocess_source == "metadata" and len(clf.labels) == clf.num_classes


def test_models_command_reports_what_each_bundled_file_says_about_itself():
    import json

    from conftest import run_cli
    from edgevision.edge_runtime.metadata import read_metadata

    done = run_cli("models", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    if not rows:
        pytest.skip("no bundled model in this checkout yet")
    for row in rows:
        data = Path(row["path"]).read_bytes()
        meta = read_metadata(data)
        assert row["bytes"] == len(data) and row["quantization"] == meta["quantization"]
        assert row["accuracy"] == meta["metrics"]["accuracy"]
        assert row["optimizations"] == meta["optimizations"]
        assert row["tta"] == (meta.get("test_time_augmentation") or {}).get("mode")
    table = run_cli("models").stdout
    assert all(row["name"] in table for row in rows) and "build" in table.splitlines()[0]


# --- the legacy backend -----------------------------------------------------------------------------
def test_tflite_runtime_gives_the_same_scores(models, photos, reference_model, imagenet_labels, tmp_path):
    from _legacy_runtime import legacy_python, run_legacy_scores

    python = legacy_python()
    image_paths = [SHARED / "images" / p for p in PHOTOS]
    cases = [(str(models[n]), None) for n in ("float", "int8", "uint8", "meta_int8", "logits")]
    cases.append((str(reference_model), str(imagenet_labels)))
    legacy = run_legacy_scores(python, cases, image_paths, tmp_path)
    for model, labels in cases:
        clf = Classifier(model, labels=labels)
        assert legacy[model]["backend"] == "tflite-runtime"
        for image_path, scores in zip(image_paths, legacy[model]["scores"]):
            ours, theirs = clf.scores(read_image(image_path)), np.array(scores)
            assert int(np.argmax(theirs)) == int(np.argmax(ours))
            quant = clf.signature.output_quantization
            if quant is None:  # float kernels agree to rounding
                np.testing.assert_allclose(theirs, ours, atol=1e-5)
            else:
                # XNNPACK and the legacy int8 kernels requantize differently: a step or two in the logits, which
                # the softmax can spread over many output steps when two classes are close (23 steps, 0.09, seen
                # on a tiny model at 0.66 / 0.34; the inputs were identical). The answer above stays the same.
                assert np.abs(theirs - ours).max() <= 0.1


def test_classify_times_its_stages_and_has_batch_forms():
    """One classify: the same answer with or without stage timings, with a score adjustment, and in batches."""
    from edgevision.edge_runtime.classifier import ClassifyTimings

    clf = Classifier("cifar10-cnn", trusted=True)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=(24 + 9 * i, 40, 3), dtype=np.uint8) for i in range(4)]
    timings = ClassifyTimings()
    for image in images:
        plain = clf.classify(image, top_k=3)
        assert clf.classify(image, top_k=3, timings=timings) == plain
        assert timings.prepare_ns > 0 and timings.invoke_ns > 0 and timings.postprocess_ns > 0
        assert timings.total_ms == pytest.approx(timings.prepare_ms + timings.invoke_ms + timings.postprocess_ms)
        # The adjustment sees the probabilities and decides the ranking: reversed scores rank last first.
        scores = clf.scores(image)
        flipped = clf.classify(image, top_k=3, adjust_scores=lambda s: 1 - s)
        assert [c.index for c in flipped] == sorted(range(10), key=lambda i: (scores[i], i))[:3]
    assert clf.classify_batch(images, top_k=2) == [clf.classify(i, top_k=2) for i in images]
    batch = clf.scores_batch(images)
    assert batch.shape == (4, 10) and np.array_equal(batch, np.stack([clf.scores(i) for i in images]))
    tensors = [clf.prepare(i) for i in images]
    assert np.array_equal(clf.scores_batch(tensors, prepared=True), batch)
    assert np.array_equal(clf.invoke_batch(tensors), np.concatenate([clf.invoke(t) for t in tensors]))
    assert clf.scores_batch([]).shape == (0, 10)
    with pytest.raises(UsageError, match="build it with Classifier.prepare"):
        clf.invoke_batch([np.zeros((1, 8, 8, 3), np.float32)])


def test_one_probability_check():
    from edgevision.edge_runtime.classifier import looks_like_probabilities, softmax

    logits = np.array([[2.0, -1.0, 0.5]], np.float32)
    assert not looks_like_probabilities(logits) and looks_like_probabilities(softmax(logits))
    near = np.array([[0.5, 0.47, 0.0]], np.float32)  # a quantized softmax is off by up to half a step per class
    assert looks_like_probabilities(near, quantized=True) and not looks_like_probabilities(near)
