"""`edgevision evaluate` / `predict` on every kind of model reference: run directory (tests/test_train.py),
bare .keras (ImageNet MobileNetV2, a tiny CNN), .tflite (Google's reference model, a tiny converted CNN).

The .tflite cases run in fresh processes that must never import TensorFlow or Keras.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from _data_helpers import make_image_folder, run_main
from conftest import shared_path

HEAVY = ("tensorflow", "keras", "tf_keras")
# Runs `edgevision ...` in a fresh interpreter and reports, at exit, which heavy modules got imported.
NO_TF_MAIN = textwrap.dedent(
    """
    import atexit, sys
    def report():
        heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
        sys.stderr.write("\\nHEAVY_MODULES=" + ",".join(heavy) + "\\n")
    atexit.register(report)
    if "--no-matplotlib" in sys.argv:
        sys.argv.remove("--no-matplotlib")
        sys.modules["matplotlib"] = None  # as if the edge extra alone were installed
    from edgevision.cli import main
    main(sys.argv[1:])
    """
) % (HEAVY,)


def run_light(*args, no_matplotlib=False):
    """The CLI in a fresh process; returns (CompletedProcess, heavy modules it imported)."""
    argv = [sys.executable, "-c", NO_TF_MAIN, *map(str, args)] + (["--no-matplotlib"] if no_matplotlib else [])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EDGEVISION_DEBUG": ""})
    marker = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY_MODULES=")]
    assert marker, proc.stderr
    heavy = [m for m in marker[-1].split("=", 1)[1].split(",") if m]
    proc.stderr = proc.stderr.replace(marker[-1], "").strip()
    return proc, heavy


def one_error_line(proc, code=1):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


# --- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imagenet_keras(tmp_path_factory):
    """keras.applications.MobileNetV2(weights="imagenet") built from a seeded cache and saved as a bare .keras."""
    script = shared_path("tools", "seed-keras-cache.sh")
    root = tmp_path_factory.mktemp("imagenet")
    subprocess.run(["bash", str(script), str(root / "keras-home")], check=True, capture_output=True)
    path = root / "mobilenet_v2.keras"
    code = f"import keras; keras.applications.MobileNetV2(weights='imagenet').save({str(path)!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_HOME": str(root / "keras-home"), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path


@pytest.fixture(scope="module")
def imagenet_folder(tmp_path_factory, cat_image, grace_hopper_image):
    """Class folders named like ImageNet labels, plus one file that is not an image."""
    root = tmp_path_factory.mktemp("imagenet-folder") / "data"
    (root / "Egyptian cat").mkdir(parents=True)
    (root / "military uniform").mkdir()
    shutil.copy(cat_image, root / "Egyptian cat" / "cat.bmp")
    shutil.copy(grace_hopper_image, root / "military uniform" / "grace_hopper.bmp")
    (root / "military uniform" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return root


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-folder") / "data"
    make_image_folder(root, ("cat", "dog", "ship"), per_class=4, size=(50, 40))
    return root


# --- ImageNet: the answers everybody knows ------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.slow
def test_predict_imagenet_keras_model(imagenet_keras, imagenet_labels, cat_image, grace_hopper_image, tmp_path):
    """A 1000-output Keras model with the 1001-line labels file (background first), MobileNet preprocessing
    assumed (and said), annotated copies written."""
    result = run_main("predict", imagenet_keras, cat_image, grace_hopper_image, "--labels", imagenet_labels,
                      "--top-k", 3, "--json", "--annotate", tmp_path / "annotated")
    assert result.returncode == 0, result.stderr
    preds = json.loads(result.stdout)
    assert [p["image"] for p in preds] == [str(cat_image), str(grace_hopper_image)]
    assert preds[0]["top"][0]["label"] == "Egyptian cat"
    assert preds[1]["top"][0]["label"] == "military uniform"
    assert all(len(p["top"]) == 3 for p in preds)
    assert "assuming RGB input at 224x224 scaled to [-1, 1]" in result.stderr
    import cv2

    for src in (cat_image, grace_hopper_image):
        out = tmp_path / "annotated" / src.name
        drawn, original = cv2.imread(str(out)), cv2.imread(str(src))
        assert drawn.shape == original.shape
        assert not np.array_equal(drawn[:40, :120], original[:40, :120])  # the label panel, top left
        assert np.array_equal(drawn[-40:, -40:], original[-40:, -40:])  # the rest untouched
    assert not [p for p in (tmp_path / "annotated").iterdir() if p.name.startswith(".")]  # no temporaries left

    # The same through an explicit preprocess.json (and a wrong one is a clear error).
    pre = tmp_path / "pre.json"
    pre.write_text(json.dumps({"input_size": [224, 224], "color_order": "RGB", "mean": [127.5] * 3, "std": [127.5] * 3}))
    again = run_main("predict", imagenet_keras, cat_image, "--labels", imagenet_labels, "--preprocess", pre, "--json")
    assert json.loads(again.stdout)[0]["top"][0] == preds[0]["top"][0] and "assuming" not in again.stderr
    pre.write_text(json.dumps({"input_size": [96, 96]}))
    wrong = run_main("predict", imagenet_keras, cat_image, "--labels", imagenet_labels, "--preprocess", pre)
    assert "takes 224x224 images" in one_error_line(wrong)


@pytest.mark.shared
def test_predict_reference_tflite_without_tensorflow(reference_model, imagenet_labels, cat_image, grace_hopper_image):
    proc, heavy = run_light("predict", reference_model, cat_image, grace_hopper_image, "--labels", imagenet_labels,
                            "--json", "--top-k", 5)
    assert proc.returncode == 0, proc.stderr
    assert heavy == []
    preds = json.loads(proc.stdout)
    assert preds[0]["top"][0]["label"] == "Egyptian cat" and preds[1]["top"][0]["label"] == "military uniform"
    assert all(len(p["top"]) == 5 for p in preds)
    scores = [t["score"] for t in preds[0]["top"]]
    assert scores == sorted(scores, reverse=True) and 0.5 < scores[0] <= 1.0
    # Human-readable form.
    text, _ = run_light("predict", reference_model, cat_image, "--labels", imagenet_labels, "--top-k", 1)
    assert text.returncode == 0 and "Egyptian cat" in text.stdout and "%" in text.stdout


@pytest.mark.shared
def test_evaluate_reference_tflite_without_tensorflow(reference_model, imagenet_labels, imagenet_folder, tmp_path):
    out = tmp_path / "eval"
    proc, heavy = run_light("evaluate", reference_model, "--data", imagenet_folder, "--labels", imagenet_labels,
                            "--json", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert heavy == []
    report = json.loads(proc.stdout)
    assert report["accuracy"] == 1.0 and report["n"] == 2 and report["macro_f1"] == 1.0
    assert report["skipped"] == 1 and "skipped 1 file(s)" in proc.stderr and "broken.jpg" in proc.stderr
    # An ImageNet model evaluated on two folders reports the classes involved, not 1001 rows.
    assert set(report["per_class"]) == {"Egyptian cat", "military uniform"}
    assert report["per_class"]["Egyptian cat"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "report.json").read_text())["accuracy"] == 1.0
    # Without matplotlib (the edge extra alone): a note, no PNG, the JSON all the same.
    bare = tmp_path / "bare"
    proc, _ = run_light("evaluate", reference_model, "--data", imagenet_folder, "--labels", imagenet_labels,
                        "--out", bare, no_matplotlib=True)
    assert proc.returncode == 0, proc.stderr
    assert "matplotlib is not installed" in proc.stderr and "accuracy: 100.00%" in proc.stdout
    assert (bare / "report.json").is_file() and not (bare / "confusion_matrix.png").exists()


@pytest.mark.shared
def test_wrong_labels_and_folders_are_one_line_errors(reference_model, imagenet_labels, imagenet_folder, tmp_path,
                                                      cat_image):
    five = tmp_path / "five.txt"
    five.write_text("a\nb\nc\nd\ne\n")
    proc, _ = run_light("predict", reference_model, cat_image, "--labels", five)
    assert "5 class names but the model has 1001 outputs" in one_error_line(proc)
    data = tmp_path / "data"
    shutil.copytree(imagenet_folder, data)
    (data / "zebra-ish").mkdir()
    shutil.copy(cat_image, data / "zebra-ish" / "x.bmp")
    proc, _ = run_light("evaluate", reference_model, "--data", data, "--labels", imagenet_labels)
    line = one_error_line(proc)
    assert "'zebra-ish'" in line and "not among the model's 1001 labels" in line


# --- no ../shared needed: a tiny CNN as .keras and as .tflite ------------------------------------------
@pytest.mark.slow
def test_keras_and_tflite_of_one_model_agree(tiny_tflite, tiny_folder, tmp_path):
    """The same network as a bare .keras (labels.txt beside it) and as a .tflite: same answers, same report."""
    keras_eval = run_main("evaluate", tiny_tflite["keras"], "--data", tiny_folder, "--json", "--out", tmp_path / "k")
    assert keras_eval.returncode == 0, keras_eval.stderr
    tflite_eval, heavy = run_light("evaluate", tiny_tflite["tflite"], "--data", tiny_folder, "--json",
                                   "--out", tmp_path / "t")
    assert tflite_eval.returncode == 0, tflite_eval.stderr
    assert heavy == []
    k, t = json.loads(keras_eval.stdout), json.loads(tflite_eval.stdout)
    assert k["n"] == t["n"] == 12
    assert k["confusion_matrix"] == t["confusion_matrix"] and k["accuracy"] == t["accuracy"]
    images = sorted((tiny_folder / "dog").iterdir())
    kp = json.loads(run_main("predict", tiny_tflite["keras"], *images, "--json", "--top-k", 3).stdout)
    tp = json.loads(run_light("predict", tiny_tflite["tflite"], *images, "--json", "--top-k", 3)[0].stdout)
    for a, b in zip(kp, tp):
        assert [x["label"] for x in a["top"]] == [x["label"] for x in b["top"]]
        assert np.allclose([x["score"] for x in a["top"]], [x["score"] for x in b["top"]], atol=1e-4)


def test_predict_reports_unreadable_images_and_keeps_going(tiny_tflite, tiny_folder, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    good = sorted((tiny_folder / "cat").iterdir())[0]
    proc, _ = run_light("predict", tiny_tflite["tflite"], good, bad, tmp_path / "missing.jpg", "--json")
    assert proc.returncode == 1
    preds = json.loads(proc.stdout)
    assert preds[0]["image"] == str(good) and len(preds[0]["top"]) == 3  # top-k 5 clamped to 3 classes
    assert "error" in preds[1] and preds[1]["top"] == [] and "empty" in preds[1]["error"]
    assert "no such file" in preds[2]["error"]
    assert "2 of 3 image(s) could not be read" in proc.stderr


def test_model_reference_errors(tiny_tflite, tiny_folder, tmp_path):
    proc, _ = run_light("predict", tmp_path / "nope.tflite", "x.jpg")
    assert "does not exist" in one_error_line(proc)
    odd = tmp_path / "model.txt"
    odd.write_text("hello")
    proc, _ = run_light("evaluate", odd, "--data", tiny_folder)
    assert "unknown model format" in one_error_line(proc)
    proc, _ = run_light("evaluate", tmp_path, "--data", tiny_folder)
    assert "a folder without model.keras or saved_model.pb" in one_error_line(proc)
    proc, _ = run_light("predict", tiny_tflite["tflite"], "x.jpg", "--top-k", 0)
    assert "--top-k must be at least 1" in one_error_line(proc, code=2)
    proc, _ = run_light("evaluate", tiny_tflite["tflite"], "--data", tmp_path / "missing")
    assert "does not exist" in one_error_line(proc)


def test_predict_a_folder_and_bundled_names(tiny_tflite, tiny_folder):
    proc, heavy = run_light("predict", tiny_tflite["tflite"], tiny_folder / "ship", "--json", "--top-k", 1)
    assert proc.returncode == 0, proc.stderr
    assert heavy == []
    preds = json.loads(proc.stdout)
    assert [Path(p["image"]).name for p in preds] == sorted(p.name for p in (tiny_folder / "ship").iterdir())
    from edgevision.bundled import BUNDLED, MODELS_DIR

    name = next(iter(BUNDLED))
    proc, heavy = run_light("predict", name, sorted((tiny_folder / "cat").iterdir())[0], "--json")
    if (MODELS_DIR / BUNDLED[name]).is_file():
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)[0]["top"] and heavy == []
    else:
        assert "is not included in this installation" in one_error_line(proc)
