"""The bundled models' cards are generated from run.json and the .tflite metadata: what they say comes from there."""

from __future__ import annotations

from edgevision.benchmarks.maintainer.bundle_models import model_card
from edgevision.bundled import bundled_path

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
