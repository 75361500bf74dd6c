"""The training knobs of issue 22 on tiny real runs: the best checkpoint, logs that pipe well, class weights,
optimizers and schedules, the augmentation extras.

The runs are a few seconds each (32 px images, 2-3 epochs); the unit tests below them need no training.
"""

from __future__ import annotations

import csv
import json
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from _data_helpers import make_image_folder, python_cmd, run_main

ENV = {**os.environ, "EDGEVISION_DEBUG": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
SWAPPED_EPOCHS = 3


def _history(run: Path):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def _accuracy(model_path: Path, run: Path) -> float:
    """`model_path` scored on the run's validation split, with Keras itself (not the code under test)."""
    import keras

    from edgevision.edge_runtime.preprocess import normalize
    from edgevision.train.data import validation_arrays
    from edgevision.train.run_dir import load_run

    info = load_run(run)
    x, y = validation_arrays(info)
    model = keras.saving.load_model(model_path)
    return float((model.predict(normalize(x, info.preprocess), verbose=0).argmax(1) == y).mean())


@pytest.fixture(scope="module")
def swapped_run(tmp_path_factory):
    """A run whose validation folder has the training classes' names swapped: the better the model learns
    the training set, the worse it scores, so a later epoch is worse than an earlier one by construction.
    Run as a real process with stdout piped, as a CI log or `| tee` would."""
    root = tmp_path_factory.mktemp("swapped")
    make_image_folder(root / "train", ("cat", "dog"), per_class=12, size=(36, 44))
    make_image_folder(root / "val", ("dog", "cat"), per_class=12, size=(36, 44))  # cat images in dog/, ...
    result = subprocess.run(
        python_cmd("train", "cnn", "--data", root / "train", "--val-data", root / "val", "--out", root / "run",
                   "--epochs", SWAPPED_EPOCHS, "--batch-size", 8, "--seed", 0, "--lr-schedule", "constant",
                   "--learning-rate", 0.002),
        capture_output=True, text=True, env=ENV, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run", result


def test_model_keras_is_the_best_epoch_and_last_keras_the_last(swapped_run):
    run, _ = swapped_run
    rows = _history(run)
    val = [float(r["val_accuracy"]) for r in rows]
    assert len(val) == SWAPPED_EPOCHS and val[-1] < max(val), val  # the construction worked: the end is worse
    record = json.loads((run / "run.json").read_text())
    chosen = record["checkpoint"]
    assert chosen["model.keras"] == "best" and chosen["last.keras"] == "last"
    assert chosen["best_epoch"] == int(np.argmax(val)) + 1 and chosen["last_epoch"] == SWAPPED_EPOCHS
    assert chosen["best_val_accuracy"] == pytest.approx(max(val))
    # The files hold what run.json says: model.keras scores the best epoch's figure, last.keras the last's.
    assert _accuracy(run / "model.keras", run) == pytest.approx(max(val), abs=1e-6)
    assert _accuracy(run / "last.keras", run) == pytest.approx(val[-1], abs=1e-6)
    assert record["val_accuracy"] == pytest.approx(max(val), abs=1e-6)  # the report is the best model's
    # The best epoch's checkpoint stays (a resume after the end needs it), beside the last epoch's.
    names = sorted(p.name for p in (run / "checkpoints").glob("*.keras"))
    assert names == [f"best-epoch-{chosen['best_epoch']:03d}.keras", f"epoch-{SWAPPED_EPOCHS:03d}.keras"]


def test_a_piped_log_has_one_line_per_epoch_and_no_terminal_codes(swapped_run):
    _, result = swapped_run
    for stream in (result.stdout, result.stderr):
        assert "\r" not in stream and "\x1b" not in stream
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("Epoch ")] == [f"Epoch {i}/{SWAPPED_EPOCHS}"
                                                                    for i in range(1, SWAPPED_EPOCHS + 1)]
    assert sum("val_accuracy" in line for line in lines) == SWAPPED_EPOCHS
    assert "model.keras: epoch" in result.stderr and "constant schedule" in result.stderr


def test_a_terminal_gets_the_progress_bar(tmp_path):
    make_image_folder(tmp_path / "data", ("cat", "dog"), per_class=6, size=(36, 44))
    master, slave = pty.openpty()
    process = subprocess.Popen(
        python_cmd("train", "cnn", "--data", tmp_path / "data", "--out", tmp_path / "run", "--epochs", 1,
                   "--batch-size", 4, "--val-split", 0.2),
        stdout=slave, stderr=subprocess.DEVNULL, env=ENV,
    )
    os.close(slave)
    chunks = []
    reader = threading.Thread(target=_read_until_closed, args=(master, chunks), daemon=True)
    reader.start()
    assert process.wait(timeout=600) == 0
    reader.join(timeout=30)
    screen = b"".join(chunks).decode(errors="replace")
    assert "\r" in screen and "━" in screen, screen[-2000:]  # the redrawn bar, not one line per epoch


def _read_until_closed(fd: int, chunks: list) -> None:
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(fd)


# --- class weights ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    root = tmp_path_factory.mktemp("imbalanced")
    for name, label, count in (("common", 0, 30), ("rare", 1, 3)):
        _class_folder(root / "train" / name, label, count)
        _class_folder(root / "val" / name, label, 10, offset=100)
    (root / "weights.json").write_text(json.dumps({"rare": 10}))
    return root


def _class_folder(folder: Path, label: int, count: int, offset: int = 0) -> None:
    from _data_helpers import synthetic_image, write_image

    for i in range(count):
        write_image(folder / f"{i:02d}.png", synthetic_image(label, offset + i, (36, 44)))


def _mean_probability_of_rare(run: Path) -> float:
    import keras

    from edgevision.edge_runtime.preprocess import normalize
    from edgevision.train.data import validation_arrays
    from edgevision.train.run_dir import load_run

    info = load_run(run)
    x, _ = validation_arrays(info)
    # last.keras: what the training ended with (model.keras is whichever epoch validated best, which may differ)
    probs = keras.saving.load_model(run / "last.keras").predict(normalize(x, info.preprocess), verbose=0)
    return float(probs[:, info.labels.index("rare")].mean())


def _train_imbalanced(root: Path, out: str, *extra):
    result = run_main("train", "cnn", "--data", root / "train", "--val-data", root / "val", "--out", root / out,
                      "--epochs", 3, "--batch-size", 8, "--seed", 3, "--lr-schedule", "constant",
                      "--learning-rate", 0.01, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / out


def test_class_weights_shift_what_an_imbalanced_folder_learns(imbalanced):
    plain = _train_imbalanced(imbalanced, "plain")
    weighted = _train_imbalanced(imbalanced, "weighted", "--class-weight", imbalanced / "weights.json")
    assert json.loads((plain / "run.json").read_text())["class_weight"] is None
    record = json.loads((weighted / "run.json").read_text())
    assert record["class_weight"] == {"common": 1.0, "rare": 10.0}
    assert record["settings"]["class_weight"] == str(imbalanced / "weights.json")
    p_plain, p_weighted = _mean_probability_of_rare(plain), _mean_probability_of_rare(weighted)
    # Same seed, same batches: only the weights differ, and the rare class gains probability everywhere.
    assert p_weighted > p_plain + 0.1, (p_plain, p_weighted)


def test_balanced_class_weights_are_inverse_frequencies():
    from edgevision.train.recipe import class_weights

    weights = class_weights("balanced", ("a", "b", "c"), np.array([0] * 6 + [1] * 3 + [2] * 1))
    assert weights == pytest.approx({0: 10 / 18, 1: 10 / 9, 2: 10 / 3})
    # Every class then contributes the same total weight.
    assert 6 * weights[0] == pytest.approx(3 * weights[1]) == pytest.approx(1 * weights[2])


@pytest.mark.parametrize("content, message", [
    ('{"zebra": 2}', "unknown class(es) zebra"),
    ('{"a": -1}', "must be a number >= 0"),
    ('[1, 2]', "must hold one object"),
    ('{"a": 0, "b": 0}', "weighs every class 0"),
    ("not json", "is not valid JSON"),
])
def test_a_bad_class_weight_file_is_one_clear_error(tmp_path, content, message):
    from edgevision.errors import UsageError
    from edgevision.train.recipe import class_weights

    path = tmp_path / "w.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        class_weights(str(path), ("a", "b"), np.array([0, 1]))
    with pytest.raises(UsageError, match="is not a file"):
        class_weights(str(tmp_path / "absent.json"), ("a", "b"), np.array([0, 1]))


# --- optimizers and schedules ------------------------------------------------------------------------------
def test_defaults_are_todays_recipes():
    from edgevision.train.trainer import TrainSettings, phases_for

    cnn = phases_for(TrainSettings(arch="cnn", data="d", out="o", epochs=4, batch_size=8))
    assert [(p.optimizer, p.warmup) for p in cnn] == [("sgd", True)]
    mnv2 = phases_for(TrainSettings(arch="mobilenetv2", data="d", out="o", epochs=4, batch_size=8))
    assert [(p.name, p.optimizer, p.warmup) for p in mnv2] == [("head", "adamw", False), ("fine_tune", "adamw", False)]
    chosen = phases_for(TrainSettings(arch="cnn", data="d", out="o", epochs=4, batch_size=8, optimizer="rmsprop"))
    assert chosen[0].optimizer == "rmsprop"


def test_the_recipe_optimizers_are_built_as_before():
    import keras

    from edgevision.train.recipe import make_optimizer

    sgd = make_optimizer("sgd", 0.1, 5e-3, 0.9)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.9
    assert sgd.weight_decay == pytest.approx(5e-3)
    adamw = make_optimizer("adamw", 1e-3, 5e-2, None)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == pytest.approx(5e-4)
    adam = make_optimizer("adam", 1e-3, 5e-2, None)
    assert type(adam) is keras.optimizers.Adam and not adam.weight_decay
    rms = make_optimizer("rmsprop", 1e-3, 5e-3, 0.5)
    assert isinstance(rms, keras.optimizers.RMSprop) and rms.momentum == 0.5
    assert not any(o.use_ema for o in (sgd, adamw, adam, rms))  # lookahead only when asked for


def _tiny_classifier():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Softmax()])


