"""`train cnn --net airbench`: a stem that whitens the data's 2x2 patches (frozen), two convs per stage, batch
norm without a scale; within the CNN's 1.5 M-parameter budget, and a file that converts like the other nets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _data_helpers import make_image_folder, run_main

pytestmark = pytest.mark.slow
CNN_BUDGET = 1_500_000


def _correlated_images(n=400, seed=0):
    """Smooth, colour-correlated images: their neighbouring pixels and channels are far from independent."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 9, 9, 1)).repeat(4, axis=1).repeat(4, axis=2)[:, :32, :32]
    return (base + 0.3 * rng.normal(size=(n, 32, 32, 3))).astype(np.float32)


def test_the_whitening_kernel_makes_the_patches_uncorrelated_with_unit_variance():
    from edgevision.train.architectures import WHITEN_PATCH, whitening_kernel

    images = _correlated_images()
    kernel = whitening_kernel(images)
    assert kernel.shape == (WHITEN_PATCH, WHITEN_PATCH, 3, 24)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])  # both signs, so ReLU keeps all of it
    patches = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)
    out = (patches - patches.mean(axis=0)) @ kernel[..., :12].reshape(12, 12)
    cov = np.cov(out.T)
    before = np.cov(patches.T)
    assert np.abs(before - np.diag(np.diag(before))).max() > 0.5  # the input was far from white
    # Unit variance except along directions whose eigenvalue is near the epsilon (none here), no correlation.
    np.testing.assert_allclose(cov, np.eye(12), atol=0.02)


def test_the_airbench_net_fits_the_budget_and_its_stem_is_frozen():
    pytest.importorskip("keras", reason="building the model needs the train extra")
    from edgevision.train.architectures import AIRBENCH, WHITEN, build_cnn, set_whitening

    model = build_cnn(10, config=AIRBENCH)
    assert model.count_params() <= CNN_BUDGET and model.output_shape == (None, 10)
    stem = model.get_layer(WHITEN)
    assert not stem.trainable and stem.kernel.shape == (2, 2, 3, 24)
    assert set_whitening(model, _correlated_images(50))
    assert not set_whitening(build_cnn(10), _correlated_images(50))  # the resnet9 shape has no whitened stem


@pytest.mark.parametrize("net", ["airbench", "airbench-gelu"])
def test_train_cnn_net_airbench_keeps_the_data_whitening_and_converts_to_int8(tmp_path, net):
    pytest.importorskip("tensorflow", reason="training and converting need the train and convert extras")
    import keras

    from edgevision.edge_runtime import Classifier
    from edgevision.train.architectures import WHITEN, whitening_kernel
    from edgevision.train.data import reload_split
    from edgevision.edge_runtime.preprocess import PreprocessConfig, normalize

    make_image_folder(tmp_path / "data", ("cat", "dog", "ship"), per_class=12, size=(32, 32))
    run = tmp_path / "run"
    result = run_main("train", "cnn", "--net", net, "--data", tmp_path / "data", "--out", run,
                      "--epochs", 2, "--batch-size", 8, "--val-split", 0.25)
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "run.json").read_text())["settings"]["net"] == net
    model = keras.models.load_model(run / "model.keras")
    split = reload_split(run)
    expected = whitening_kernel(normalize(split.x_train, PreprocessConfig.load(run / "preprocess.json")))
    # Trained two epochs, yet the stem is still the whitening of the training images: frozen, as built.
    np.testing.assert_allclose(model.get_layer(WHITEN).get_weights()[0], expected, rtol=1e-4, atol=1e-5)
    out = tmp_path / "airbench-int8.tflite"
    result = run_main("convert", run, "--quant", "int8", "--out", out)
    assert result.returncode == 0, result.stderr
    preprocess = PreprocessConfig.load(run / "preprocess.json")
    float_probs = model.predict(normalize(split.x_val, preprocess), verbose=0)
    int8_probs = Classifier(out).scores_batch(list(split.x_val), color_order="RGB")
    # The frozen whitening and the scale-free batch norm quantise like any conv: the file computes the model.
    assert np.abs(int8_probs - float_probs).max() < 0.1
    from ai_edge_litert.interpreter import Interpreter

    ops = {op["op_name"] for op in Interpreter(model_path=str(out))._get_ops_details()}
    assert ("GELU" in ops) == (net == "airbench-gelu")  # an int8 kernel of its own, not a float fallback


def test_net_is_refused_for_other_architectures_in_one_line(tmp_path):
    make_image_folder(tmp_path / "data", ("cat", "dog"), per_class=4, size=(32, 32))
    from edgevision.errors import UsageError
    from edgevision.train.trainer import TrainSettings

    with pytest.raises(UsageError, match="only for `train cnn`"):
        TrainSettings(arch="micro", data=str(tmp_path / "data"), out=str(tmp_path / "r"), epochs=1, batch_size=4,
                      net="airbench")
