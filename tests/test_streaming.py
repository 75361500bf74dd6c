"""Training data larger than memory: the streamed paths (a disk cache, or decoding per batch) give exactly the
cached path's pixels and batches, the automatic choice follows the memory budget, and a process training on a
budget below the cache's size stays within it.

The batch comparisons are numpy in this process; the memory measurement needs fresh processes (peak RSS is a
property of a whole process), one per data path; one short `edgevision train` runs the whole streamed path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _data_helpers import add_odd_files, make_image_folder, run_main

from edgevision.edge_runtime.preprocess import PreprocessConfig
from edgevision.errors import UsageError
from edgevision.train import streaming
from edgevision.train.data import Augmentation, BatchPlan, SplitSpec, count_images, load_split

PRE = PreprocessConfig(input_size=(40, 40), mean=(120.0, 110.0, 100.0), std=(60.0, 55.0, 50.0))
EVERY_KNOB = Augmentation(flip=True, pad=5, cutout=10, rotation=15, zoom=0.2, color_jitter=0.3, random_erasing=0.5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream") / "data"
    make_image_folder(root, ("ant", "bee", "cow"), per_class=9, size=(36, 52))
    add_odd_files(root, "bee")  # a gray, an RGBA, a corrupt and an empty file: the streamed split skips the same
    return root


def _batches(x, y, epoch, **kw):
    plan = BatchPlan(x, y, PRE, 7, seed=5, augment=EVERY_KNOB, **kw)
    plan.set_epoch(epoch)
    return [plan.batch(i) for i in range(len(plan))]


@pytest.mark.parametrize("mode", ["disk", "none"])
def test_streamed_split_has_the_cached_pixels_and_batches(folder, tmp_path, mode):
    cached = load_split(str(folder), PRE, val_split=0.25, seed=2)
    spec = SplitSpec(str(folder), None, 0.25, 2)
    streamed = streaming.streamed_split(spec, PRE, mode, tmp_path / "cache")
    assert not isinstance(streamed.x_train, np.ndarray)
    assert streamed.x_train.shape == cached.x_train.shape and streamed.classes == cached.classes
    np.testing.assert_array_equal(streamed.x_train[:], cached.x_train)
    np.testing.assert_array_equal(streamed.x_val[np.arange(len(cached.x_val))[::-1]], cached.x_val[::-1])
    np.testing.assert_array_equal(streamed.y_train, cached.y_train)
    assert streamed.skipped == cached.skipped and streamed.source == cached.source
    # Epoch 1 is what a run resumed after its first epoch starts with: batches are a function of (seed, epoch, i).
    for epoch in (0, 1):
        for (xa, ya), (xb, yb) in zip(_batches(cached.x_train, cached.y_train, epoch),
                                      _batches(streamed.x_train, streamed.y_train, epoch), strict=True):
            np.testing.assert_array_equal(xb, xa)
            np.testing.assert_array_equal(yb, ya)


def test_shards_and_multiples_split_the_same_global_batches(folder):
    split = load_split(str(folder), PRE, val_split=0.25, seed=2)
    whole = _batches(split.x_train, split.y_train, 0, multiple=2)
    shares = [_batches(split.x_train, split.y_train, 0, multiple=2, shard=(i, 2)) for i in range(2)]
    assert all(len(x) % 2 == 0 for x, _ in whole) and len(whole) == len(shares[0]) == len(shares[1])
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shares):
        np.testing.assert_array_equal(np.concatenate([x0, x1]), x)
        np.testing.assert_array_equal(np.concatenate([y0, y1]), y)


def test_disk_cache_is_reused_for_the_same_split_and_rebuilt_for_another(folder, tmp_path):
    spec = SplitSpec(str(folder), None, 0.25, 2)
    first = streaming.streamed_split(spec, PRE, "disk", tmp_path)
    stamp = first.x_train.path.stat().st_mtime_ns
    again = streaming.streamed_split(spec, PRE, "disk", tmp_path)
    assert again.x_train.path.stat().st_mtime_ns == stamp  # a resumed run does not decode everything again
    other = streaming.streamed_split(SplitSpec(str(folder), None, 0.25, 3), PRE, "disk", tmp_path)
    np.testing.assert_array_equal(other.x_train[:], load_split(str(folder), PRE, val_split=0.25, seed=3).x_train)


def test_auto_choice_follows_the_budget():
    assert streaming.choose_cache("auto", needed=10, budget=10, disk_free=0, on_disk=5) == "memory"
    assert streaming.choose_cache("auto", needed=11, budget=10, disk_free=100, on_disk=5) == "disk"
    assert streaming.choose_cache("auto", needed=11, budget=10, disk_free=5, on_disk=5) == "none"
    assert streaming.choose_cache("none", needed=1, budget=10, disk_free=5, on_disk=5) == "none"
    with pytest.raises(UsageError, match="--cache"):
        streaming.choose_cache("ram", 1, 1, 1, 1)
    # pad-and-crop's padded copy counts: 32 px images padded by 4 take 40x40.
    assert streaming.memory_needed(10, 2, (32, 32), 4) == 12 * 32 * 32 * 3 + 10 * 40 * 40 * 3


def test_budget_sizes_and_the_environment(monkeypatch):
    assert streaming.parse_bytes("512M") == 512 * 2**20 and streaming.parse_bytes("1.5GiB") == 3 * 2**29
    assert streaming.parse_bytes("4096") == 4096
    with pytest.raises(UsageError, match="--memory-budget"):
        streaming.parse_bytes("lots")
    monkeypatch.setenv(streaming.BUDGET_ENV, "3k")
    assert streaming.memory_budget() == 3072 and streaming.memory_budget("1K") == 1024
    monkeypatch.delenv(streaming.BUDGET_ENV)
    assert 0 < streaming.memory_budget() <= streaming.available_memory()


def test_counts_before_decoding(folder):
    n_train, n_val = count_images(SplitSpec(str(folder), None, 0.25, 2))
    assert (n_train, n_val) == (23, 8)  # 31 listed image files, the two undecodable ones included
    assert count_images(SplitSpec("cifar10", limit_per_class=10)) == (90, 10)


# --- a process on a budget -------------------------------------------------------------------------------
_MEASURE = """
import hashlib, json, os, resource, sys
from pathlib import Path
from edgevision.train import trainer