def test_lookahead_resets_the_net_to_the_average_and_checkpoints_carry_it(tmp_path):
    import keras

    from edgevision.train.recipe import EMA_EVERY
    from edgevision.train.trainer import Phase, TrainSettings, _compile, _recompile_keeping_state

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)), np.eye(3)[rng.integers(0, 3, 64)]
    settings = TrainSettings(arch="cnn", data="d", out="o", epochs=2, batch_size=8, ema=0.8)
    phase = Phase("train", 0, 2, 0.5, "sgd", warmup=True)
    plain, ahead = _tiny_classifier(), _tiny_classifier()
    _compile(plain, phase, TrainSettings(arch="cnn", data="d", out="o", epochs=2, batch_size=8), 8)
    _compile(ahead, phase, settings, 8)
    assert ahead.optimizer.use_ema and ahead.optimizer.ema_overwrite_frequency == EMA_EVERY
    for model in (plain, ahead):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    averages = [keras.ops.convert_to_numpy(v) for v in ahead.optimizer._model_variables_moving_average]
    # fit() ends with the net set to the average, so the saved model is the averaged one...
    for weight, average in zip(ahead.get_weights(), averages):
        np.testing.assert_array_equal(weight, average)
    assert not np.allclose(plain.get_weights()[0], ahead.get_weights()[0])  # ...which differs from plain SGD
    # ...and a checkpoint keeps the average among the optimizer's state, which a resumed run goes on from.
    ahead.save(tmp_path / "ckpt.keras")
    loaded = keras.models.load_model(tmp_path / "ckpt.keras")
    _recompile_keeping_state(loaded, phase, settings, 8)
    for kept, average in zip(loaded.optimizer._model_variables_moving_average, averages):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(kept), average)


