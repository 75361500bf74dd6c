"""Training end to end on tiny real image folders: the run directory, resume after kill -9, MobileNetV2 phases.

CPU is scarce, so the expensive things happen once per module: three `edgevision train cnn` processes
(uninterrupted, killed, resumed) and one `edgevision train mobilenetv2`; the tests then read what they left.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from _data_helpers import make_image_folder, python_cmd, run_main
from conftest import shared_path

from edgevision.train.architectures import CNNConfig  # no Keras behind it: models are built lazily

RUN_FILES = ("model.keras", "last.keras", "labels.txt", "preprocess.json", "run.json", "history.csv", "curves.png",
             "confusion_matrix.png", "report.json", "report.txt")
CLASSES = ("cat", "dog", "fox")
CNN_EPOCHS = 4
# Same command for the uninterrupted, the killed and the resumed run (only --out differs).
CNN_ARGS = ("train", "cnn", "--data", "data", "--epochs", CNN_EPOCHS, "--batch-size", 8, "--seed", 1, "--val-split", 0.2)
ENV = {**os.environ, "EDGEVISION_DEBUG": "", "TF_CPP_MIN_LOG_LEVEL": "3"}

pytestmark = pytest.mark.slow


def _history(run: Path):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def _visible_keras_files(run: Path):
    return [p for p in run.rglob("*.keras") if not p.name.startswith(".")]


class ZipWatcher(threading.Thread):
    """Checks, over and over while training runs, that every visible .keras file is a complete archive.

    A half-written Keras file is a truncated zip: its central directory (at the end) is missing.
    """

    def __init__(self, run: Path):
        super().__init__(daemon=True)
        self.folder, self.checked, self.bad, self.stop = run, 0, [], threading.Event()

    def run_once(self):
        for path in _visible_keras_files(self.folder):
            try:
                with zipfile.ZipFile(path) as z:
                    if "config.json" not in z.namelist():
                        self.bad.append(f"{path.name}: no config.json")
                self.checked += 1
            except FileNotFoundError:
                pass  # replaced or pruned between listing and opening: fine
            except zipfile.BadZipFile as e:
                self.bad.append(f"{path.name}: {e}")

    def run(self):  # noqa: D401 - threading API
        while not self.stop.is_set():
            self.run_once()
            time.sleep(0.01)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    make_image_folder(root / "data", CLASSES, per_class=10, size=(36, 44))
    return root


@pytest.fixture(scope="module")
def cnn_runs(workdir):
    """An uninterrupted run, and a run killed with SIGKILL after its first checkpoint then re-run.

    Relative --data on purpose: validation_arrays() must find the data from another working directory.
    """
    ref_out, log = workdir / "ref", workdir / "ref.log"
    with open(log, "w") as ref_log:
        reference = subprocess.Popen(python_cmd(*CNN_ARGS, "--out", "ref"), cwd=workdir, env=ENV,
                                     stdout=ref_log, stderr=subprocess.STDOUT)
    killed_out = workdir / "killed"
    watcher = ZipWatcher(killed_out)
    watcher.start()
    with open(workdir / "killed.log", "w") as killed_log:
        victim = subprocess.Popen(python_cmd(*CNN_ARGS, "--out", "killed"), cwd=workdir, env=ENV,
                                  stdout=killed_log, stderr=subprocess.STDOUT)
    state_file = killed_out / "checkpoints" / "state.json"
    deadline = time.time() + 400
    while not state_file.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    state_at_kill = json.loads(state_file.read_text()) if state_file.exists() else None
    files_at_kill = sorted(p.name for p in _visible_keras_files(killed_out))
    loads_at_kill = {}
    import keras

    for path in _visible_keras_files(killed_out):
        keras.saving.load_model(path, compile=True, safe_mode=True)  # raises if half-written
        loads_at_kill[path.name] = True

    resumed = subprocess.run(python_cmd(*CNN_ARGS, "--out", "killed"), cwd=workdir, env=ENV,
                             capture_output=True, text=True, timeout=600)
    watcher.stop.set()
    watcher.join()
    assert reference.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {
        "ref": ref_out, "killed": killed_out, "victim_code": victim.returncode, "state_at_kill": state_at_kill,
        "files_at_kill": files_at_kill, "loads_at_kill": loads_at_kill, "resumed": resumed, "watcher": watcher,
    }


def test_cnn_run_directory_has_every_file(cnn_runs):
    ref = cnn_runs["ref"]
    for name in RUN_FILES:
        assert (ref / name).is_file() and (ref / name).stat().st_size > 0, name
    assert (ref / "labels.txt").read_text().split() == list(CLASSES)
    pre = json.loads((ref / "preprocess.json").read_text())
    assert pre["input_size"] == [32, 32] and pre["color_order"] == "RGB"
    run = json.loads((ref / "run.json").read_text())
    assert run["status"] == "complete" and run["settings"]["arch"] == "cnn" and run["epochs_completed"] == CNN_EPOCHS
    assert run["num_train"] + run["num_val"] == 30 and run["parameters"] <= 1_500_000
    # What the defaults resolved to is recorded, not just the None that was typed.
    assert run["weight_decay"] == 5e-3 and run["label_smoothing"] == 0.2
    assert run["augmentation"] == {"flip": True, "alternate_flip": False, "pad": 4, "cutout": 8, "rotation": 0.0, "zoom": 0.0,
                                   "color_jitter": 0.0, "random_erasing": 0.0}  # the extras are off by default
    assert run["optimizer"] == {"train": {"name": "sgd", "momentum": 0.9, "learning_rate_schedule": "cosine",
                                          "peak_learning_rate": 0.1 * 8 / 128, "warmup": True,
                                          "ema": 0.0, "offset_lr_scale": 1.0}}
    assert run["class_weight"] is None
    # The split is recorded once, with the absolute data path: no flat copies of its inputs beside "settings".
    assert not {"data", "val_split", "val_data", "seed", "limit_per_class"} & set(run)
    assert run["data_source"] == {"kind": "folder", "path": str((ref.parent / "data").resolve()), "seed": 1,
                                  "val": {"kind": "split", "fraction": 0.2}}
    report = json.loads((ref / "report.json").read_text())
    assert set(report["per_class"]) == set(CLASSES) and report["n"] == run["num_val"]
    assert {"precision", "recall", "f1", "support"} <= set(report["per_class"]["cat"])
    assert "macro avg" in (ref / "report.txt").read_text()
    rows = _history(ref)
    assert [int(r["epoch"]) for r in rows] == list(range(1, CNN_EPOCHS + 1))
    # model.keras is the epoch that validated best (the first of equals), last.keras the last one.
    val = [float(r["val_accuracy"]) for r in rows]
    assert run["checkpoint"]["best_epoch"] == int(np.argmax(val)) + 1 and run["checkpoint"]["last_epoch"] == CNN_EPOCHS
    assert run["val_accuracy"] == pytest.approx(max(val), abs=1e-6)
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    for png in ("curves.png", "confusion_matrix.png"):
        assert (ref / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_kill_matches_uninterrupted_run(cnn_runs):
    state = cnn_runs["state_at_kill"]
    assert cnn_runs["victim_code"] == -signal.SIGKILL
    assert state is not None and 1 <= state["epoch"] < CNN_EPOCHS, state  # killed mid-run, after a checkpoint
    assert cnn_runs["files_at_kill"] and all(cnn_runs["loads_at_kill"].values())
    assert "model.keras" not in cnn_runs["files_at_kill"]  # the final model only appears complete, at the end
    resumed = cnn_runs["resumed"]
    assert "resuming after epoch" in resumed.stderr
    resumed_at = int(resumed.stderr.split("resuming after epoch ")[1].split()[0])
    assert resumed_at >= state["epoch"]
    killed, ref = cnn_runs["killed"], cnn_runs["ref"]
    assert [int(r["epoch"]) for r in _history(killed)] == list(range(1, CNN_EPOCHS + 1))
    last_k, last_r = _history(killed)[-1], _history(ref)[-1]
    for key in ("val_loss", "val_accuracy", "loss"):
        # Bit-identical here (batches, their order and the optimizer state are all restored); the tolerance
        # is for thread-order float differences on other machines.
        assert float(last_k[key]) == pytest.approx(float(last_r[key]), rel=1e-4, abs=1e-5), key
    rep_k = json.loads((killed / "report.json").read_text())
    rep_r = json.loads((ref / "report.json").read_text())
    assert rep_k["confusion_matrix"] == rep_r["confusion_matrix"]
    # No half-written archive was ever visible, and the kill's temporary file did not stay behind.
    watcher = cnn_runs["watcher"]
    assert watcher.checked > 0 and not watcher.bad, watcher.bad
    assert not [p for p in (killed / "checkpoints").iterdir() if p.name.startswith(".")]
    # The best epoch is tracked across the kill: the resumed run keeps the same one as the uninterrupted run.
    best = json.loads((ref / "run.json").read_text())["checkpoint"]
    assert json.loads((killed / "run.json").read_text())["checkpoint"] == pytest.approx(best)
    kept = {f"epoch-{CNN_EPOCHS:03d}.keras", f"best-epoch-{best['best_epoch']:03d}.keras"}
    assert {p.name for p in (killed / "checkpoints").glob("*.keras")} == kept


def test_validation_arrays_reproduce_the_training_report(cnn_runs):
    """Run from another working directory than training: the recorded absolute data path is used."""
    import keras

    from edgevision.edge_runtime.metrics import confusion_matrix
    from edgevision.edge_runtime.preprocess import normalize
    from edgevision.train.data import validation_arrays
    from edgevision.train.run_dir import load_run

    run = load_run(cnn_runs["ref"])
    x, y = validation_arrays(run)
    assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3) and len(x) == run.settings["num_val"]
    assert sorted(set(y.tolist())) == [0, 1, 2]  # stratified: every class in the validation set
    model = keras.saving.load_model(run.model_path)
    pred = model.predict(normalize(x, run.preprocess), verbose=0).argmax(1)
    report = json.loads((run.path / "report.json").read_text())
    assert confusion_matrix(y, pred, 3).tolist() == report["confusion_matrix"]
    x2, y2 = validation_arrays(run.path)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_evaluate_and_predict_a_run_directory(cnn_runs, workdir, tmp_path):
    out = tmp_path / "eval"
    result = run_main("evaluate", cnn_runs["ref"], "--data", workdir / "data", "--json", "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 30 and set(report["per_class"]) == set(CLASSES)
    assert 0.0 <= report["accuracy"] <= 1.0 and "macro_f1" in report
    assert (out / "confusion_matrix.png").is_file() and json.loads((out / "report.json").read_text()) == report
    images = sorted((workdir / "data" / "dog").iterdir())[:2]
    result = run_main("predict", cnn_runs["ref"], *images, "--top-k", 2, "--json")
    assert result.returncode == 0, result.stderr
    preds = json.loads(result.stdout)
    assert [p["image"] for p in preds] == [str(p) for p in images]
    assert all(len(p["top"]) == 2 and p["top"][0]["score"] >= p["top"][1]["score"] for p in preds)
    assert {t["label"] for p in preds for t in p["top"]} <= set(CLASSES)


def test_changing_settings_on_an_existing_run_is_an_error(cnn_runs, workdir):
    result = run_main("train", "cnn", "--data", workdir / "data", "--out", cnn_runs["ref"], "--epochs", CNN_EPOCHS + 1,
                      "--batch-size", 8, "--seed", 1, "--val-split", 0.2)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "epochs: 4 -> 5" in errors[0] and "new --out" in errors[0]
    assert json.loads((cnn_runs["ref"] / "run.json").read_text())["status"] == "complete"  # nothing overwritten


# --- MobileNetV2 -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seeded_keras_home(tmp_path_factory):
    script = shared_path("tools", "seed-keras-cache.sh")
    home = tmp_path_factory.mktemp("keras-home")
    subprocess.run(["bash", str(script), str(home)], check=True, capture_output=True)
    return home


@pytest.mark.shared
def test_mobilenetv2_imagenet_end_to_end(workdir, seeded_keras_home, tmp_path):
    out = tmp_path / "mnv2"
    proc = subprocess.run(
        python_cmd("train", "mobilenetv2", "--data", workdir / "data", "--out", out, "--epochs", 2, "--head-epochs", 1,
                   "--input-size", 96, "--batch-size", 8, "--fine-tune-layers", 20, "--weights", "imagenet"),
        env={**ENV, "KERAS_HOME": str(seeded_keras_home)}, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "phase head" in proc.stderr and "phase fine_tune" in proc.stderr
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    pre = json.loads((out / "preprocess.json").read_text())
    assert pre["input_size"] == [96, 96] and pre["mean"] == [127.5] * 3 and pre["std"] == [127.5] * 3
    assert [r["phase"] for r in _history(out)] == ["head", "fine_tune"]
    result = run_main("evaluate", out, "--data", workdir / "data", "--json", "--out", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n"] == 30


def _conv1_kernel_from_h5(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        group = f["Conv1"]
        name = group.attrs["weight_names"][0]
        name = name.decode() if isinstance(name, bytes) else name
        return np.array(group[name] if name in group else group["Conv1"]["kernel"])


@pytest.mark.shared
def test_mobilenetv2_weights_from_a_file(tmp_path):
    from edgevision.errors import UsageError
    from edgevision.train.architectures import build_mobilenetv2

    no_top = shared_path("models", "imagenet", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    full = shared_path("models", "imagenet", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5")
    expected = _conv1_kernel_from_h5(no_top)
    _, base = build_mobilenetv2(3, 96, weights=str(no_top))
    assert np.array_equal(base.get_layer("Conv1").get_weights()[0], expected)
    _, base_full = build_mobilenetv2(3, 96, weights=str(full))  # the classifier file: matched by layer name
    assert np.array_equal(base_full.get_layer("Conv1").get_weights()[0], expected)
    assert np.array_equal(base_full.get_layer("block_16_project").get_weights()[0],
                          base.get_layer("block_16_project").get_weights()[0])
    _, scratch = build_mobilenetv2(3, 96, weights="none")
    assert not np.array_equal(scratch.get_layer("Conv1").get_weights()[0], expected)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(UsageError, match="cannot load weights from"):
        build_mobilenetv2(3, 96, weights=str(junk))
    with pytest.raises(UsageError, match="does not fit MobileNetV2"):
        build_mobilenetv2(3, 96, alpha=0.35, weights=str(no_top))
    with pytest.raises(UsageError, match="none of these"):
        build_mobilenetv2(3, 96, weights=str(tmp_path / "missing.h5"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 vs Keras' __array__, once per variable
def test_mobilenetv2_phases_freeze_what_they_should():
    """Head phase: the whole base frozen. Fine-tuning: only the top N non-BN layers train, BN stats stay put.

    Checked twice: on the trainable flags, and on the weights after a real training step.
    """
    import keras

    from edgevision.train.architectures import build_mobilenetv2
    from edgevision.train.trainer import TrainSettings, _compile, _set_trainable_for_phase, phases_for

    top = 12
    settings = TrainSettings(arch="mobilenetv2", data="unused", out="unused", epochs=2, batch_size=4, head_epochs=1,
                             fine_tune_layers=top, alpha=0.35, weights="none")
    head, fine = phases_for(settings)
    model, base = build_mobilenetv2(3, 96, alpha=0.35, weights="none")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 96, 96, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]

    def snapshot():
        return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}

    def step(phase):
        _set_trainable_for_phase(model, phase, settings)
        _compile(model, phase, settings, steps_per_epoch=2)
        before = snapshot()
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        after = snapshot()
        return {k for k in before if not np.array_equal(before[k], after[k])}

    changed = step(head)
    assert base.trainable_weights == []
    assert {v.path for v in model.trainable_weights} == {"logits/kernel", "logits/bias"}
    assert changed == {"logits/kernel", "logits/bias"}, sorted(changed)[:5]  # BN moving stats included

    changed = step(fine)
    layers = base.layers
    top_layers = layers[len(layers) - top:]
    expected = {l.name for l in top_layers if not isinstance(l, keras.layers.BatchNormalization)}
    assert {l.name for l in layers if l.trainable} == expected
    assert not any(l.trainable for l in layers if isinstance(l, keras.layers.BatchNormalization))
    trainable_paths = {v.path for v in model.trainable_weights}
    expected_paths = {v.path for l in top_layers if l.name in expected for v in l.weights} | {"logits/kernel", "logits/bias"}
    assert trainable_paths == expected_paths
    assert changed and changed <= expected_paths, sorted(changed - expected_paths)[:5]
    assert any(p.startswith("logits") for p in changed) and any(not p.startswith("logits") for p in changed)


def test_mobilenetv2_fine_tunes_the_whole_base_by_default():
    """No --fine-tune-layers: every non-BN layer of the base trains in the fine-tuning phase."""
    import keras

    from edgevision.train.architectures import build_mobilenetv2
    from edgevision.train.trainer import TrainSettings, _set_trainable_for_phase, phases_for

    settings = TrainSettings(arch="mobilenetv2", data="unused", out="unused", epochs=2, batch_size=4, head_epochs=1,
                             alpha=0.35, weights="none")
    _, fine = phases_for(settings)
    model, base = build_mobilenetv2(3, 96, alpha=0.35, weights="none")
    _set_trainable_for_phase(model, fine, settings)
    for layer in base.layers:
        assert layer.trainable != isinstance(layer, keras.layers.BatchNormalization), layer.name


def test_defaults_resolve_per_architecture():
    import dataclasses

    from edgevision.errors import UsageError
    from edgevision.train.trainer import TrainSettings, cutout_for, label_smoothing_for, weight_decay_for

    cnn = TrainSettings(arch="cnn", data="d", out="o", epochs=1, batch_size=1)
    mnv2 = TrainSettings(arch="mobilenetv2", data="d", out="o", epochs=1, batch_size=1, head_epochs=1)
    # A quarter of the input side: the same patch of a CIFAR-10 image whether it is seen at 32 or 160 px.
    assert (cutout_for(cnn, 32), cutout_for(mnv2, 160), cutout_for(mnv2, 224)) == (8, 40, 56)
    assert cutout_for(dataclasses.replace(mnv2, cutout=0), 160) == 0
    assert (weight_decay_for(cnn), weight_decay_for(mnv2)) == (5e-3, 5e-2)
    assert weight_decay_for(dataclasses.replace(cnn, weight_decay=0.0)) == 0.0
    assert (label_smoothing_for(cnn), label_smoothing_for(mnv2)) == (0.2, 0.1)
    assert label_smoothing_for(dataclasses.replace(mnv2, label_smoothing=0.0)) == 0.0
    with pytest.raises(UsageError, match="--label-smoothing must be at least 0 and below 1, got 1.0"):
        TrainSettings(arch="cnn", data="d", out="o", epochs=1, batch_size=1, label_smoothing=1.0)
    for bad in ({"weight_decay": -0.1}, {"fine_tune_layers": -1}):
        with pytest.raises(UsageError, match="must be 0 or more"):
            TrainSettings(arch="mobilenetv2", data="d", out="o", epochs=1, batch_size=1, head_epochs=1, **bad)


# Folding works on the graph, so a config with other widths and residual stages folds as well as the default.
@pytest.mark.parametrize("config", [CNNConfig(), CNNConfig(stem_width=8, widths=(16, 24), residual=(False, True))],
                         ids=["default", "another-config"])
def test_the_cnn_logit_multiplier_is_folded_into_the_dense_layer(config):
    import keras

    from edgevision.train.architectures import LOGIT_SCALE, build_cnn, fold_logit_scale

    model = build_cnn(10, config=config)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # away from the initial values, so batch norm and biases count
        layer.set_weights([w + rng.uniform(0.0, 0.1, w.shape).astype(w.dtype) for w in layer.get_weights()])
    before = [w.copy() for w in model.get_weights()]
    folded = fold_logit_scale(model)
    names = [layer.name for layer in folded.layers]
    assert LOGIT_SCALE in [layer.name for layer in model.layers] and LOGIT_SCALE not in names
    assert not any(isinstance(layer, keras.layers.Rescaling) for layer in folded.layers)
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert folded.count_params() == model.count_params() <= 1_500_000
    for kept, now in zip(before, model.get_weights()):  # the caller's model is left as it was
        np.testing.assert_array_equal(kept, now)
    assert fold_logit_scale(folded) is folded


def test_a_run_that_ends_at_chance_level_is_flagged():
    from edgevision.train.trainer import chance_level_warning

    message = chance_level_warning(0.1, 10, 5000)
    assert "10.0% is about chance" in message and "--fine-tune-learning-rate" in message
    assert chance_level_warning(0.9, 10, 5000) is None
    assert chance_level_warning(0.1, 10, 30) is None  # too few images to tell


@pytest.mark.parametrize("option", ["--epochs", "--batch-size"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_zero_or_negative_epochs_and_batch_size_are_refused(option, value, tmp_path):
    from conftest import run_cli

    proc = run_cli("train", "cnn", "--data", str(tmp_path), "--out", str(tmp_path / "run"), option, value)
    assert proc.returncode == 2 and option in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