def rss_kib(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))

settings = trainer.TrainSettings(arch="mobilenetv2", data=sys.argv[1], out=sys.argv[2], epochs=1, head_epochs=1, batch_size=16,
                                 input_size=160, weights=None, cache=sys.argv[3], memory_budget=sys.argv[4])
import cv2, keras  # imported before the baseline: what is measured is the data
baseline = rss_kib("VmRSS")
split, path = trainer._load_data(settings, Path(settings.out), lambda m: None, Path(sys.argv[2]) / "cache")
plan = trainer.RunPlan(settings, Path(settings.out), None, split, trainer.make_preprocess(settings, split.x_train), {})
train, _ = trainer._train_and_val_batches(plan)
digest = [hashlib.sha1(x.tobytes() + y.tobytes()).hexdigest() for x, y in (train[i] for i in range(len(train)))]
print(json.dumps({"path": path, "baseline_kib": baseline, "peak_kib": rss_kib("VmHWM"), "batches": digest}))
"""


def _measure(data: Path, out: Path, cache: str, budget: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(data), str(out), cache, budget], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_budget_below_the_cache_streams_within_it_and_trains_on_the_same_batches(tmp_path):
    data = tmp_path / "data"
    make_image_folder(data, ("ant", "bee", "cow"), per_class=400, size=(24, 24))
    n_train, n_val = count_images(SplitSpec(str(data)))
    needed = streaming.memory_needed(n_train, n_val, (160, 160), 20)  # MobileNetV2 at 160 px pads by 20
    cap = 32 * 2**20
    # Beyond the images the cap is for, decoding threads and the batch being made take some working memory.
    working = 32 * 2**20
    assert needed > 3 * (cap + working)  # the in-memory path could not keep to the cap
    streamed = _measure(data, tmp_path / "streamed", "auto", f"{cap // 2**20}M")
    cached = _measure(data, tmp_path / "cached", "memory", "1T")
    assert streamed["path"] == "disk" and cached["path"] == "memory"
    assert streamed["batches"] == cached["batches"]  # the first epoch, batch for batch
    grew = lambda m: (m["peak_kib"] - m["baseline_kib"]) * 1024  # noqa: E731
    assert grew(cached) > 0.8 * needed  # what the cap saves is really there to save
    assert grew(streamed) < cap + working, (grew(streamed), cap)


@pytest.mark.slow
def test_edgevision_train_on_a_tiny_budget_streams_and_completes(folder, tmp_path):
    out = tmp_path / "run"
    result = run_main("train", "cnn", "--data", folder, "--out", out, "--epochs", 1, "--batch-size", 8,
                      "--val-split", 0.25, env={streaming.BUDGET_ENV: "1K"})
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["data_path"] == "disk"
    assert not (out / streaming.CACHE_DIR).exists()  # a completed run drops its cache, as large as the data