def _bn_classifier():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False),
                             keras.layers.BatchNormalization(scale=False), keras.layers.Softmax()])


def test_offset_lr_scale_speeds_up_batch_norm_offsets_only_and_checkpoints_load(tmp_path):
    import keras

    from edgevision.train.recipe import custom_objects, make_optimizer

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)).astype("float32"), np.eye(3)[rng.integers(0, 3, 8)]
    changes = []
    for scale in (1.0, 8.0):
        model = _bn_classifier()
        before = model.get_weights()  # kernel, beta, moving mean, moving variance
        model.compile(optimizer=make_optimizer("sgd", 0.1, 0.0, 0.0, offset_lr_scale=scale),
                      loss="categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)  # one step: same gradients both times
        changes.append([after - b for after, b in zip(model.get_weights(), before)])
    (kernel, beta, *_), (kernel_fast, beta_fast, *_) = changes
    assert np.abs(beta).max() > 0
    np.testing.assert_allclose(beta_fast, 8 * beta, rtol=1e-5)  # offsets step 8 times as far...
    np.testing.assert_allclose(kernel_fast, kernel, rtol=1e-6)  # ...and the weights exactly as far as before
    assert type(make_optimizer("sgd", 0.1, 0.0, 0.9)) is keras.optimizers.SGD  # the recipes' own, when 1
    model.save(tmp_path / "ckpt.keras")  # a checkpoint of a run with it loads, its scale kept
    loaded = keras.models.load_model(tmp_path / "ckpt.keras", custom_objects=custom_objects())
    assert loaded.optimizer.offset_lr_scale == 8.0


def test_a_run_with_the_offset_scale_saves_models_plain_keras_loads(tmp_path):
    make_image_folder(tmp_path / "data", ("cat", "dog"), per_class=8, size=(32, 32))
    run = tmp_path / "run"
    result = run_main("train", "cnn", "--data", tmp_path / "data", "--out", run, "--epochs", 1, "--batch-size", 8,
                      "--offset-lr-scale", 8)
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "run.json").read_text())["settings"]["offset_lr_scale"] == 8
    for name in ("model.keras", "last.keras"):  # in a fresh Python without edgevision: a user's own script
        script = f"import keras; print(keras.saving.load_model({str(run / name)!r}).output_shape)"
        loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=300)
        assert loaded.returncode == 0 and "(None, 2)" in loaded.stdout, loaded.stderr[-2000:]


