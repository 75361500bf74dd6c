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
from pathlib import Path

import numpy as np
import pytest

from _data_helpers import add_odd_files, make_image_folder, make_split_folders, run_main, write_run_dir

from edgevision.edge_runtime.images import read_image
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
    assert split.source == {"kind": "folder", "path": str(root.resolve()), "seed": 3, "val": {"kind": "split", "fraction": 0.25}}


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


# --- the one split, against the split as drawn before issue 18 ------------------------------------------
SPLIT_BEFORE = json.loads((Path(__file__).parent / "split_before_issue18.json").read_text())
SIZE16 = PreprocessConfig(input_size=(16, 16))


@pytest.fixture(scope="module")
def split_folders(tmp_path_factory):
    return make_split_folders(tmp_path_factory.mktemp("split"))


def _decoded(root, relative_files):
    """The pixels and labels of the recorded files, decoded here: what the old split held at those positions."""
    from edgevision.train.data import decoded_image_transform

    transform = decoded_image_transform(SIZE16)
    pixels = np.stack([transform(read_image(root / f)) for f in relative_files])
    labels = np.array([("ant", "bee", "cow").index(Path(f).parent.name) for f in relative_files])
    return pixels, labels


def _old_run_json(case, folders):
    """run.json as the trainer wrote it before issue 18: settings, the old data_source, and flat copies."""
    args = case["args"]
    root = str(folders["data"].parent)
    settings = {"arch": "cnn", "data": str(folders["data"]), "seed": args["seed"], "val_split": args.get("val_split", 0.1),
                "val_data": str(folders["val"]) if args.get("val_data") else None,
                "limit_per_class": args.get("limit_per_class")}
    source = json.loads(json.dumps(case["source"]).replace("ROOT", root))
    return {"settings": settings, "data_source": source, **settings}


@pytest.mark.parametrize("case", SPLIT_BEFORE["folder_cases"], ids=lambda c: json.dumps(c["args"]))
def test_the_split_is_the_one_drawn_before(split_folders, case, tmp_path):
    """Same folders, fraction, seed and limit: the same files in each half, in training, from an old run.json
    and from a new one (whose record now holds the seed even when --val-data and --limit-per-class meet)."""
    from edgevision.train.data import SplitSpec, recorded_split, reload_split, reload_split_parts

    args, root = case["args"], split_folders["data"].parent
    val_data = str(split_folders["val"]) if args.get("val_data") else None
    split = load_split(str(split_folders["data"]), SIZE16, args.get("val_split", 0.1), args["seed"], val_data,
                       args.get("limit_per_class"))
    (x_train, y_train), (x_val, y_val) = _decoded(root, case["train"]), _decoded(root, case["val"])
    assert np.array_equal(split.x_train, x_train) and np.array_equal(split.y_train, y_train)
    assert np.array_equal(split.x_val, x_val) and np.array_equal(split.y_val, y_val)
    assert split.source["seed"] == args["seed"] and "seed" not in split.source["val"]  # recorded once
    old = write_run_dir(tmp_path / "old", _old_run_json(case, split_folders), ("ant", "bee", "cow"), SIZE16)
    new = write_run_dir(tmp_path / "new", {"settings": {}, "data_source": split.source}, ("ant", "bee", "cow"), SIZE16)
    assert recorded_split(old)[1] == recorded_split(new)[1] == SplitSpec.from_record(split.source)
    for run in (old, new):
        full = reload_split(run)
        assert np.array_equal(full.x_train, x_train) and np.array_equal(full.y_val, y_val)
        train, val = reload_split_parts(run)
        assert np.array_equal(train.labels, y_train) and np.array_equal(val.labels, y_val)
        assert np.array_equal(train.pixels([len(train) - 1, 0]), x_train[[-1, 0]])
        assert np.array_equal(val.all_pixels(), x_val)


