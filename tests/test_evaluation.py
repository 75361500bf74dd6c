"""The one evaluation engine (edge_runtime/evaluation.py): folder-to-class rule, tie rule, report, speed
structure, and that `evaluate`, `bench --eval`, convert's comparison and a Keras predictor all go through it.

The oracle is the device's own route, `Classifier.classify` image by image on the bundled CNN.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from _data_helpers import add_odd_files, make_image_folder, run_main
from conftest import shared_path
from edgevision.edge_runtime.classifier import Classification, Classifier, rank
from edgevision.edge_runtime.evaluation import (
    TFLitePredictor,
    class_key,
    evaluate,
    evaluate_arrays,
    match_class_folders,
    predict_arrays,
    top1,
)
from edgevision.edge_runtime.images import is_image_file, read_image
from edgevision.edge_runtime.preprocess import PreprocessConfig, prepare_pixels
from edgevision.errors import DataError, ImageError, UsageError

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def cnn():
    return Classifier("cifar10-cnn", trusted=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """cat/, DOG/ and Ship/ (case differs from the labels), 7 images each, plus 2 readable and 2 broken odd files."""
    root = tmp_path_factory.mktemp("eval") / "data"
    make_image_folder(root, ("cat", "DOG", "Ship"), per_class=7, size=(36, 44))
    add_odd_files(root, "cat")  # gray and RGBA are read; the corrupt JPEG and the empty PNG are skipped
    return root


def oracle(clf, root: Path, want=lambda folder, label: class_key(folder) == class_key(label)):
    """(images scored, correct, unreadable files) by classify() one image at a time."""
    n = correct = 0
    broken = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in sub.rglob("*") if p.is_file() and is_image_file(p)):
            try:
                image = read_image(path)
            except ImageError:
                broken.append(path.name)
                continue
            n += 1
            correct += want(sub.name, clf.classify(image, top_k=1)[0].label)
    return n, correct, broken


def test_evaluate_matches_classify_image_by_image(cnn, folder):
    result = evaluate(TFLitePredictor(cnn), folder, batch_size=4)
    n, correct, broken = oracle(cnn, folder)
    assert (result.n, result.correct) == (n, correct) == (result.n, round(result.accuracy * n))
    assert n == 23 and result.confusion.sum() == n
    assert sorted(Path(p).name for p, _ in result.skipped) == sorted(broken) == ["corrupt.jpg", "empty.png"]
    assert result.report["skipped"] == 2 and "skipped 2 file(s)" in result.skipped_summary()
    # Rows are the model's label names (not the folders' spelling): the true classes and any predicted one.
    assert {"cat", "dog", "ship"} <= set(result.classes) <= set(CIFAR)
    assert result.report["per_class"]["dog"]["support"] == 7
    # The batch size changes only how the work is cut, never the answer.
    assert evaluate(TFLitePredictor(cnn), folder, batch_size=64).report == result.report


def test_unknown_folders_are_one_line_errors_unless_skipped(cnn, folder, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(folder, data)
    make_image_folder(data / "tmp", ("zebra",), per_class=2)
    (data / "tmp" / "zebra").rename(data / "zebra")
    (data / "tmp").rmdir()
    with pytest.raises(DataError) as e:
        evaluate(TFLitePredictor(cnn), data)
    message = str(e.value)
    assert "\n" not in message and "'zebra'" in message and "not among the model's 10 labels" in message
    assert "airplane" in message and "--skip-unknown" in message
    with pytest.raises(DataError, match="'three_toed_sloth' may be 'three-toed sloth'"):
        match_class_folders(_folder(tmp_path, "three_toed_sloth"), ["cat", "three-toed sloth"])
    skipped = evaluate(TFLitePredictor(cnn), data, skip_unknown=True)
    assert skipped.unknown_folders == ["zebra"] and skipped.report["unknown_folders"] == ["zebra"]
    assert skipped.n == 23 and any("zebra" in note for note in skipped.notes())
    with pytest.raises(DataError, match="none of the class folders"):
        match_class_folders(data, ["x", "y"], skip_unknown=True)


def test_underscores_case_and_repeated_labels(tmp_path):
    """'house_pet/' is the label "House pet", which names two outputs: either one is a right answer."""
    labels = list(CIFAR)
    labels[3] = labels[5] = "House pet"
    clf = Classifier("cifar10-cnn", trusted=True, labels=labels)
    root = tmp_path / "data"
    make_image_folder(root, ("house_pet", "SHIP"), per_class=6)
    result = evaluate(TFLitePredictor(clf), root)
    n, correct, _ = oracle(clf, root)
    assert (result.n, result.correct) == (n, correct) == (12, correct)
    assert result.classes.count("House pet") == 1 and "cat" not in result.classes
    # Two labels that differ only in case: the folder must name one exactly.
    labels = ["Cat", "cat"] + CIFAR[2:]
    with pytest.raises(DataError, match="matches several"):
        match_class_folders(_folder(tmp_path, "CAT"), labels)
    assert match_class_folders(_folder(tmp_path, "cat"), labels).folders[0][1] == 1


def _folder(tmp_path: Path, name: str) -> Path:
    root = tmp_path / f"one-{name}"
    (root / name).mkdir(parents=True)
    return root


def test_one_tie_rule_everywhere(cnn):
    rows = np.array([[0.2, 0.4, 0.4], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8]], np.float32)
    assert top1(rows).tolist() == [1, 0, 2]
    rng = np.random.default_rng(0)
    names = [str(i) for i in range(40)]
    for _ in range(300):  # ties that straddle the k-th place keep the lower indices, as sorting would
        row = rng.integers(0, 4, size=40).astype(np.int8)
        k = int(rng.integers(1, 41))
        assert [c.index for c in rank(row, names, k)] == sorted(range(40), key=lambda i: (-row[i], i))[:k]
        assert rank(row, names, 1)[0].index == int(top1(row[np.newaxis])[0])


def test_limit_per_class_and_bad_arguments(cnn, folder):
    limited = evaluate(TFLitePredictor(cnn), folder, limit_per_class=3)
    assert limited.n + len(limited.skipped) == 9
    with pytest.raises(UsageError, match="at least 1"):
        evaluate(TFLitePredictor(cnn), folder, limit_per_class=0)
    with pytest.raises(UsageError, match="--batch-size"):
        evaluate(TFLitePredictor(cnn), folder, batch_size=0)
    with pytest.raises(DataError, match="does not exist"):
        evaluate(TFLitePredictor(cnn), folder / "missing")


class _Recording:
    """A predictor around another that records which threads prepared images and when batches ran."""

    def __init__(self, inner, delay=0.0):
        self.inner, self.delay = inner, delay
        self.labels, self.preprocess = inner.labels, inner.preprocess
        self.threads, self.prepared, self.seen_during_first = set(), 0, None
        self._lock = threading.Lock()

    def prepare(self, image):
        with self._lock:
            self.threads.add(threading.current_thread())  # the objects, kept alive: no id reuse
            self.prepared += 1
        return self.inner.prepare(image)

    def predict_prepared(self, items):
        if self.seen_during_first is None:
            time.sleep(self.delay)
            self.seen_during_first = self.prepared
        return self.inner.predict_prepared(items)


def test_decoding_reads_ahead_on_one_pool(cnn, folder):
    recorder = _Recording(TFLitePredictor(cnn), delay=0.5)
    result = evaluate(recorder, folder, batch_size=3, workers=2)
    assert result.report == evaluate(TFLitePredictor(cnn), folder).report
    assert len(recorder.threads) <= 2  # one pool for the whole run, not one per batch
    assert threading.current_thread() not in recorder.threads  # decoding is off the inference thread
    # While the model ran the first batch (3 files), the next batches were being decoded.
    assert recorder.seen_during_first > 3


def test_a_keras_style_predictor_uses_the_same_engine(tmp_path):
    """KerasPredictor takes any float function: here 'the brightest channel', as logits."""
    from edgevision.convert.keras_predictor import KerasPredictor

    config = PreprocessConfig(input_size=(16, 16), color_order="RGB", mean=(0.0, 0.0, 0.0), std=(255.0,) * 3)
    predictor = KerasPredictor(model=None, labels=["red", "green", "blue"], preprocess=config, batch_size=5,
                               call=lambda x: 10 * x.mean(axis=(1, 2)))
    root = tmp_path / "data"
    make_image_folder(root, ("Red", "green", "blue"), per_class=6)  # the helper's class colours: R, G, B
    result = evaluate(predictor, root, batch_size=4)
    assert result.accuracy == 1.0 and result.n == 18 and predictor.output_kind == "logits"
    pixels = np.stack([prepare_pixels(read_image(p), config) for p in sorted((root / "green").iterdir())])
    probs = predict_arrays(predictor, pixels, batch_size=4)
    assert probs.shape == (6, 3) and np.allclose(probs.sum(axis=1), 1) and (top1(probs) == 1).all()
    assert evaluate_arrays(predictor, pixels, np.ones(6, np.int64)).accuracy == 1.0
    with pytest.raises(UsageError, match="uint8 pixels of shape"):
        predict_arrays(predictor, pixels.astype(np.float32))


def test_commands_score_one_folder_alike(cnn, folder, tmp_path):
    from edgevision.benchmarks.evaluate import evaluate_task

    data = tmp_path / "data"
    shutil.copytree(folder, data)
    make_image_folder(data / "more", ("unknown-class",), per_class=1)
    (data / "more" / "unknown-class").rename(data / "unknown-class")
    (data / "more").rmdir()
    refused = run_main("evaluate", "cifar10-cnn", "--data", data, "--out", tmp_path / "o")
    assert refused.returncode != 0 and "'unknown-class'" in refused.stderr and "Traceback" not in refused.stderr
    cli = run_main("evaluate", "cifar10-cnn", "--data", data, "--skip-unknown", "--json", "--out", tmp_path / "o")
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    bench = evaluate_task({"model": "cifar10-cnn", "dir": str(data), "trusted": True, "threads": 1})
    engine = evaluate(TFLitePredictor(cnn), data, skip_unknown=True)
    assert report["accuracy"] == bench["accuracy"] == engine.accuracy
    assert report["n"] == bench["images"] == engine.n == 23
    assert report["confusion_matrix"] == bench["report"]["confusion_matrix"]
    assert bench["skipped_classes"] == report["unknown_folders"] == ["unknown-class"]
    assert bench["skipped_images"] == report["skipped"] == 2


def test_convert_comparison_goes_through_the_classifier(cnn, folder):
    from edgevision.convert import evaluate as convert_eval

    files = sorted((folder / "DOG").iterdir())
    pixels = np.stack([prepare_pixels(read_image(p), cnn.preprocess) for p in files])
    converted = convert_eval.tflite_probabilities(cnn.model_path.read_bytes(), pixels, cnn.preprocess)
    assert np.array_equal(converted, cnn.scores_batch([read_image(p) for p in files]))
    assert np.array_equal(top1(converted), [cnn.classify(read_image(p), 1)[0].index for p in files])
    agreement = convert_eval.compare(converted, converted, np.full(len(files), 5))
    assert agreement.agreement == 1.0 and agreement.prob_mae == 0.0
    assert agreement.accuracy == np.mean(top1(converted) == 5)


def test_predict_prints_the_one_json_shape(cnn, folder):
    image = sorted((folder / "Ship").iterdir())[0]
    out = run_main("predict", "cifar10-cnn", image, "--json", "--top-k", 3)
    assert out.returncode == 0, out.stderr
    (pred,) = json.loads(out.stdout)
    assert pred["top"] == [c.to_dict() for c in cnn.classify(read_image(image), top_k=3)]
    assert set(pred["top"][0]) == {"index", "label", "score"}
    assert Classification(2, "x", 0.12345678).to_dict() == {"index": 2, "label": "x", "score": 0.123457}


def test_predict_start_up_skips_importlib_metadata(folder):
    image = sorted((folder / "cat").iterdir())[0]
    code = ("import sys\nfrom edgevision.cli import main\n"
            "try:\n    main(['predict', 'cifar10-cnn', sys.argv[1], '--json'])\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('\\nMETADATA=%s\\n' % ('importlib.metadata' in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(image)], capture_output=True, text=True, timeout=120)
    assert json.loads(proc.stdout)[0]["top"], proc.stderr
    assert "METADATA=False" in proc.stderr


def test_speed_benchmark_reports_both_timings(folder, capsys):
    from edgevision.benchmarks import evaluate_speed

    evaluate_speed.main(["--data", str(folder), "--models", "cifar10-cnn", "--repeats", "2", "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["model"] == "cifar10-cnn" and row["images"] == 23 and row["repeats"] == 2
    for part in ("evaluate", "floor"):
        assert 0 < row[part]["min_s"] <= row[part]["median_s"] <= row[part]["max_s"]
    assert row["ratio_of_medians"] == pytest.approx(row["evaluate"]["median_s"] / row["floor"]["median_s"])
    with pytest.raises(SystemExit):
        evaluate_speed.main(["--data", str(folder), "--repeats", "0"])


@pytest.mark.shared
def test_bundled_models_on_real_cifar_images(tmp_path):
    """20 real CIFAR-10 training images per class: both bundled models score well, exactly as classify does."""
    tar = shared_path("data", "cifar10-train.tar.gz")
    root, counts = tmp_path / "cifar", {}
    with tarfile.open(tar) as archive:
        for member in archive:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 2 and counts.get(parts[-2], 0) < 20:
                counts[parts[-2]] = counts.get(parts[-2], 0) + 1
                (root / parts[-2]).mkdir(parents=True, exist_ok=True)
                (root / parts[-2] / parts[-1]).write_bytes(archive.extractfile(member).read())
    for name in ("cifar10-cnn", "cifar10-mobilenetv2"):
        clf = Classifier(name, trusted=True)
        result = evaluate(TFLitePredictor(clf), root)
        n, correct, _ = oracle(clf, root)
        assert result.n == n == 200 and result.correct == correct
        assert result.accuracy > 0.8, (name, result.accuracy)
