"""The bundled general model (imagenet-mobilenetv2), the shipped sample photos, the defaults and the demo.

The agreement with Google's quantized MobileNetV2 needs ../shared (marked `shared`, skipped where absent); the
rest runs on the package alone.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

NAME = "imagenet-mobilenetv2"


@pytest.fixture(scope="module")
def general():
    from edgevision.edge_runtime import Classifier

    return Classifier(NAME, trusted=True)


def _top1(classifier, path: Path):
    from edgevision.edge_runtime import read_image

    return classifier.classify(read_image(path), top_k=1)[0]


def test_the_bundled_file_is_a_portable_1000_class_int8_model_with_credits(general):
    from edgevision.bundled import bundled_path
    from edgevision.edge_runtime.model_metadata import read_model_metadata

    meta = read_model_metadata(bundled_path(NAME).read_bytes())
    assert general.num_classes == 1000 and general.input_size == (224, 224)
    assert general.input_dtype == "uint8" and general.quantization == "int8"
    assert meta.origin.startswith("standard") and meta.name == NAME
    assert "Apache-2.0" in meta.license and "Keras Applications" in meta.author
    assert "not a detector" in meta.description
    assert bundled_path(NAME).stat().st_size <= 4.5e6
    assert len(set(general.labels)) == 1000 and "background" not in general.labels


def test_the_sample_photos_are_labelled_right_by_the_general_model(general):
    from edgevision.samples import SAMPLES, sample_photos

    photos = sample_photos()
    assert len(photos) == len(SAMPLES) >= 4, "a sample photo is missing from the package"
    got = {s.file: _top1(general, s.path).label for s in photos}
    assert got == {s.file: s.imagenet for s in photos}
    assert all(s.imagenet in general.labels for s in photos)


def test_the_sample_photos_come_with_their_licences():
    from edgevision.samples import SAMPLES, SAMPLES_DIR

    text = (SAMPLES_DIR / "LICENSES.md").read_text()
    for s in SAMPLES:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{s.file}`")), "")
        assert re.search(r"CC0|public domain", row), f"no licence for {s.file} in LICENSES.md"
        assert s.path.stat().st_size < 60_000  # small: shipped in every wheel


@pytest.mark.shared
def test_top1_equals_googles_quantized_mobilenetv2(general, reference_model, cat_image, grace_hopper_image):
    from edgevision.edge_runtime import Classifier
    from edgevision.samples import sample_photos

    google = Classifier(str(reference_model))  # its labels and normalisation from its own metadata
    assert google.num_classes == 1001 and google.labels[0] == "background"
    photos = [cat_image, grace_hopper_image] + [s.path for s in sample_photos()]
    ours = {p.name: _top1(general, p) for p in photos}
    theirs = {p.name: _top1(google, p) for p in photos}
    # Google's outputs are ours shifted by one ("background" first): compare the classes, not the wording.
    assert {n: c.index + 1 for n, c in ours.items()} == {n: c.index for n, c in theirs.items()}
    assert ours["cat.bmp"].label == "Egyptian cat" and ours["grace_hopper.bmp"].label == "military uniform"


def test_predict_names_the_general_model_by_name(tmp_path):
    from edgevision.samples import SAMPLES

    coffee = next(s for s in SAMPLES if s.file == "coffee.jpg")
    result = run_cli("predict", NAME, coffee.path, "--top-k", "5", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert len(row["top"]) == 5 and row["top"][0]["label"] == coffee.imagenet


def test_live_sources_and_the_page_default_to_the_general_model(cli):
    from edgevision.bundled import BUNDLED, CIFAR10_MODELS, DEFAULT_MODEL
    from edgevision.ui.settings import UiSettings, discover_models

    assert DEFAULT_MODEL == NAME and set(CIFAR10_MODELS) <= set(BUNDLED)
    help_text = cli("classify", "--help").stdout
    assert f"[default: {NAME}]" in " ".join(help_text.split())
    entries, _ = discover_models(UiSettings())
    assert [e.name for e in entries[:3]] == [NAME, "cifar10-mobilenetv2", "cifar10-cnn"]
    assert entries[0].title.startswith("General")


def test_classify_runs_the_general_model_on_a_folder_by_default(cli):
    from edgevision.samples import SAMPLES_DIR, sample_photos

    result = cli("classify", "--source", SAMPLES_DIR, "--headless", "--json", "--top-k", "1")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    expected = {s.imagenet for s in sample_photos()}
    assert len(rows) == len(sample_photos()) and {r["label"] for r in rows} == expected


def test_the_page_says_what_each_model_recognises():
    from edgevision.bundled import list_bundled
    from edgevision.ui.settings import ModelEntry, recognises

    for m in list_bundled():
        words = recognises(ModelEntry(f"bundled:{m.name}", m.name, "bundled", m.path), [])
        assert ("1000" in words) == (m.name == NAME) and ("10 classes" in words) == (m.name != NAME), words
    other = recognises(ModelEntry("folder:x", "x", "folder", Path("x.tflite")), ["red", "green", "blue"])
    assert other.startswith("Recognises 3 classes: red, green, blue")


def test_model_supplied_strings_are_escaped_for_markdown():
    from edgevision.ui.settings import WORD_JOINER, md_escape

    hostile = "**bold** [link](http://x) <b>html</b> :red[colour] :material/home: $x^2$ # head\nline"
    escaped = md_escape(hostile)
    # What is left, with the escapes and the joiners taken out, is the text itself (newline as a space).
    assert re.sub(r"\\(.)", r"\1", escaped).replace(WORD_JOINER, "") == hostile.replace("\n", " ")
    assert not re.search(r"(?<!\\)[*\[\]<>$#]", escaped)
    assert ":" + WORD_JOINER not in hostile and "\\:" + WORD_JOINER in escaped


@pytest.mark.slow
def test_the_demo_labels_every_photo_right_and_says_where_the_pictures_are(tmp_path):
    import subprocess

    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "edgevision.demo", "--out", str(out), "--no-bench"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    from edgevision.samples import sample_photos

    n = len(sample_photos())
    assert f"{NAME}: {n}/{n} photos labelled right" in result.stdout
    assert f"on the clip: {n}/{n} photos labelled right" in result.stdout
    assert "cifar10-cnn" in result.stdout and "no right answer: not one of the 10 classes" in result.stdout
    for name in ("frames.png", "annotated.mp4", "photos.json"):
        assert (out / name).stat().st_size > 1000 and str(out / name) in result.stdout
    import cv2

    sheet = cv2.imread(str(out / "frames.png"))
    assert sheet.shape[1] == n * sheet.shape[0]  # one annotated square frame per photo


def test_the_page_starts_on_the_general_model_and_classifies_a_clicked_sample():
    """The page's script run by Streamlit's own test harness (no browser): default model, samples, the switch."""
    pytest.importorskip("streamlit", reason="the page needs the ui extra")
    from streamlit.testing.v1 import AppTest

    from edgevision.samples import sample_photos

    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "edgevision" / "ui" / "app.py"),
                            default_timeout=120)
    app.run()
    assert not app.exception and not app.error
    assert app.sidebar.radio[0].value == f"bundled:{NAME}"
    card = " ".join(m.value for m in app.sidebar.markdown)
    assert "1000 everyday objects" in card
    samples = sample_photos()
    assert [b.label for b in app.button] == [s.file for s in samples]
    for s in samples:
        app.button(key=f"sample-{s.file}").click().run()
        heading = [m.value for m in app.markdown if m.value.startswith("### ")]
        assert heading and re.sub(r"\\(.)", r"\1", heading[0][4:]) == s.imagenet, (s.file, heading)
    app.sidebar.radio[0].set_value("bundled:cifar10-cnn").run()
    card = " ".join(m.value for m in app.sidebar.markdown)
    assert "10 classes" in card and not app.exception


def test_the_page_decodes_a_bounded_number_of_pictures_at_once():
    """Uploads beyond DECODE_SLOTS wait for a slot instead of all being decoded (and held) together. The slots are
    the imported module's, one set per server: app.py itself is executed afresh on every run of the page."""
    import threading

    import cv2

    from edgevision.edge_runtime.classifier import Classifier
    from edgevision.ui import app, slots
    from edgevision.ui.settings import UiSettings

    assert app.DECODE_SLOTS is slots.DECODE_SLOTS
    ok, png = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))
    picture = app.Picture(png.tobytes(), "x.png", False)
    loaded = app.LoadedModel(Classifier("cifar10-cnn"), threading.Lock(), 0.0)
    held = []
    while slots.DECODE_SLOTS.acquire(blocking=False):  # every slot busy, as under a burst of uploads
        held.append(1)
    assert held, "the page must allow at least one decode"
    answers = []
    worker = threading.Thread(target=lambda: answers.append(app.answer_picture(picture, UiSettings(), loaded)))
    worker.start()
    worker.join(0.5)
    assert not answers  # waits for a slot
    slots.DECODE_SLOTS.release()
    worker.join(10)
    assert answers and answers[0].size == (64, 64) and answers[0].results
    for _ in held[1:]:
        slots.DECODE_SLOTS.release()


def test_page_messages_name_files_not_server_folders(tmp_path):
    from edgevision.ui.settings import hide_paths

    model = tmp_path / "models" / "m.tflite"
    message = f"{model}: not a TensorFlow Lite model; labels {tmp_path / 'labels.txt'} unread"
    shown = hide_paths(message, model, tmp_path / "labels.txt")
    assert str(tmp_path) not in shown and shown.startswith("m.tflite: not a") and "labels labels.txt" in shown
