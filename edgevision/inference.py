"""Model loading and prediction behind `edgevision evaluate` and `edgevision predict`.

Any model reference (a run directory, a `.keras` file, a `.tflite` file or a bundled model name) becomes a
predictor for the one evaluation engine, `edgevision.edge_runtime.evaluation`: its class labels, its
`PreprocessConfig`, `prepare(image)` and `predict_prepared(items)` / `predict_pixels(pixels)` ->
probabilities. Everything above that (reading image folders, the folder-to-class rule, metrics, top-k,
annotation) is shared, so a `.tflite` model and the Keras model it came from are measured by the very same
code, as are `bench --eval`, `convert`'s comparison and training's validation report.

The `.tflite` route goes through the edge runtime's Classifier and needs only the `edge` extra: this module
imports Keras only when a Keras model is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from edgevision.edge_runtime.classifier import Classification, looks_like_probabilities, rank, softmax
from edgevision.edge_runtime.evaluation import (  # noqa: F401  (re-exported: the names callers knew here)
    DEFAULT_BATCH,
    Evaluation,
    TFLitePredictor,
    check_data_folder,
    check_pixels,
    evaluate,
    prepared_batches,
)
from edgevision.edge_runtime.labels import align_labels, load_labels
from edgevision.edge_runtime.preprocess import MINUS_ONE_TO_ONE, PreprocessConfig, normalize, prepare_pixels
from edgevision.errors import DataError, ImageError, ModelError, UsageError

#: Input size assumed for a bare Keras model whose input shape does not fix one (MobileNet's default).
DEFAULT_INPUT_SIZE = (224, 224)


# --- the Keras predictor ------------------------------------------------------------------------------
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


# --- loading --------------------------------------------------------------------------------------
def load_predictor(
    ref,
    labels: Optional[os.PathLike] = None,
    preprocess: Optional[os.PathLike] = None,
    num_threads: Optional[int] = None,
    backend: str = "auto",
):
    """A run directory, `.keras`, `.tflite` or bundled model name -> KerasPredictor or TFLitePredictor.

    `labels` (a file) overrides the model's own labels; a 1001-line ImageNet file with 'background' first
    fits a 1000-output model. `preprocess` (a preprocess.json) overrides the model's own preprocessing.
    Anything assumed rather than read from the model is said in `predictor.notes`.
    """
    from edgevision.edge_runtime.model_ref import RUN, TFLITE, resolve_model_ref

    model = resolve_model_ref(ref)
    if model.kind == TFLITE:  # a bundled file was verified when it was bundled
        return _load_tflite(model.path, labels, preprocess, num_threads, backend, model.bundled)
    if model.kind == RUN:
        return _load_run_dir(model.path, labels, preprocess)
    if model.is_keras:
        return _load_keras_file(model, labels, preprocess)
    raise ModelError(f"{model.path} is a SavedModel; predict and evaluate run .tflite and Keras models: convert it "
                     "first (edgevision convert)")


def _load_tflite(path: Path, labels, preprocess, num_threads, backend, trusted) -> TFLitePredictor:
    from edgevision.edge_runtime.classifier import Classifier

    classifier = Classifier(str(path), num_threads=num_threads, backend=backend, labels=labels, trusted=trusted,
                            preprocess=preprocess)
    return TFLitePredictor(classifier=classifier, path=path, notes=classifier.notes)


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


# --- reports ---------------------------------------------------------------------------------------
def write_evaluation(evaluation: Evaluation, out_dir) -> Tuple[List[Path], Optional[str]]:
    """report.json, report.txt and confusion_matrix.png into `out_dir` (atomically).

    Returns (files written, note): the PNG needs matplotlib; without it the note says so and the JSON and
    text reports are still written.
    """
    from edgevision import atomic
    from edgevision.edge_runtime.metrics import format_report

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written = [atomic.write_json(out / "report.json", evaluation.report),
               atomic.write_text(out / "report.txt", format_report(evaluation.report))]
    try:
        import matplotlib  # noqa: F401  (the edge extra does not install it)
    except ImportError:
        return written, "matplotlib is not installed: confusion_matrix.png not written (pip install matplotlib)"
    from edgevision.train.reports import plot_confusion_matrix  # numpy + matplotlib only, no TensorFlow

    png = plot_confusion_matrix(out / "confusion_matrix.png", evaluation.confusion, evaluation.classes)
    if png:
        written.append(png)
    return written, None


# --- predict -------------------------------------------------------------------------------------------
@dataclass
class Prediction:
    image: str
    top: List[Classification]
    error: Optional[str] = None

    def to_dict(self) -> dict:
        d = {"image": self.image, "top": [c.to_dict() for c in self.top]}
        if self.error:
            d["error"] = self.error
        return d


def expand_images(items: Sequence) -> List[Path]:
    """Image paths as given; a folder stands for the image files directly inside it (sorted)."""
    from edgevision.edge_runtime.images import is_image_file

    out: List[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
            if not files:
                raise DataError(f"{path} is a folder without images (.jpg, .jpeg, .png, .bmp, .webp)")
            out.extend(files)
        else:
            out.append(path)
    return out


def predict(predictor, images: Sequence, k: int = 5, batch_size: int = DEFAULT_BATCH) -> List[Prediction]:
    """Top-k labels for each image file; a file that cannot be read gets `error` instead of a crash."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"--top-k must be at least 1, got {k}")
    paths = expand_images(images)
    labels = list(predictor.labels)
    results: List[Optional[Prediction]] = [None] * len(paths)
    for items, kept, failed in prepared_batches(paths, predictor.prepare, batch_size):
        probs = predictor.predict_prepared(items) if items else ()
        for row, i in zip(probs, kept):
            results[i] = Prediction(str(paths[i]), rank(row, labels, k))
        for i, err in failed:
            results[i] = Prediction(str(paths[i]), [], error=err)
    return results


def annotate(prediction: Prediction, out_dir, used_names: Optional[set] = None) -> Path:
    """Save the image with its top labels drawn on it into `out_dir` (atomically); returns the new file."""
    import cv2

    from edgevision import atomic
    from edgevision.edge_runtime.images import read_image
    from edgevision.edge_runtime.overlay import draw_overlay

    src = Path(prediction.image)
    image = draw_overlay(read_image(src).copy(), prediction.top)
    out = Path(out_dir).expanduser()
    ext = src.suffix.lower() if src.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".png"
    name, n = f"{src.stem}{ext}", 1
    used = used_names if used_names is not None else set()
    while name in used:  # two inputs called cat.jpg from different folders must not overwrite each other
        n += 1
        name = f"{src.stem}-{n}{ext}"
    used.add(name)
    ok, encoded = cv2.imencode(ext, image)
    if not ok:
        raise ImageError(f"cannot encode the annotated {src.name} as {ext}")
    return atomic.write_bytes(out / name, encoded.tobytes())
