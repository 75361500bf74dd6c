"""`train micro --teacher MODEL`: each augmented training image's target mixes in a trained model's
probabilities for exactly that image; a teacher of other classes or another input is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _data_helpers import make_image_folder, run_main

pytestmark = pytest.mark.slow
CLASSES = ("ant", "bee", "cow")


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    pytest.importorskip("tensorflow", reason="training needs the train extra")
    root = tmp_path_factory.mktemp("distill")
    make_image_folder(root / "data", CLASSES, per_class=12, size=(32, 32))
    result = run_main("train", "cnn", "--data", root / "data", "--out", root / "teacher", "--epochs", 2,
                      "--batch-size", 8, "--val-split", 0.25)
    assert result.returncode == 0, result.stderr
    return root / "data", root / "teacher"


def test_the_targets_are_the_teachers_probabilities_of_the_augmented_images(teacher_run):
    from edgevision.edge_runtime.evaluation import predict_arrays
    from edgevision.edge_runtime.inference import load_predictor
    from edgevision.edge_runtime.preprocess import PreprocessConfig
    from edgevision.train.data import Augmentation, BatchPlan, Teacher, reload_split

    data, run = teacher_run
    split = reload_split(run)
    predictor = load_predictor(run)
    teacher = Teacher(lambda pixels: predict_arrays(predictor, pixels), 0.3)
    one_hot = np.eye(3, dtype=np.float32)[split.y_train]
    pre = PreprocessConfig.load(run / "preprocess.json")
    augment = Augmentation(flip=True, pad=4, cutout=8)
    plain = BatchPlan(split.x_train, one_hot, pre, 8, seed=5, augment=augment)
    taught = BatchPlan(split.x_train, one_hot, pre, 8, seed=5, augment=augment, teacher=teacher)
    x_plain, y_plain = plain.batch(1)
    x, y = taught.batch(1)
    np.testing.assert_array_equal(x, x_plain)  # the same augmented batch: the teacher draws nothing
    pixels = plain._augmented(plain.order[8:16], np.random.default_rng([5, 0, 1]))
    expected = 0.3 * predict_arrays(predictor, pixels) + 0.7 * y_plain
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(y, y_plain)


def test_train_micro_with_a_teacher_records_it(teacher_run, tmp_path):
    data, teacher = teacher_run
    result = run_main("train", "micro", "--data", data, "--out", tmp_path / "student", "--epochs", 1,
                      "--batch-size", 8, "--val-split", 0.25, "--teacher", teacher, "--distill-weight", 0.7)
    assert result.returncode == 0, result.stderr
    settings = json.loads((tmp_path / "student" / "run.json").read_text())["settings"]
    assert settings["teacher"] == str(teacher) and settings["distill_weight"] == 0.7


def test_a_teacher_of_other_classes_is_refused_in_one_line(teacher_run, tmp_path):
    data, _ = teacher_run
    result = run_main("train", "micro", "--data", data, "--out", tmp_path / "student", "--epochs", 1,
                      "--batch-size", 8, "--teacher", "cifar10-cnn")  # bundled: CIFAR-10's ten classes
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "a teacher must be trained on the same classes" in result.stderr


def test_a_distill_weight_outside_0_to_1_is_refused(teacher_run, tmp_path):
    data, teacher = teacher_run
    result = run_main("train", "micro", "--data", data, "--out", tmp_path / "s", "--epochs", 1,
                      "--teacher", teacher, "--distill-weight", 1.5)
    assert result.returncode != 0 and "--distill-weight must be above 0 and at most 1" in result.stderr