def _rates(schedule, steps):
    import keras

    return [float(keras.ops.convert_to_numpy(schedule(step))) for step in steps]


def test_learning_rate_schedules():
    from edgevision.train.recipe import schedule

    cosine = _rates(schedule("cosine", 0.1, 100, 10), [0, 5, 10, 55, 100])
    assert cosine[0] == 0 and cosine[1] == pytest.approx(0.05) and cosine[2] == pytest.approx(0.1)
    assert cosine[3] == pytest.approx(0.05, rel=1e-3) and cosine[4] == pytest.approx(0, abs=1e-7)
    constant = _rates(schedule("constant", 0.1, 100, 10), [5, 10, 50, 99])
    assert constant[0] == pytest.approx(0.05) and constant[1:] == pytest.approx([0.1] * 3)
    step = _rates(schedule("step", 0.1, 100, 10), [0, 49, 51, 74, 76, 99])
    assert step == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


@pytest.mark.parametrize("args, message", [
    (("--optimizer", "adam", "--momentum", 0.9), "--momentum applies to --optimizer sgd or rmsprop"),
    (("--optimizer", "adam", "--weight-decay", 0.01), "use --optimizer adamw"),
    (("--momentum", 1.5, "--optimizer", "sgd"), "--momentum must be"),
    (("--rotation", 400), "--rotation must be between"),
    (("--random-erasing", 2), "--random-erasing must be between"),
    (("--zoom", -0.1), "--zoom must be between"),
    (("--ema", 1.0), "--ema must be at least 0"),
    (("--translate", -1), "--translate must be 0"),
    (("--offset-lr-scale", 0), "--offset-lr-scale must be above 0"),
    (("--offset-lr-scale", 8, "--optimizer", "adamw"), "--offset-lr-scale applies to --optimizer sgd only"),
])
def test_bad_knobs_are_one_line_errors(tmp_path, args, message):
    result = run_main("train", "cnn", "--data", tmp_path, "--out", tmp_path / "run", *args)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr


