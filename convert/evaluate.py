"""Accuracy of the Keras model and of its TFLite conversion on the same images.

Both go through the one evaluation engine (`edgevision.edge_runtime.evaluation`): the Keras model as a
`KerasPredictor`, the converted bytes through the edge runtime's own `Classifier`, from the same uint8
pixels a device would feed it, so the numbers are the device's numbers. Both outputs become probabilities
by the same rule, and top-1 follows the engine's tie rule.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgevision.edge_runtime.preprocess import PreprocessConfig

KERAS_BATCH = 64


@dataclass(frozen=True)
class Agreement:
    """How the converted model compares with the Keras model on `n` images."""

    n: int
    accuracy: Optional[float]  # converted model (None without ground-truth labels)
    accuracy_float: Optional[float]  # the Keras model it was converted from
    agreement: float  # fraction of images where both pick the same top-1 class
    prob_mae: float  # mean absolute difference of the class probabilities

    @property
    def delta(self) -> Optional[float]:
        if self.accuracy is None or self.accuracy_float is None:
            return None
        return self.accuracy - self.accuracy_float

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "accuracy_float": self.accuracy_float,
            "accuracy_delta": self.delta,
            "agreement": self.agreement,
            "prob_mae": self.prob_mae,
        }


def reference_probabilities(predict: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray,
                            preprocess: PreprocessConfig) -> np.ndarray:
    """Probabilities of a float model (Keras or SavedModel) on uint8 pixels, normalised as in training."""
    from edgevision.edge_runtime.evaluation import predict_arrays
    from edgevision.convert.keras_predictor import KerasPredictor

    predictor = KerasPredictor(model=None, labels=[], preprocess=preprocess, batch_size=KERAS_BATCH, call=predict)
    if len(pixels) == 0:
        return np.zeros((0, 0), np.float32)
    return predict_arrays(predictor, pixels, batch_size=len(pixels))


def keras_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    # model(x) in inference mode avoids predict()'s per-call tf.data and callback overhead on small batches.
    return lambda x: np.asarray(model(x, training=False))


def tflite_probabilities(model_bytes: bytes, pixels: np.ndarray, preprocess: PreprocessConfig,
                         num_threads: Optional[int] = None) -> np.ndarray:
    """Probabilities of a .tflite model on uint8 pixels, image by image, through the device's Classifier."""
    from edgevision.edge_runtime.classifier import Classifier
    from edgevision.edge_runtime.evaluation import TFLitePredictor, predict_arrays

    # The Classifier opens files; the bytes were made by this conversion a moment ago, so they are trusted
    # (the structural pre-check still runs). The file can go once the interpreter holds the bytes.
    with tempfile.TemporaryDirectory(prefix="edgevision-eval-") as tmp:
        path = Path(tmp) / "converted.tflite"
        path.write_bytes(model_bytes)
        classifier = Classifier(path, num_threads=num_threads, trusted=True, preprocess=preprocess)
    return predict_arrays(TFLitePredictor(classifier), pixels)


def accuracy(probabilities: np.ndarray, labels: Optional[np.ndarray]) -> Optional[float]:
    """Top-1 accuracy (the engine's top-1: ties go to the lower index), or None without ground-truth labels."""
    from edgevision.edge_runtime.evaluation import top1

    return None if labels is None else float(np.mean(top1(probabilities) == labels))


def compare(reference: np.ndarray, converted: np.ndarray, labels: Optional[np.ndarray]) -> Agreement:
    from edgevision.edge_runtime.evaluation import top1

    return Agreement(
        n=len(reference),
        accuracy=accuracy(converted, labels),
        accuracy_float=accuracy(reference, labels),
        agreement=float(np.mean(top1(reference) == top1(converted))),
        prob_mae=float(np.mean(np.abs(reference - converted))),
    )
