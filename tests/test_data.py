"""Training data: image folders (formats, gray/alpha, corrupt files), the stratified split, clear errors.

Folder loading and the split are plain numpy + OpenCV and run in-process; the error cases go through the
real `edgevision train` command line (in-process `main()`, plus one hermetic subprocess for the offline
cases, whose Keras cache location must be fixed before Keras is imported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from _data_helpers import add_odd_files, make_image_folder, run_main

from edgevision.edge_runtime.preprocess import PreprocessConfig
from edgevision.errors import DataError, UsageError
from edgevision.train.data import load_split, stratified_split

SIZE32 = PreprocessConfig(input_size=(32, 32))


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd") / "data"
    files = make_image_folder(root, ("ant", "bee", "cow"), per_class=6)
    odd = add_odd_files(root, "bee")
    return root, files, odd


def _assert_one_line_error(result, code, *needles):
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_folder_formats_gray_rgba_and_bad_files(odd_folder):
    root, files, odd = odd_folder
    split = load_split(str(root), SIZE32, val_split=0.25, seed=3)
    # 18 good images (jpg/png/bmp) + gray + rgba; the corrupt and the zero-byte file are skipped and counted.
    assert len(split.x_train) + len(split.x_val) == 20
    assert split.classes == ("ant", "bee", "cow")
    assert split.x_train.dtype == np.uint8 and split.x_train.shape[1:] == (32, 32, 3)
    assert len(split.skipped) == 1  # one warning for the whole folder
    warning = split.skipped[0]
    assert warning.startswith("skipped 2 file(s)") and "corrupt.jpg" in warning and "empty.png" in warning
    assert split.source == {"kind": "folder", "path": str(root.resolve()), "val": {"kind": "split", "fraction": 0.25, "seed": 3}}


def test_gray_and_rgba_become_rgb(odd_folder):
    from edgevision.edge_runtime.datasets import decode_folder, scan_image_folder
    from edgevision.edge_runtime.preprocess import prepare_pixels

    root, _, odd = odd_folder
    folder = scan_image_folder(root)
    decoded = decode_folder(folder, lambda img: prepare_pixels(img, SIZE32))
    by_name = {p.name: px for p, px in zip(decoded.files, decoded.pixels) if p.parent.name == "bee"}
    gray, rgba = by_name["gray.png"], by_name["rgba.png"]
    assert gray.shape == rgba.shape == (32, 32, 3)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert not np.array_equal(rgba[..., 0], rgba[..., 2])  # colour kept, alpha dropped
    assert {p.name for p, _ in decoded.skipped} == {"corrupt.jpg", "empty.png"}


def test_split_is_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [50, 20, 7, 2])
    train, val = stratified_split(labels, 0.2, seed=7)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))  # a partition
    assert not set(train) & set(val)
    counts = np.bincount(labels[val], minlength=4)
    assert counts.tolist() == [10, 4, 1, 1]  # every class represented, in proportion (at least one each)
    again = stratified_split(labels, 0.2, seed=7)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    other = stratified_split(labels, 0.2, seed=8)
    assert not np.array_equal(val, other[1])
    with pytest.raises(UsageError, match="--val-split"):
        stratified_split(labels, 1.0, seed=0)


def test_same_seed_same_split_from_files(odd_folder):
    root, _, _ = odd_folder
    a = load_split(str(root), SIZE32, val_split=0.3, seed=11)
    b = load_split(str(root), SIZE32, val_split=0.3, seed=11)
    c = load_split(str(root), SIZE32, val_split=0.3, seed=12)
    assert np.array_equal(a.x_val, b.x_val) and np.array_equal(a.y_val, b.y_val)
    assert set(a.y_val.tolist()) == {0, 1, 2}
    assert not (np.array_equal(a.x_val, c.x_val) and np.array_equal(a.y_val, c.y_val))


def test_val_data_overrides_split(tmp_path):
    make_image_folder(tmp_path / "train", ("a", "b"), per_class=4)
    make_image_folder(tmp_path / "val", ("a", "b"), per_class=2, seed=5)
    split = load_split(str(tmp_path / "train"), SIZE32, val_data=str(tmp_path / "val"))
    assert len(split.x_train) == 8 and len(split.x_val) == 4
    assert split.source["val"]["kind"] == "folder"


def test_all_undecodable_class_is_an_error(tmp_path):
    make_image_folder(tmp_path, ("a", "b"), per_class=3)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="'c'.*no decodable images"):
        load_split(str(tmp_path), SIZE32)


@pytest.mark.parametrize("case", ["missing", "empty_class", "one_class", "not_a_folder"])
def test_bad_folders_are_one_line_cli_errors(tmp_path, case):
    data = tmp_path / "data"
    if case == "empty_class":
        make_image_folder(data, ("a", "b"), per_class=2)
        (data / "c").mkdir()
        needles = ("class folder", "has no images")
    elif case == "one_class":
        make_image_folder(data, ("only",), per_class=3)
        needles = ("1 class folder", "at least two")
    elif case == "not_a_folder":
        data.write_bytes(b"x")
        needles = ("not a folder",)
    else:
        needles = ("does not exist",)
    out = tmp_path / "run"
    result = run_main("train", "cnn", "--data", data, "--out", out, "--epochs", "1")
    _assert_one_line_error(result, 1, str(data), *needles)
    assert not (out / "model.keras").exists()


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from edgevision.cli import main

    results = {}
    for name, argv in json.loads(sys.argv[1]).items():
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as e:
                code = e.code
        results[name] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
    print(json.dumps(results))
    """
)


def test_offline_cifar10_and_imagenet_weights_say_both_ways_out(tmp_path):
    """An empty Keras cache and no network: one line each, naming --data DIR / --weights PATH.

    One subprocess for both (Keras reads KERAS_HOME once, when it is imported).
    """
    keras_home = tmp_path / "empty-keras-home"
    keras_home.mkdir()
    data = tmp_path / "data"
    make_image_folder(data, ("a", "b"), per_class=3)
    commands = {
        "cifar": ["train", "cnn", "--data", "cifar10", "--out", str(tmp_path / "c"), "--epochs", "1"],
        "weights": ["train", "mobilenetv2", "--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "1",
                    "--weights", "imagenet"],
    }
    env = {**os.environ, "KERAS_HOME": str(keras_home), "EDGEVISION_DEBUG": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, json.dumps(commands)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    from edgevision.train.weights import online

    if online("www.cs.toronto.edu") or online():
        pytest.skip("this machine is online: the offline messages cannot be provoked")
    cifar = subprocess.CompletedProcess([], results["cifar"]["code"], results["cifar"]["stdout"], results["cifar"]["stderr"])
    line = _assert_one_line_error(cifar, 1, "CIFAR-10", "--data DIR")
    assert cifar.stdout == ""  # no "Downloading data from ..." on stdout
    weights = subprocess.CompletedProcess([], results["weights"]["code"], "", results["weights"]["stderr"])
    line = _assert_one_line_error(weights, 2, "ImageNet weights", "connect", "--weights PATH", str(keras_home))
    assert "Traceback" not in line
