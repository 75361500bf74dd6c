"""The bundled models' cards are generated from run.json and the .tflite metadata: what they say comes from there."""

from __future__ import annotations

import json
import re

import pytest

from edgevision.benchmarks.maintainer.bundle_models import model_card
from edgevision.bundled import BUNDLED, MODELS_DIR, bundled_path
from edgevision.edge_runtime.metadata import read_metadata

RUN = {"settings": {"arch": "cnn", "data": "/d/train", "epochs": 35, "batch_size": 256, "seed": 0, "val_split": 0.1},
       "data_source": {"kind": "folder"}, "num_train": 45000, "num_val": 5000, "val_accuracy": 0.8966,
       "train_seconds": 600.0, "machine": "m", "parameters": 1000, "augmentation": {"flip": True, "pad": 4}}
BC = {"method": "empirical bias correction of int8 weight rounding", "images": 128, "layers": 52}


def card(tmp_path, note="", **meta):
    path = tmp_path / "m.tflite"  # a real file: the card's file section is read from its metadata
    path.write_bytes(bundled_path("cifar10-cnn").read_bytes())
    base = {"quantization": "int8", "labels": ["a", "b"], "metrics": {"accuracy": 0.9302, "agreement": 0.98}}
    return model_card("cifar10-cnn", RUN, {**base, **meta}, path, "edgevision train ...", "edgevision convert ...",
                      note=note)


def test_post_training_card_says_the_correction_came_before_conversion(tmp_path):
    text = card(tmp_path, bias_correction=BC)
    assert "compensated before conversion, in 52 conv layers" in text and "128 calibration images" in text
    assert "Quantization-aware training" not in text
    assert "| this file (int8) | 93.02 % |" in text and "| Keras float32 | 89.66 % |" in text


def test_qat_card_records_the_fine_tune_and_where_the_correction_went(tmp_path):
    fine_tune = {"source": "the training split of run r", "n": 5000, "steps": ["qat"], "qat_epochs": 1,
                 "qat_learning_rate": 1e-05, "learning_rate": 1e-4, "batch_size": 32}
    bc = {**BC, "applied": "in the weights QAT started from"}  # as the converter records it
    text = card(tmp_path, optimizations=["qat"], bias_correction=bc, fine_tune=fine_tune)
    assert ("- Quantization-aware training: 1 epoch(s) on 5,000 images from the training split of run r, "
            "batch size 32, learning rate 1e-05") in text
    assert "compensated in the weights QAT started from, in 52 conv layers" in text
    assert "| this file (int8, qat) | 93.02 % |" in text


def test_pruned_card_says_the_correction_came_after_pruning(tmp_path):
    fine_tune = {"source": "the training split of run r", "n": 5000, "steps": ["pruned"], "fine_tune_epochs": 2,
                 "learning_rate": 1e-4, "batch_size": 32}
    bc = {**BC, "applied": "after pruning/clustering"}
    text = card(tmp_path, optimizations=["pruned"], bias_correction=bc, fine_tune=fine_tune)
    assert "compensated after pruning/clustering, in 52 conv layers" in text
    assert "before conversion" not in text and "- Pruning: 2 epoch(s) on 5,000 images" in text


def test_a_note_sits_under_the_accuracy_table(tmp_path):
    note = "This run is the better of two seeds."
    accuracy, rest = card(tmp_path, note=note).split("## The file")
    assert note in accuracy and note not in rest
    assert "seeds" not in card(tmp_path)


def test_the_file_section_says_the_interface_and_the_licence(tmp_path):
    rest = card(tmp_path).split("## The file")[1]
    assert "uint8 (0-255); the graph normalises them with mean [125.6" in rest
    assert "TFLITE_METADATA" in rest and "Licence: Apache-2.0" in rest and "Labels: airplane, automobile" in rest


# --- what a model hub expects (issue 22): front matter, intended use, how accuracy was measured ------------------

def front(text: str) -> str:
    """The YAML between the opening and closing `---` lines; fails when the card does not open with one."""
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, text[:200]
    return match.group(1)


