"""The bundled microcontroller model, cifar10-micro, and the `train micro` architecture behind it.

The file must fit a microcontroller (flash: the file's size; RAM: TensorFlow Lite Micro's arena), carry the
standard metadata every other bundled file has, and answer like LiteRT when TensorFlow Lite Micro's own
interpreter runs it. The images are CIFAR-10 training photos read straight out of ../shared's archive (skipped
where it is absent); the agreement check needs no held-out data.
"""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from conftest import shared_path

from edgevision.bundled import BUNDLED, CIFAR10_MODELS, bundled_path

NAME = "cifar10-micro"
FLASH_BUDGET = 160 * 1024  # bytes: the target for the file
ARENA_BUDGET = 256 * 1024  # bytes: the TensorFlow Lite Micro arena it must run in
PARAMETER_BUDGET = 140_000  # about what 160 KiB of int8 weights leaves room for
PER_CLASS = 12  # CIFAR images per class for the agreement check
NEAR_TIE = 4  # uint8 score steps between the top two classes below which the runtimes may differ


def _micro_runtime():
    return pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                               reason="TensorFlow Lite Micro's Python interpreter (pip install tflite-micro)")


@pytest.fixture(scope="module")
def cifar_images():
    """(images uint8 NxHxWx3 RGB, class names): every 400th photo of each class from the shared archive."""
    import cv2

    archive = shared_path("data", "cifar10-train.tar.gz")
    images, names = [], []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or int(parts[3].split(".")[0]) % 400:
                continue
            data = np.frombuffer(tar.extractfile(member).read(), np.uint8)
            images.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
            names.append(parts[2])
            if len(images) >= PER_CLASS * 10:
                break
    return np.stack(images), names


def test_the_micro_model_is_bundled_as_a_cifar10_model():
    assert NAME in BUNDLED and NAME in CIFAR10_MODELS
    data = bundled_path(NAME).read_bytes()
    assert len(data) <= FLASH_BUDGET, f"{len(data):,} bytes of flash, over {FLASH_BUDGET:,}"


def test_the_micro_file_carries_standard_metadata_and_no_tta():
    from edgevision.edge_runtime.model_metadata import read_model_metadata

    meta = read_model_metadata(bundled_path(NAME).read_bytes())
    assert meta.origin == "standard+edgevision" and meta.name == NAME and meta.license
    assert len(meta.labels) == 10 and "cat" in meta.labels
    assert meta.quantization == "int8" and meta.input_size == (32, 32)
    assert meta.tta is None  # TTA's two-image batch is what TensorFlow Lite Micro cannot prepare
    assert meta.metrics["accuracy"] >= 0.85  # MLPerf Tiny's target for its reference model


def _micro_interpreter(arena_size: int):
    runtime = _micro_runtime()
    return runtime.Interpreter.from_file(str(bundled_path(NAME)), arena_size=arena_size)


def test_the_micro_file_loads_in_tflite_micro_within_its_arena(capfd):
    interpreter = _micro_interpreter(ARENA_BUDGET)
    details = interpreter.get_input_details(0)
    assert details["dtype"] == np.uint8 and list(details["shape"]) == [1, 32, 32, 3]
    interpreter.print_allocations()
    printed = capfd.readouterr()
    used = [int(line.split()[-2]) for line in (printed.out + printed.err).splitlines()
            if "Arena allocation total" in line]
    assert used and 0 < used[0] <= ARENA_BUDGET


def test_an_arena_too_small_for_the_model_is_refused():
    with pytest.raises(Exception):
        _micro_interpreter(8 * 1024)


@pytest.mark.shared
def test_tflite_micro_and_litert_give_the_same_top1(cifar_images):
    """Every clear answer is the same in both; only near-ties may differ, since LiteRT's default (XNNPACK) int8
    kernels round differently from TensorFlow Lite Micro's reference ones."""
    litert_module = pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (the edge extra)")

    images, names = cifar_images
    micro = _micro_interpreter(ARENA_BUDGET)
    litert = litert_module.Interpreter(model_path=str(bundled_path(NAME)), num_threads=1)
    litert.allocate_tensors()
    inp, out = litert.get_input_details()[0]["index"], litert.get_output_details()[0]["index"]
    micro_top1, litert_top1, margins = [], [], []
    for image in images:
        micro.set_input(image[None], 0)
        micro.invoke()
        micro_top1.append(int(np.argmax(micro.get_output(0))))
        litert.set_tensor(inp, image[None])
        litert.invoke()
        scores = np.sort(litert.get_tensor(out)[0].astype(int))
        litert_top1.append(int(np.argmax(litert.get_tensor(out))))
        margins.append(scores[-1] - scores[-2])  # in uint8 steps of 1/256
    same = np.array(micro_top1) == np.array(litert_top1)
    assert same[np.array(margins) > NEAR_TIE].all()
    assert same.mean() >= 0.97
    labels = read_labels()
    correct = np.mean([labels[i] == n for i, n in zip(micro_top1, names)])
    assert correct > 0.7, f"TensorFlow Lite Micro got {correct:.0%} of {len(names)} CIFAR-10 photos right"


def read_labels():
    from edgevision.edge_runtime.model_metadata import read_model_metadata

    return list(read_model_metadata(bundled_path(NAME).read_bytes()).labels)


# --- the architecture ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_micro_architecture_fits_its_budget_and_trains_a_step():
    pytest.importorskip("keras", reason="building the model needs the train extra")
    import keras

    from edgevision.train.architectures import MICRO_MODEL_NAME, MicroConfig, build_micro

    model = build_micro(10)
    assert model.name == MICRO_MODEL_NAME and model.count_params() <= PARAMETER_BUDGET
    assert model.output_shape == (None, 10)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "SeparableConv2D" in kinds and "Add" in kinds  # the last stage's residual pair
    keras.utils.set_random_seed(0)
    small = build_micro(3, config=MicroConfig(stem_width=4, widths=(8, 8, 8)))
    small.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 32, 32, 3)).astype("float32"), keras.utils.to_categorical(np.arange(8) % 3, 3)
    # The training loss of the same batch, step after step (inference-mode batch-norm statistics lag behind).
    losses = small.fit(x, y, epochs=5, batch_size=8, verbose=0).history["loss"]
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_train_micro_writes_a_run_with_the_logit_scale_folded(tmp_path):
    pytest.importorskip("keras", reason="training needs the train extra")
    import keras

    from _data_helpers import make_image_folder, run_main

    from edgevision.train.architectures import LOGIT_SCALE, MICRO_MODEL_NAME

    make_image_folder(tmp_path / "data", ("cat", "dog", "ship"), per_class=8, size=(32, 32))
    result = run_main("train", "micro", "--data", tmp_path / "data", "--out", tmp_path / "run", "--epochs", 1,
                      "--batch-size", 8, "--val-split", 0.25)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["settings"]["arch"] == "micro" and record["label_smoothing"] == 0.1
    assert record["optimizer"]["train"]["name"] == "sgd"  # the cnn's schedule
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert model.name == MICRO_MODEL_NAME and LOGIT_SCALE not in {layer.name for layer in model.layers}


def test_a_micro_config_with_mismatched_flags_is_refused():
    from edgevision.train.architectures import MicroConfig

    with pytest.raises(ValueError, match="one residual and one separable flag per width"):
        MicroConfig(widths=(8, 16), residual=(True,), separable=(False, False))
