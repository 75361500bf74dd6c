"""Accuracy of the Keras model and of its TFLite conversion on the same images.

The converted model runs through the edge runtime's own interpreter and input/output arithmetic
(`edge_runtime.interpreter.make_interpreter`, `edge_runtime.quantization.input_encoder` and `dequantize`),
from the same uint8 pixels the device would feed it, so the numbers are the device's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from edgevision.edge_runtime.preprocess import PreprocessConfig, normalize

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
    out = []
    for start in range(0, len(pixels), KERAS_BATCH):
        out.append(np.asarray(predict(normalize(pixels[start : start + KERAS_BATCH], preprocess)), dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def keras_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    # model(x) in inference mode avoids predict()'s per-call tf.data and callback overhead on small batches.
    return lambda x: np.asarray(model(x, training=False))


def tflite_probabilities(model_bytes: bytes, pixels: np.ndarray, preprocess: PreprocessConfig,
                         num_threads: Optional[int] = None) -> np.ndarray:
    """Probabilities of a .tflite model on uint8 pixels, image by image, exactly as the runtime runs it."""
    from edgevision.edge_runtime.interpreter import make_interpreter
    from edgevision.edge_runtime.quantization import dequantize, input_encoder, tensor_quantization

    interpreter = make_interpreter(model_bytes, num_threads=num_threads, name="converted model")
    in_detail = interpreter.get_input_details()[0]
    out_detail = interpreter.get_output_details()[0]
    encode = input_encoder(preprocess, tensor_quantization(in_detail, "input"))
    out_params = tensor_quantization(out_detail, "output")
    out = np.zeros((len(pixels), int(out_detail["shape"][-1])), dtype=np.float32)
    for i in range(len(pixels)):
        interpreter.set_tensor(in_detail["index"], encode(pixels[i : i + 1]))
        interpreter.invoke()
        out[i] = dequantize(interpreter.get_tensor(out_detail["index"]), out_params)[0]
    return out


def accuracy(probabilities: np.ndarray, labels: Optional[np.ndarray]) -> Optional[float]:
    """Top-1 accuracy, or None without ground-truth labels."""
    return None if labels is None else float(np.mean(probabilities.argmax(axis=1) == labels))


def compare(reference: np.ndarray, converted: np.ndarray, labels: Optional[np.ndarray]) -> Agreement:
    return Agreement(
        n=len(reference),
        accuracy=accuracy(converted, labels),
        accuracy_float=accuracy(reference, labels),
        agreement=float(np.mean(reference.argmax(axis=1) == converted.argmax(axis=1))),
        prob_mae=float(np.mean(np.abs(reference - converted))),
    )