def test_a_run_recorded_before_the_knobs_resumes(tmp_path):
    """run.json from before these settings existed lacks them: that means their defaults, not a difference."""
    from edgevision.train.trainer import TrainSettings, _check_resumable

    settings = TrainSettings(arch="cnn", data="d", out=str(tmp_path), epochs=4, batch_size=8)
    old = {k: v for k, v in vars(settings).items() if k not in ("optimizer", "momentum", "lr_schedule",
                                                                 "class_weight", "rotation", "zoom")}
    (tmp_path / "run.json").write_text(json.dumps({"settings": old}))
    _check_resumable(tmp_path, settings)  # no error
    from edgevision.errors import UsageError

    with pytest.raises(UsageError, match="rotation: 0.0 -> 5.0"):
        _check_resumable(tmp_path, TrainSettings(arch="cnn", data="d", out=str(tmp_path), epochs=4, batch_size=8,
                                                 rotation=5.0))


# --- augmentation ------------------------------------------------------------------------------------------
def _images(n=6, side=32):
    return np.random.default_rng(0).integers(0, 256, (n, side, side, 3)).astype(np.uint8)


def test_rotation_by_ninety_degrees_turns_the_image():
    from edgevision.train.data import rotate_and_zoom

    class Always90:  # a Generator whose uniform draw is the range's top: exactly 90 degrees, scale 1
        def uniform(self, low, high, n):
            return np.full(n, high)

    images = _images()
    turned = rotate_and_zoom(images, Always90(), 90, 0)
    assert np.array_equal(turned, np.rot90(images, k=1, axes=(1, 2))) or \
        np.array_equal(turned, np.rot90(images, k=-1, axes=(1, 2)))
    assert np.array_equal(rotate_and_zoom(images, np.random.default_rng(0), 0, 0), images)  # off: unchanged


def test_zoom_in_enlarges_the_centre():
    from edgevision.train.data import rotate_and_zoom

    class Zoom2:
        def uniform(self, low, high, n):
            return np.full(n, high)

    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 12:20, 12:20] = 255  # an 8 px square in the middle
    zoomed = rotate_and_zoom(image, Zoom2(), 0, 0.9)  # scale 1.9
    assert 180 < (zoomed[0, ..., 0] > 127).sum() < 300  # about (8 * 1.9)^2 = 231 pixels


def test_colour_jitter_and_erasing_change_images_and_keep_their_type():
    from edgevision.train.data import color_jitter, random_erase

    images = _images()
    jittered = color_jitter(images, np.random.default_rng(1), 0.5)
    assert jittered.dtype == np.uint8 and jittered.shape == images.shape and not np.array_equal(jittered, images)
    erased = images.copy()
    random_erase(erased, np.random.default_rng(1), 1.0)
    changed = (erased != images).any(axis=3).mean(axis=(1, 2))
    assert (changed > 0.01).all() and (changed < 0.4).all()  # 2-33 % of each image, noise may match a pixel
    untouched = images.copy()
    random_erase(untouched, np.random.default_rng(1), 0.0)
    assert np.array_equal(untouched, images)