@pytest.mark.parametrize("case", SPLIT_BEFORE["label_cases"], ids=lambda c: json.dumps(c["args"]))
@pytest.mark.parametrize("lazy", [False, True], ids=["in-memory", "lazy"])
def test_an_in_memory_dataset_splits_as_before(case, lazy):
    """CIFAR-10's path (arrays in memory, limit then split) on a stand-in whose pixels spell out their index."""
    from edgevision.train.data import SplitSpec, array_pool, split_pool

    labels = np.repeat(np.arange(10), SPLIT_BEFORE["counts"])
    index = np.arange(len(labels))
    x = np.zeros((len(labels), 2, 2, 3), np.uint8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = index % 256, index // 256
    args = case["args"]
    spec = SplitSpec("in memory", None, args["val_split"], args["seed"], args.get("limit_per_class"))
    pre = PreprocessConfig(input_size=(2, 2), color_order="RGB")
    split = split_pool(array_pool(x, labels, [str(c) for c in range(10)], spec, pre, lazy), spec, pre, lazy)
    for part, expected in ((split.train, case["train"]), (split.val, case["val"])):
        pixels = part.all_pixels()
        assert (pixels[:, 0, 0, 0].astype(int) + 256 * pixels[:, 0, 0, 1].astype(int)).tolist() == expected
        assert np.array_equal(part.labels, labels[expected])


def test_a_run_json_without_the_data_is_a_clear_error(tmp_path):
    from edgevision.train.data import reload_split_parts

    run = write_run_dir(tmp_path / "run", {"settings": {}}, ("a", "b"), SIZE16)
    with pytest.raises(DataError, match="does not record the training data"):
        reload_split_parts(run)


def test_a_redrawn_split_must_still_have_the_run_classes(split_folders, tmp_path):
    from edgevision.train.data import SplitSpec, reload_split, reload_split_parts

    source = SplitSpec(str(split_folders["data"]), seed=0).record()
    run = write_run_dir(tmp_path / "run", {"data_source": source}, ("ant", "bee"), SIZE16)
    for reload in (reload_split, reload_split_parts):
        with pytest.raises(DataError, match="was trained on .*cannot be rebuilt"):
            reload(run)


# --- batches ------------------------------------------------------------------------------------------
def _batch_plan(augment, shuffle=True, seed=3):
    from edgevision.train.data import BatchPlan

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (21, 12, 10, 3), dtype=np.uint8)
    pre = PreprocessConfig(input_size=(12, 10), mean=(100.0, 110.0, 120.0), std=(50.0, 40.0, 30.0))
    return BatchPlan(x, np.arange(len(x)), pre, 8, seed, augment, shuffle), x, pre


def test_batches_are_a_pure_function_of_seed_epoch_and_index():
    from edgevision.train.data import Augmentation

    aug = Augmentation(flip=True, pad=2, cutout=4)
    a, _, _ = _batch_plan(aug)
    b, _, _ = _batch_plan(aug)
    a.set_epoch(5)
    b.batch(0), b.set_epoch(2), b.batch(2)  # another history of calls: nothing carries over
    b.set_epoch(5)
    for i in reversed(range(len(a))):
        xa, ya = a.batch(i)
        xb, yb = b.batch(i)
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    c, _, _ = _batch_plan(aug, seed=4)
    c.set_epoch(5)
    assert not np.array_equal(c.batch(0)[0], a.batch(0)[0])
    orders = []
    for epoch in (0, 1):
        a.set_epoch(epoch)
        seen = np.concatenate([a.batch(i)[1] for i in range(len(a))])
        assert sorted(seen.tolist()) == list(range(21))  # every image once per epoch
        orders.append(seen)
    assert not np.array_equal(*orders)


def test_plain_batches_are_the_normalised_images_in_order():
    from edgevision.edge_runtime.preprocess import normalize

    plan, x, pre = _batch_plan(None, shuffle=False)
    assert len(plan) == 3
    pixels = np.concatenate([plan.batch(i)[0] for i in range(len(plan))])
    targets = np.concatenate([plan.batch(i)[1] for i in range(len(plan))])
    assert np.array_equal(pixels, normalize(x, pre)) and targets.tolist() == list(range(21))


def test_each_augmentation_does_what_it_says():
    from edgevision.train.data import Augmentation

    flips, x, _ = _batch_plan(Augmentation(flip=True, pad=0, cutout=0), shuffle=False)
    raw = flips._augmented(np.arange(21), np.random.default_rng(1))
    mirrored = [np.array_equal(r, img[:, ::-1]) for r, img in zip(raw, x)]
    assert all(m or np.array_equal(r, img) for m, r, img in zip(mirrored, raw, x)) and 0 < sum(mirrored) < 21
    crops, x, _ = _batch_plan(Augmentation(flip=False, pad=2, cutout=0), shuffle=False)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    raw = crops._augmented(np.arange(21), np.random.default_rng(1))
    windows = [{(a, b) for a in range(5) for b in range(5) if np.array_equal(r, p[a : a + 12, b : b + 10])}
               for r, p in zip(raw, padded)]
    assert all(windows) and len(set.union(*windows)) > 1  # every image a window of its padded self, not all one
    cut, x, pre = _batch_plan(Augmentation(flip=False, pad=0, cutout=4), shuffle=False)
    pixels, _ = cut.batch(0)
    blanked = np.all(pixels == 0, axis=-1)  # the mean normalises to 0 in every channel
    assert np.array_equal(np.all(cut._augmented(np.arange(8), np.random.default_rng([3, 0, 0])) == cut.blank, -1), blanked)
    for mask in blanked:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert 0 < len(rows) <= 4 and 0 < len(cols) <= 4 and mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
