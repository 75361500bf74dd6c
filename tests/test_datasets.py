"""`evaluate --data cifar10`: the official CIFAR-10 test split as a class folder, written once (issue 22).

The download itself needs the network, which the suite does not have; what is tested is everything around it:
the folder it becomes (lossless, one subfolder per class, complete or rewritten), that a written folder is read
without importing Keras, that `evaluate` runs on it, and the one-line answer offline.
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import run_cli
from edgevision.datasets import COMPLETE, resolve_data, write_class_folder
from edgevision.errors import DataError
from edgevision.samples import SAMPLES_DIR

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def thumbnails():
    """The shipped photos as 32x32 RGB thumbnails, with CIFAR-10 labels (the cat is a cat)."""
    photos = {"chelsea.jpg": 3, "rocket.jpg": 0, "coffee.jpg": 8, "camera.jpg": 1}
    images = [cv2.cvtColor(cv2.resize(cv2.imread(str(SAMPLES_DIR / name)), (32, 32), interpolation=cv2.INTER_AREA),
                           cv2.COLOR_BGR2RGB) for name in photos]
    return np.stack(images), np.array(list(photos.values()))


def test_the_split_is_written_losslessly_one_folder_per_class(tmp_path):
    x, y = thumbnails()
    folder = write_class_folder(x, y, CLASSES, tmp_path / "test")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(CLASSES[i] for i in set(y))
    assert (folder / COMPLETE).is_file() and not list(tmp_path.glob("*.partial-*"))
    for i, label in enumerate(y):
        back = cv2.cvtColor(cv2.imread(str(folder / CLASSES[label] / f"{i:05d}.png")), cv2.COLOR_BGR2RGB)
        assert np.array_equal(back, x[i])  # PNG: the pixels are the data set's own


def test_an_interrupted_write_is_written_again(tmp_path):
    x, y = thumbnails()
    stale = tmp_path / "test" / "cat"
    stale.mkdir(parents=True)
    (stale / "junk.png").write_bytes(b"not an image")  # an earlier run that died before its marker
    write_class_folder(x, y, CLASSES, tmp_path / "test")
    assert not (stale / "junk.png").exists() and (tmp_path / "test" / COMPLETE).is_file()


def test_labels_that_do_not_fit_the_classes_are_refused(tmp_path):
    x, y = thumbnails()
    with pytest.raises(DataError, match="do not match"):
        write_class_folder(x, y + 7, CLASSES, tmp_path / "test")
    assert not (tmp_path / "test").exists()


def test_a_folder_is_passed_through_and_a_written_split_is_reused_without_keras(tmp_path):
    assert resolve_data("some/folder", cache=tmp_path) == ("some/folder", None)
    x, y = thumbnails()
    folder = write_class_folder(x, y, CLASSES, tmp_path / "edgevision-cifar10-test")
    code = ("import sys; from pathlib import Path; from edgevision.datasets import resolve_data; "
            f"print(resolve_data('cifar10', cache=Path({str(tmp_path)!r}))[0]); "
            "print('keras' in sys.modules or 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == [str(folder), "False"]


def test_evaluate_runs_on_the_written_split(tmp_path):
    x, y = thumbnails()
    write_class_folder(x, y, CLASSES, tmp_path / "keras" / "datasets" / "edgevision-cifar10-test")
    proc = run_cli("evaluate", "cifar10-cnn", "--data", "cifar10", "--out", tmp_path / "report",
                   env={"KERAS_HOME": str(tmp_path / "keras")}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"on {len(y)} images" in proc.stdout and "edgevision-cifar10-test" in proc.stdout
    assert (tmp_path / "report" / "report.json").is_file()


def test_offline_without_the_keras_cache_is_one_line(tmp_path):
    pytest.importorskip("keras", reason="--data cifar10 downloads through Keras (the train extra)")
    from edgevision.train.data import CIFAR10_HOST
    from edgevision.train.weights import online

    if online(CIFAR10_HOST):
        pytest.skip("online: this would download CIFAR-10 (170 MB) instead of failing")
    proc = run_cli("evaluate", "cifar10-cnn", "--data", "cifar10", env={"KERAS_HOME": str(tmp_path)}, timeout=120,
                   cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "cannot be downloaded" in proc.stderr
    assert not (tmp_path / "runs").exists()