def test_the_card_opens_with_front_matter_naming_licence_dataset_split_and_metrics(tmp_path):
    header = front(card(tmp_path, test_time_augmentation={"mode": "flip", "views": 2, "output": "x"},
                        metrics={"accuracy": 0.9302, "accuracy_float": 0.9311, "n": 4321}))
    assert 'license: "apache-2.0"' in header and 'library_name: "edgevision"' in header
    assert re.search(r'datasets:\n  - "cifar10"', header) and re.search(r'metrics:\n  - "accuracy"', header)
    assert 'split: "validation"' in header and "images: 4321" in header and "seed: 0" in header
    assert '- "flip-tta"' in header and '- "int8"' in header
    # Each figure of the table, under its own name, with the value the run and the file recorded.
    assert re.search(r'name: "top-1, Keras float32"\n\s+value: 0.8966', header)
    assert re.search(r'name: "top-1, Keras float32 with flip TTA"\n\s+value: 0.9311', header)
    assert re.search(r'name: "top-1, this file \(int8, flip TTA\)"\n\s+value: 0.9302', header)


def test_front_matter_is_yaml_that_reads_back_as_written(tmp_path):
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the header back; it is no dependency of edgevision")
    from edgevision.benchmarks.maintainer.bundle_models import front_matter

    fields = {"license": "apache-2.0", "tags": ["a: b", 'quote " and #hash'], "n": 3, "none": None,
              "model-index": [{"name": "m", "results": [{"metrics": [{"type": "accuracy", "value": 0.5}]}]}]}
    text = "\n".join(front_matter(fields))
    assert yaml.safe_load(front(text + "\n")) == fields


def test_the_yaml_writer_quotes_what_would_otherwise_change_meaning():
    from edgevision.benchmarks.maintainer.bundle_models import yaml_lines

    lines = yaml_lines({"tags": ["no", "1.0", "x: y"], "empty": [], "nested": {"k": None}})
    assert lines == ['tags:', '  - "no"', '  - "1.0"', '  - "x: y"', 'empty: []', 'nested:', '  k: null']


def test_the_card_says_what_the_model_is_for_and_where_it_fails(tmp_path):
    text = card(tmp_path)
    use = text.split("## Intended use and limitations")[1].split("## How it was made")[0]
    assert "Ten CIFAR-10 classes only" in use and "not a detector" in use
    assert "airplane, automobile, bird" in use  # the labels come from the file


def test_the_card_says_which_split_how_many_images_and_seeds(tmp_path):
    text = card(tmp_path, metrics={"accuracy": 0.93, "n": 4321})
    measured = text.split("## How accuracy was measured")[1].split("## The file")[0]
    assert "validation, 4,321 images held out of the 50,000 CIFAR-10 training images" in measured
    assert "seed 0" in measured and "one run (seed 0)" in measured
    assert "not the official test split" in measured
    assert "`edgevision evaluate cifar10-cnn --data" in measured  # how to measure the test split
    path = tmp_path / "m.tflite"
    two = model_card("cifar10-cnn", RUN, {"metrics": {"accuracy": 0.93, "n": 5000}}, path, "t", "c", seeds=2)
    assert "the recipe was run with 2 seeds" in two and "one run" not in two


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_each_shipped_card_has_the_hub_header_and_sections(name):
    text = (MODELS_DIR / f"{name}.md").read_text()
    header = front(text)
    assert 'license: "apache-2.0"' in header and "split:" in header and "model-index:" in header
    assert "## Intended use and limitations" in text and "## How accuracy was measured" in text
    assert "not a detector" in text
    # The header's figure for the file is the accuracy the converter measured and embedded in that file.
    meta = read_metadata((MODELS_DIR / BUNDLED[name]).read_bytes())
    values = re.findall(r'name: "top-1, this file[^"]*"\n\s+value: ([0-9.]+)', header)
    assert values == [json.dumps(meta["metrics"]["accuracy"])]


