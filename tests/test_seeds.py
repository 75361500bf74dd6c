"""benchmarks/maintainer/seeds.py: several seeds of one recipe trained at once, each scored on the held-out split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _data_helpers import make_image_folder

pytestmark = pytest.mark.slow


def test_two_seeds_train_at_once_and_their_spread_is_what_each_scored(tmp_path):
    pytest.importorskip("tensorflow", reason="training and converting need the train and convert extras")
    from edgevision.benchmarks.maintainer.seeds import main, seed_dir
    from edgevision.edge_runtime.evaluation import evaluate
    from edgevision.edge_runtime.inference import load_predictor

    data = tmp_path / "data"
    make_image_folder(data, ("ant", "bee", "cow"), per_class=20, size=(32, 32))
    work = tmp_path / "work"
    assert main(["train", "--work", str(work), "--seeds", "0", "1", "--", "cnn", "--data", str(data),
                 "--epochs", "1", "--batch-size", "16", "--holdout", "0.2"]) == 0
    assert main(["score", "--work", str(work), "--convert", "--quant dynamic"]) == 0
    summary = json.loads((work / "seeds.json").read_text())
    assert [r["seed"] for r in summary["seeds"]] == [0, 1] and summary["convert"] == ["--quant", "dynamic"]
    for record in summary["seeds"]:
        assert record["holdout_images"] == 12
        # The same figure from the command line a user types: evaluate --holdout on the data folder.
        tflite = seed_dir(work, record["seed"]) / "converted.tflite"
        again = evaluate(load_predictor(tflite), data, holdout=0.2)
        assert again.n == 12 and again.accuracy == pytest.approx(record["holdout_accuracy_file"])
    values = [r["holdout_accuracy_file"] for r in summary["seeds"]]
    spread = summary["holdout_accuracy_file"]
    assert spread["n"] == 2 and spread["mean"] == pytest.approx(np.mean(values))
    assert spread["std"] == pytest.approx(np.std(values, ddof=1))
    assert (spread["min"], spread["max"]) == (min(values), max(values))


def test_a_failing_seed_fails_the_step_and_names_its_log(tmp_path, capsys):
    from edgevision.benchmarks.maintainer.seeds import main

    assert main(["train", "--work", str(tmp_path), "--seeds", "3", "--", "cnn", "--data", str(tmp_path / "none"),
                 "--epochs", "1"]) == 1
    assert "seed 3 failed: see" in capsys.readouterr().err and (tmp_path / "seed3.log").is_file()
