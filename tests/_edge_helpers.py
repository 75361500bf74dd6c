"""Tiny real TFLite models for the edge-runtime tests, made by TensorFlow's own converter.

Run as a script (`python tests/_edge_helpers.py OUT_DIR [IMAGE ...]`) it builds them in a separate process,
so that the test process never imports TensorFlow (the runtime's tests check that it needs none), and the
pytest side (`tiny_models`) caches the result by this file's hash and the TensorFlow version.

The classifier is a small CNN with fixed seeded weights and a head centred and scaled on the calibration
photos, so that it gives image-dependent answers on real photos without any training: enough to compare float and quantized
variants of the same network. Models:
  float.tflite        float32 in/out, softmax, no metadata (a "third-party" model)
  logits.tflite       float32 in/out, no softmax (the runtime must apply one)
  int8.tflite         full-integer, int8 in/out, calibrated on real crops
  uint8.tflite        full-integer, uint8 in/out
  int16x8.tflite      16-bit activations, 8-bit weights, int16 in/out
  meta_int8.tflite    int8 with edgevision metadata (labels, CIFAR-style normalisation, centre crop)
  portable_int8.tflite  meta_int8 with the portable interface: uint8 pixels in, uint8 scores out
  standard_float.tflite float32 trained on CIFAR-style normalisation, said only in standard metadata
  two_inputs.tflite   a valid model with two image inputs (not a classifier)
  rank2.tflite        a valid model with a [1, 48] input (not an image classifier)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

INPUT_SIZE = (32, 32)  # height, width of the tiny models
NUM_CLASSES = 5
LABELS = ["red", "green", "blue", "dark", "light"]
SEED = 7
LOGIT_STD = 2.0  # spread of each logit over the calibration photos
CALIBRATION_SAMPLES = 64
MODEL_NAMES = ("float", "logits", "int8", "uint8", "int16x8", "meta_int8", "portable_int8", "standard_float",
               "two_inputs", "rank2")


# --- pytest side (no TensorFlow here) ------------------------------------------------------------
def _cache_key() -> str:
    from importlib import metadata

    try:
        tf_version = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        tf_version = "none"
    source = Path(__file__).read_bytes()
    return hashlib.sha256(source + tf_version.encode()).hexdigest()[:16]


_BUILT = {}


def tiny_models_for(request, tmp_path_factory) -> dict:
    """`tiny_models` for a test: cached in pytest's cache dir (or a temp dir without the cache plugin),
    calibrated on the ../shared photos where they exist."""
    from conftest import SHARED

    cache = getattr(request.config, "cache", None)
    base = cache.mkdir("edgevision-tiny-models") if cache is not None else tmp_path_factory.getbasetemp() / "tiny-models"
    photos = [SHARED / "images" / p for p in ("cat.bmp", "grace_hopper.bmp", "cat_720p.jpg")]
    return tiny_models(base, [p for p in photos if p.is_file()])


def tiny_models(base_dir: Path, images=()) -> dict:
    """name -> Path of every model, built once per source version (TensorFlow needed the first time)."""
    import pytest

    out = Path(base_dir) / _cache_key()
    if out in _BUILT:
        return _BUILT[out]
    done = out / "models.json"
    if not done.is_file():
        try:
            import importlib.util

            if importlib.util.find_spec("tensorflow") is None:
                pytest.skip("building the tiny test models needs TensorFlow (the train extra)")
        except ValueError:
            pass
        out.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, __file__, str(out), *map(str, images)],
            capture_output=True, text=True, timeout=900,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"building the tiny models failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    models = {name: out / f"{name}.tflite" for name in json.loads(done.read_text())["models"]}
    _BUILT[out] = models
    return models


# --- builder side (runs in its own process, imports TensorFlow) ----------------------------------
def _calibration_pixels(image_paths, count: int, rng):
    """Random crops of real photos (if given) at the input size, uint8 RGB."""
    import cv2
    import numpy as np

    h, w = INPUT_SIZE
    photos = [cv2.imread(str(p))[:, :, ::-1] for p in image_paths]
    photos = [p for p in photos if p is not None]
    out = []
    for i in range(count):
        if photos:
            p = photos[i % len(photos)]
            size = int(rng.integers(min(p.shape[:2]) // 4, min(p.shape[:2]) + 1))
            y, x = rng.integers(0, p.shape[0] - size + 1), rng.integers(0, p.shape[1] - size + 1)
            crop = p[y : y + size, x : x + size]
            out.append(cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_AREA))
        else:  # smooth random colour fields: enough for calibration when no photo is around
            small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    out.append(np.zeros((h, w, 3), np.uint8))
    out.append(np.full((h, w, 3), 255, np.uint8))  # the calibration range covers every pixel value
    return np.stack(out)


def _classifier(softmax: bool, calibration):
    """Seeded random convolutions and a head centred on the calibration features.

    Centring (bias = -mean logit) and scaling the head (logit spread LOGIT_STD) makes the answers depend on
    the image, with neither saturated nor flat probabilities, so quantized variants can be compared.
    """
    import keras
    import numpy as np

    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((*INPUT_SIZE, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    features = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(NUM_CLASSES, name="logits")
    x = dense(features)
    if softmax:
        x = keras.layers.Softmax(name="probabilities")(x)
    model = keras.Model(inputs, x)
    feats = keras.Model(inputs, features).predict(calibration, batch_size=len(calibration), verbose=0)
    kernel, _ = dense.get_weights()
    logits = feats @ kernel
    kernel = kernel / (logits.std(axis=0, keepdims=True) + 1e-6) * LOGIT_STD
    bias = -(feats @ kernel).mean(axis=0)
    dense.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


def _convert(model, tmp: Path, quant: str = "float", calibration=None) -> bytes:
    import tensorflow as tf

    saved = tmp / f"saved_{quant}_{id(model)}"
    model.export(str(saved), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if quant != "float":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def representative():
            for sample in calibration:
                yield [sample[None].astype("float32")]

        converter.representative_dataset = representative
        if quant == "int16x8":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
            converter.inference_input_type = converter.inference_output_type = tf.int16
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io_type = tf.uint8 if quant == "uint8" else tf.int8
            converter.inference_input_type = converter.inference_output_type = io_type
    return converter.convert()


def _standard_only(model: bytes, preprocess) -> bytes:
    from edgevision.convert.metadata_writer import set_metadata
    from edgevision.edge_runtime.tflite_metadata import (
        METADATA_ENTRY_NAME,
        StandardMetadata,
        encode_model_metadata,
        pack_associated_files,
    )

    meta = StandardMetadata(name="standard_float", mean=preprocess.mean, std=preprocess.std,
                            labels_file="classes.txt")
    with_meta = set_metadata(model, {METADATA_ENTRY_NAME: encode_model_metadata(meta)})
    return pack_associated_files(with_meta, {"classes.txt": ("\n".join(LABELS) + "\n").encode()})


def build(out_dir: Path, image_paths) -> None:
    import tempfile

    import keras
    import numpy as np

    from edgevision.edge_runtime.preprocess import MINUS_ONE_TO_ONE, CIFAR10_MEAN_STD, PreprocessConfig, normalize

    rng = np.random.default_rng(SEED)
    pixels = _calibration_pixels(image_paths, CALIBRATION_SAMPLES, rng)
    # Third-party float models are assumed to take [-1, 1] (MobileNet-style): calibrate the same way.
    minus_one = PreprocessConfig(INPUT_SIZE, mean=MINUS_ONE_TO_ONE[0], std=MINUS_ONE_TO_ONE[1])
    cifar = PreprocessConfig(INPUT_SIZE, mean=CIFAR10_MEAN_STD[0], std=CIFAR10_MEAN_STD[1], resize="center_crop")
    calib = normalize(pixels, minus_one)
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = _classifier(softmax=True, calibration=calib)
        files["float"] = _convert(model, tmp)
        files["logits"] = _convert(_classifier(softmax=False, calibration=calib), tmp)
        for quant in ("int8", "uint8", "int16x8"):
            files[quant] = _convert(model, tmp, quant, calib)
        from edgevision.convert.interface import make_portable
        from edgevision.convert.metadata_writer import embed, model_metadata

        meta_int8 = _convert(model, tmp, "int8", normalize(pixels, cifar))
        files["meta_int8"] = embed(meta_int8, model_metadata("meta_int8", LABELS, cifar, "int8",
                                                             source={"model": "tests/_edge_helpers.py"}))
        raw = PreprocessConfig(INPUT_SIZE, mean=(0.0,) * 3, std=(1.0,) * 3, resize="center_crop")
        files["portable_int8"] = embed(make_portable(meta_int8, cifar.mean, cifar.std),
                                       model_metadata("portable_int8", LABELS, raw, "int8", io_types=("uint8", "uint8")))
        # A float model trained with per-channel statistics whose file says so only in standard metadata, as
        # Model Maker and tflite-support's writers make them.
        std_float = _convert(_classifier(softmax=True, calibration=normalize(pixels, cifar)), tmp)
        files["standard_float"] = _standard_only(std_float, cifar)

        a = keras.Input((*INPUT_SIZE, 3), batch_size=1)
        b = keras.Input((*INPUT_SIZE, 3), batch_size=1)
        merged = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
        files["two_inputs"] = _convert(keras.Model([a, b], keras.layers.Dense(NUM_CLASSES, activation="softmax")(merged)), tmp)
        flat = keras.Input((48,), batch_size=1)
        files["rank2"] = _convert(keras.Model(flat, keras.layers.Dense(NUM_CLASSES, activation="softmax")(flat)), tmp)
    for name, data in files.items():
        (out_dir / f"{name}.tflite").write_bytes(data)
    (out_dir / "models.json").write_text(json.dumps({"models": sorted(files)}))


if __name__ == "__main__":
    build(Path(sys.argv[1]), sys.argv[2:])