def test_the_imagenet_card_generator_writes_the_same_structure():
    from edgevision.benchmarks.maintainer.imagenet_model import card_text

    summary = {
        "int8": {"eval_n": 300, "accuracy": 0.87, "accuracy_float": 0.88, "agreement": 0.98, "bytes": 4_000_000},
        "split": {"calibration": 200, "evaluation": 300, "seed": 0},
        "resize": {"chosen": "center_crop", "float_top1_on_calibration_half": {"center_crop": {"accuracy": 0.9}}},
        "recipe": {"chosen": "bias_correction=on, mirrors=no", "int8_top1_cross_validated": {
            "bias_correction=on, mirrors=no": {"bias_correction": True, "mirrors": False, "accuracy": 0.92}}},
        "reference": {"bytes": 3_600_000, "as_read": {"accuracy": 0.83}, "with_center_crop": {"accuracy": 0.8733}},
        "bench": {"a.tflite": {"p50_ms": 4.0}}, "convert_command": "edgevision convert ...",
        "edgevision": "0", "keras": "3", "tensorflow": "2",
    }
    text = card_text(summary, "python -m ...", bundled_path("imagenet-mobilenetv2").read_bytes())
    header = front(text)
    assert 'license: "apache-2.0"' in header and '- "imagenet-1k"' in header and "images: 300" in header
    assert re.search(r'name: "top-1, this file \(int8\)"\n\s+value: 0.87', header)
    for section in ("## Intended use and limitations", "## How accuracy was measured", "## The file"):
        assert section in text
    assert "not a detector" in text and "one per class" in text.split("## How accuracy was measured")[1]
    assert "two-fold cross-validation inside the calibration photos" in text and "mirror images" not in text


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_each_shipped_cards_header_reads_as_yaml_with_its_split(name):
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the header back (the dev extra installs it)")
    header = yaml.safe_load(front((MODELS_DIR / f"{name}.md").read_text()))
    assert header["license"] == "apache-2.0" and header["pipeline_tag"] == "image-classification"
    (result,) = header["model-index"][0]["results"]
    cifar = name.startswith("cifar10")
    assert header["datasets"] == (["cifar10"] if cifar else ["imagenet-1k"])
    assert result["dataset"]["split"] == ("validation" if cifar else "sample")
    if cifar:  # the number of images the converter measured the file on, as embedded in it
        meta = read_metadata((MODELS_DIR / BUNDLED[name]).read_bytes())
        assert result["dataset"]["args"]["images"] == meta["metrics"]["n"]
    assert all(0 < m["value"] < 1 and m["type"] == "accuracy" for m in result["metrics"])


def test_a_card_with_a_held_out_split_leads_with_the_mean_over_seeds(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(bundled_path("cifar10-cnn").read_bytes())
    summary = {key: {"n": 3, "mean": mean, "std": 0.0021, "min": mean - 0.002, "max": mean + 0.003}
               for key, mean in (("holdout_accuracy_file", 0.9211), ("holdout_accuracy_float", 0.9180))}
    holdout = {"figures": {"images": 5000, "fraction": 0.1, "file": 0.9232, "float": 0.9190}, "summary": summary}
    text = model_card("cifar10-cnn", RUN, {"quantization": "int8", "metrics": {"accuracy": 0.93, "n": 2250}}, path,
                      "t", "c", seeds=3, holdout=holdout)
    body = text.split("---\n", 2)[2]
    expect = body.index("## What to expect (the fixed held-out split)")
    assert expect < body.index("## Accuracy (validation split")
    assert "| this file's recipe (int8), every seed | 92.11 % (sd 0.21, 91.91-92.41) over 3 seeds |" in body
    assert "| this file (seed 0) | 92.32 % |" in body and "--holdout 0.1" in body
    header = front(text)
    # The held-out result comes first in the hub header, its split named, the mean over seeds its first metric.
    assert header.index('split: "holdout"') < header.index('split: "validation"')
    assert re.search(r'name: "top-1, this recipe \(int8\), mean over 3 seeds"\n\s+value: 0.9211', header)


def test_a_distilled_model_names_its_teacher(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(bundled_path("cifar10-cnn").read_bytes())
    run = {**RUN, "settings": {**RUN["settings"], "teacher": "/w/teacher-int8-flip-tta.tflite", "distill_weight": 0.5}}
    text = model_card("cifar10-micro", run, {"metrics": {"accuracy": 0.9, "n": 2250}}, path, "t", "c")
    assert "- Distilled from: `teacher-int8-flip-tta.tflite` (knowledge distillation: each training target is 0.5" in text
    assert "Distilled from" not in card(tmp_path)
