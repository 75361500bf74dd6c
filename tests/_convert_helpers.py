"""A tiny but real trained run directory for the converter tests.

Three classes of coloured shapes drawn with OpenCV on noisy backgrounds (32x32, a few dozen each, plus two
corrupt files), a small Keras 3 CNN with the layer types edgevision's models use (Conv2D, BatchNormalization,
ReLU/ReLU6, DepthwiseConv2D, Add, MaxPooling2D, GlobalAveragePooling2D, Dropout, Dense + softmax), trained for
a few real epochs, saved as `edgevision train` saves a run: model.keras, labels.txt, preprocess.json, run.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "triangle")
SIZE = 32
PER_CLASS = 40
VAL_SPLIT = 0.25
SEED = 0


def draw_shape(kind: str, rng: np.random.Generator) -> np.ndarray:
    import cv2

    img = rng.integers(0, 90, size=(SIZE, SIZE, 3), dtype=np.uint8)  # dark noisy background
    color = tuple(int(c) for c in rng.integers(120, 256, size=3))
    cx, cy = (int(v) for v in rng.integers(10, SIZE - 10, size=2))
    r = int(rng.integers(5, 9))
    if kind == "circle":
        cv2.circle(img, (cx, cy), r, color, -1)
    elif kind == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], dtype=np.int32)
        cv2.fillPoly(img, [pts], color)
    return img


def make_shapes_folder(root: Path, per_class: int = PER_CLASS, seed: int = SEED, corrupt: bool = True) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    for name in CLASSES:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            ext = ".png" if i % 2 else ".jpg"
            cv2.imwrite(str(folder / f"{i:03d}{ext}"), draw_shape(name, rng))
    if corrupt:
        (root / CLASSES[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
        (root / CLASSES[1] / "empty.png").write_bytes(b"")
    return root


def build_model(num_classes: int = len(CLASSES), size: int = SIZE):
    import keras

    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = keras.layers.BatchNormalization(momentum=0.9)(y)
    y = keras.layers.ReLU(max_value=6.0)(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.1)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="tiny_shapes_cnn")


def build_tiny_run(run_dir: Path, data_dir: Path, epochs: int = 12) -> Path:
    """Train the tiny CNN on `data_dir` the way edgevision's trainer does and save a run directory."""
    import keras

    from edgevision.edge_runtime.preprocess import MINUS_ONE_TO_ONE, PreprocessConfig, normalize
    from edgevision.train.data import load_split

    keras.utils.set_random_seed(SEED)
    preprocess = PreprocessConfig(input_size=(SIZE, SIZE), color_order="RGB",
                                  mean=MINUS_ONE_TO_ONE[0], std=MINUS_ONE_TO_ONE[1])
    split = load_split(str(data_dir), preprocess, val_split=VAL_SPLIT, seed=SEED)
    model = build_model(len(split.classes))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(normalize(split.x_train, preprocess), split.y_train, epochs=epochs, batch_size=16,
                        validation_data=(normalize(split.x_val, preprocess), split.y_val), verbose=0)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    (run_dir / "labels.txt").write_text("\n".join(split.classes) + "\n")
    preprocess.save(run_dir / "preprocess.json")
    settings = {"model": "tiny-test-cnn", "data": str(data_dir), "val_split": VAL_SPLIT, "seed": SEED,
                "epochs": epochs, "val_accuracy": float(history.history["val_accuracy"][-1]),
                "train_accuracy": float(history.history["accuracy"][-1])}
    (run_dir / "run.json").write_text(json.dumps(settings, indent=2))
    return run_dir
