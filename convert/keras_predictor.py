"""The Keras side of `edgevision predict` and `evaluate`: a Keras model as a predictor for the one evaluation
engine (edge_runtime/evaluation.py), with its labels and preprocessing found as edge_runtime/model_ref.py says.

It lives with the converter because it needs Keras (the `train` extra); the edge runtime imports it only when
the user names a Keras model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from edgevision.edge_runtime.classifier import looks_like_probabilities, softmax
from edgevision.edge_runtime.evaluation import DEFAULT_BATCH, check_pixels
from edgevision.edge_runtime.labels import align_labels, load_labels
from edgevision.edge_runtime.preprocess import MINUS_ONE_TO_ONE, PreprocessConfig, normalize, prepare_pixels
from edgevision.errors import ModelError

#: Input size assumed for a bare Keras model whose input shape does not fix one (MobileNet's default).
DEFAULT_INPUT_SIZE = (224, 224)


@dataclass
class KerasPredictor:
    """A Keras model (or any float function of normalised pixels) with its labels and preprocessing.

    call: normalised float32 batch -> outputs; default `model(x, training=False)`, which skips
        `predict()`'s per-call tf.data and callback set-up. Outputs that are not probabilities (logits)
        get a softmax, decided once from the first batch as the Classifier does.
    """

    model: object
    labels: List[str]
    preprocess: PreprocessConfig
    path: Optional[Path] = None
    notes: List[str] = field(default_factory=list)
    batch_size: int = DEFAULT_BATCH
    kind: str = "keras"
    call: Optional[Callable[[np.ndarray], object]] = None
    output_kind: Optional[str] = None  # "probabilities" or "logits"; None: decided from the first outputs

    def prepare(self, image_bgr: np.ndarray) -> np.ndarray:
        return prepare_pixels(image_bgr, self.preprocess, source_order="BGR")

    def predict_prepared(self, items: Sequence[np.ndarray]) -> np.ndarray:
        h, w = self.preprocess.input_size
        return self.predict_pixels(np.stack(items) if len(items) else np.zeros((0, h, w, 3), np.uint8))

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) in the model's colour order at its input size -> (N, classes) probabilities."""
        check_pixels(pixels, self.preprocess)
        if len(pixels) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        run = self.call or (lambda x: self.model(x, training=False))
        step = self.batch_size
        out = np.concatenate([np.asarray(run(normalize(pixels[s : s + step], self.preprocess)), dtype=np.float32)
                              for s in range(0, len(pixels), step)])
        if self.output_kind is None:
            self.output_kind = "probabilities" if looks_like_probabilities(out) else "logits"
        return out if self.output_kind == "probabilities" else softmax(out)


def load_keras_predictor(model, labels=None, preprocess=None) -> KerasPredictor:
    """A resolved Keras model (edge_runtime.model_ref.ModelRef: a run directory or a .keras file) as a predictor."""
    from edgevision.edge_runtime.model_ref import RUN

    if model.kind == RUN:
        return _load_run_dir(model.path, labels, preprocess)
    return _load_keras_file(model, labels, preprocess)


def _load_run_dir(path: Path, labels, preprocess) -> KerasPredictor:
    from edgevision.train.run_dir import load_run

    run = load_run(path)
    label_list = load_labels(labels) if labels is not None else list(run.labels)
    config = PreprocessConfig.load(preprocess) if preprocess is not None else run.preprocess
    return _keras_predictor(run.model_path, label_list, config, [])


def _load_keras_file(model, labels, preprocess) -> KerasPredictor:
    """A .keras file with the labels and preprocessing given, or beside it (model_ref found them), or assumed."""
    labels = labels if labels is not None else model.labels_file
    preprocess = preprocess if preprocess is not None else model.preprocess_file
    label_list = load_labels(labels) if labels is not None else None  # None: class indices, once the size is known
    config = PreprocessConfig.load(preprocess) if preprocess is not None else None  # None: from the input shape
    return _keras_predictor(model.model_file, label_list, config, [])


def _keras_predictor(model_path: Path, label_list, config, notes: List[str]) -> KerasPredictor:
    from edgevision.convert.loading import load_keras  # refuses code-carrying layers before Keras runs them

    model = load_keras(model_path)
    in_shape, num_outputs = _classifier_shapes(model, model_path)
    if config is None:
        config = _assumed_preprocess(in_shape, model_path, notes)
    elif in_shape[0] is not None and tuple(config.input_size) != tuple(in_shape[:2]):
        raise ModelError(
            f"{model_path} takes {in_shape[0]}x{in_shape[1]} images but its preprocessing says "
            f"{config.input_size[0]}x{config.input_size[1]}; fix preprocess.json or pass --preprocess FILE.json"
        )
    if label_list is None:
        label_list = [str(i) for i in range(num_outputs)]
        notes.append(f"{model_path.name} has no labels.txt beside it: showing class indices (pass --labels FILE)")
    else:
        label_list = align_labels(label_list, num_outputs, source=f"the labels for {model_path.name}")
    return KerasPredictor(model=model, labels=label_list, preprocess=config, path=model_path, notes=notes)


def _classifier_shapes(model, path: Path) -> Tuple[tuple, int]:
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{path}: expected an image classifier with one input and one output")
    in_shape = tuple(inputs[0].shape[1:])
    out_shape = tuple(outputs[0].shape[1:])
    if len(in_shape) != 3 or in_shape[-1] != 3:
        raise ModelError(f"{path}: expected an input of shape (height, width, 3), got {in_shape}")
    if len(out_shape) != 1 or not out_shape[0]:
        raise ModelError(f"{path}: expected one output vector of class scores, got shape {out_shape}")
    return in_shape, int(out_shape[0])


def _assumed_preprocess(in_shape: tuple, path: Path, notes: List[str]) -> PreprocessConfig:
    """A bare .keras file says nothing about its preprocessing: assume the MobileNet convention, and say so."""
    size = tuple(in_shape[:2]) if in_shape[0] and in_shape[1] else DEFAULT_INPUT_SIZE
    mean, std = MINUS_ONE_TO_ONE
    config = PreprocessConfig(input_size=size, color_order="RGB", mean=mean, std=std)
    notes.append(
        f"{path.name} has no preprocess.json beside it: assuming RGB input at {size[0]}x{size[1]} scaled to [-1, 1] "
        "(the MobileNet convention); pass --preprocess FILE.json if the model expects something else"
    )
    return config