def test_augmentation_knobs_off_give_the_recipes_batches_and_on_change_them():
    from edgevision.edge_runtime.preprocess import PreprocessConfig
    from edgevision.train.data import Augmentation, BatchPlan

    x, targets = _images(8), np.eye(2, dtype=np.float32)[[0, 1] * 4]
    pre = PreprocessConfig(input_size=(32, 32), mean=(120.0,) * 3, std=(60.0,) * 3)
    recipe = BatchPlan(x, targets, pre, 4, seed=0, augment=Augmentation(pad=4, cutout=8)).batch(0)[0]
    explicit_off = Augmentation(pad=4, cutout=8, rotation=0, zoom=0, color_jitter=0, random_erasing=0)
    assert np.array_equal(BatchPlan(x, targets, pre, 4, seed=0, augment=explicit_off).batch(0)[0], recipe)
    on = Augmentation(pad=4, cutout=8, rotation=15, zoom=0.1, color_jitter=0.3, random_erasing=0.5)
    first = BatchPlan(x, targets, pre, 4, seed=0, augment=on).batch(0)[0]
    assert not np.array_equal(first, recipe)
    assert np.array_equal(BatchPlan(x, targets, pre, 4, seed=0, augment=on).batch(0)[0], first)  # seeded


def test_alternate_flip_shows_each_image_both_ways_every_two_epochs():
    from edgevision.edge_runtime.preprocess import PreprocessConfig
    from edgevision.train.data import Augmentation, BatchPlan

    x, targets = _images(16), np.eye(2, dtype=np.float32)[[0, 1] * 8]
    pre = PreprocessConfig(input_size=(32, 32), mean=(0.0,) * 3, std=(1.0,) * 3)
    plan = BatchPlan(x, targets, pre, 16, seed=3, augment=Augmentation(alternate_flip=True, pad=0), shuffle=False)
    seen = []
    for epoch in range(4):
        plan.set_epoch(epoch)
        batch = plan.batch(0)[0]
        seen.append(np.array([np.array_equal(b, img[:, ::-1]) for b, img in zip(batch, x.astype(np.float32))]))
    assert 0 < seen[0].sum() < 16  # a seeded part starts flipped...
    assert np.array_equal(seen[1], ~seen[0]) and np.array_equal(seen[2], seen[0])  # ...and every image alternates
    assert np.array_equal(seen[3], seen[1])


def test_translate_sets_the_shift_and_defaults_to_an_eighth_of_the_side():
    from edgevision.train.trainer import TrainSettings, augmentation_for

    base = dict(arch="cnn", data="d", out="o", epochs=1, batch_size=8)
    assert augmentation_for(TrainSettings(**base), 32).pad == 4
    assert augmentation_for(TrainSettings(**base), 160).pad == 20
    assert [augmentation_for(TrainSettings(**base, translate=t), 32).pad for t in (0, 2)] == [0, 2]


# --- progress -----------------------------------------------------------------------------------------------
def test_keras_verbose_follows_the_stream():
    from edgevision.train.progress import keras_verbose

    read, write = os.pipe()
    master, slave = pty.openpty()
    try:
        with open(write, "w", closefd=False) as pipe, open(slave, "w", closefd=False) as terminal:
            assert keras_verbose("auto", pipe) == 2 and keras_verbose("auto", terminal) == 1
            assert keras_verbose(0, terminal) == 0  # an explicit choice stands
    finally:
        for fd in (read, write, master, slave):
            os.close(fd)


def test_qat_fine_tuning_reports_one_line_per_epoch_when_not_on_a_terminal(capsys):
    """convert's QAT/pruning fine-tunes used to be silent (verbose=0): now the same rule as training."""
    import keras

    from edgevision.convert.optimize import optimize
    from edgevision.convert.options import Optimizations

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="head")(x))
    x_train = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)
    capsys.readouterr()
    optimize(model, x_train, np.arange(16) % 2, Optimizations(qat_epochs=2, qat_learning_rate=1e-6, batch_size=8))
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    assert [line for line in out.splitlines() if line.startswith("Epoch ")] == ["Epoch 1/2", "Epoch 2/2"]
