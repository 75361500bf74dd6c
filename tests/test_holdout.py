"""The fixed held-out split (`train --holdout`, `evaluate --holdout`): the same images whatever the seed, the
order or the other classes; never in a run's training or validation half; and exactly what `evaluate` scores.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from _data_helpers import make_image_folder, run_main

from edgevision.edge_runtime.datasets import file_keys, holdout_mask, scan_image_folder, without_holdout
from edgevision.edge_runtime.preprocess import PreprocessConfig
from edgevision.errors import UsageError
from edgevision.train.data import SplitSpec, draw_split, load_split

SIZE32 = PreprocessConfig(input_size=(32, 32))


def _keys(n_per_class=40, classes=("a", "b", "c")):
    keys = [f"{c}/{i:04d}.jpg" for c in classes for i in range(n_per_class)]
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    return keys, labels


def test_the_mask_takes_the_fraction_of_each_class_and_depends_only_on_the_images():
    keys, labels = _keys()
    mask = holdout_mask(keys, labels, 0.1)
    assert [int(mask[labels == c].sum()) for c in range(3)] == [4, 4, 4]
    held = {k for k, m in zip(keys, mask) if m}
    # Listed in another order: the same images.
    order = list(range(len(keys)))
    random.Random(1).shuffle(order)
    shuffled = holdout_mask([keys[i] for i in order], labels[order], 0.1)
    assert {keys[i] for i, m in zip(order, shuffled) if m} == held
    # Another class added, or one taken away: the held-out images of the others do not move.
    more_keys, more_labels = _keys(classes=("a", "b", "c", "d"))
    more = holdout_mask(more_keys, more_labels, 0.1)
    assert {k for k, m in zip(more_keys, more) if m and not k.startswith("d/")} == held
    # Not simply the first files by name: a hash ranks them.
    assert held != {f"{c}/{i:04d}.jpg" for c in "abc" for i in range(4)}
    assert not holdout_mask(keys, labels, 0.0).any()


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_a_fraction_outside_0_to_1_is_refused(fraction):
    keys, labels = _keys()
    with pytest.raises(UsageError, match="--holdout"):
        holdout_mask(keys, labels, fraction)
    with pytest.raises(UsageError, match="--holdout"):
        SplitSpec("data", holdout=fraction)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("holdout") / "data"
    make_image_folder(root, ("ant", "bee", "cow"), per_class=20, size=(32, 32))
    return root


def test_no_seed_trains_or_validates_on_the_held_out_images(folder):
    scanned = scan_image_folder(folder)
    held = without_holdout(scanned, 0.2, keep_holdout=True)
    assert len(held) == 12 and np.bincount(held.labels).tolist() == [4, 4, 4]
    held_pixels = draw_split(SplitSpec(str(folder), val_fraction=0.5, seed=0), SIZE32)  # no holdout: all 60
    assert len(held_pixels.train) + len(held_pixels.val) == 60
    for seed in (0, 1, 2):
        split = load_split(str(folder), SIZE32, val_split=0.25, seed=seed, holdout=0.2)
        assert len(split.x_train) + len(split.x_val) == 48
        assert split.source["holdout"] == {"fraction": 0.2, "rule": "holdout-v1"}
        assert SplitSpec.from_record(split.source).holdout == 0.2
        seen = {p.tobytes() for p in np.concatenate([split.x_train, split.x_val])}
        # make_image_folder draws every image differently, so pixels identify files.
        from edgevision.edge_runtime.datasets import decode_folder
        from edgevision.train.data import decoded_image_transform

        held_decoded = decode_folder(held, decoded_image_transform(SIZE32)).pixels
        assert not seen & {p.tobytes() for p in held_decoded}


def test_the_keys_are_paths_below_the_data_folder(folder):
    scanned = scan_image_folder(folder)
    keys = file_keys(scanned.root, scanned.files)
    assert keys[0] == "ant/00.jpg" and all("/" in k and not k.startswith("/") for k in keys)


def test_evaluate_holdout_scores_exactly_what_training_left_out(folder, tmp_path):
    pytest.importorskip("tensorflow", reason="training the run needs the train extra")
    from edgevision.train.data import holdout_arrays, reload_split

    run = tmp_path / "run"
    result = run_main("train", "cnn", "--data", str(folder), "--out", str(run), "--epochs", "1",
                      "--batch-size", "16", "--holdout", "0.2", "--val-split", "0.25")
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "run.json").read_text())["data_source"]["holdout"]["fraction"] == 0.2
    split = reload_split(run)
    assert len(split.x_train) + len(split.x_val) == 48
    pixels, labels = holdout_arrays(run)
    assert len(pixels) == 12 and np.bincount(labels).tolist() == [4, 4, 4]
    result = run_main("evaluate", str(run), "--data", str(folder), "--holdout", "0.2", "--json",
                      "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["holdout"] == 0.2
    assert np.asarray(report["confusion_matrix"]).sum() == 12


def test_holdout_arrays_of_a_run_without_one_says_how_to_score_it(tiny_run):
    from edgevision.train.data import holdout_arrays

    with pytest.raises(UsageError, match="without a held-out split"):
        holdout_arrays(tiny_run)


def test_evaluate_refuses_a_bad_fraction_in_one_line(folder, tiny_tflite):
    result = run_main("evaluate", str(tiny_tflite), "--data", str(folder), "--holdout", "1.5")
    assert result.returncode != 0 and "--holdout must be" in result.stderr and "Traceback" not in result.stderr
