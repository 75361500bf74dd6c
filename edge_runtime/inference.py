"""Model loading and prediction behind `edgevision evaluate` and `edgevision predict`.

Any model reference (a run directory, a `.keras` file, a `.tflite` file or a bundled model name, resolved by
edge_runtime/model_ref.py) becomes a predictor for the one evaluation engine, edge_runtime/evaluation.py: its
class labels, its `PreprocessConfig`, `prepare(image)` and `predict_prepared(items)` / `predict_pixels(pixels)`
-> probabilities. Everything above that (reading image folders, the folder-to-class rule, metrics, top-k,
annotation) is shared, so a `.tflite` model and the Keras model it came from are measured by the very same
code, as are `bench --eval`, `convert`'s comparison and training's validation report.

The `.tflite` route goes through the Classifier and needs only the `edge` extra; a Keras model is loaded by
convert/keras_predictor.py, imported only then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple


from edgevision.edge_runtime.classifier import Classification, rank
from edgevision.edge_runtime.evaluation import DEFAULT_BATCH, Evaluation, TFLitePredictor, prepared_batches
from edgevision.errors import DataError, ImageError, ModelError, UsageError


def load_predictor(
    ref,
    labels: Optional[os.PathLike] = None,
    preprocess: Optional[os.PathLike] = None,
    num_threads: Optional[int] = None,
    backend: str = "auto",
    delegate=None,
    arena_size: Optional[int] = None,
):
    """A run directory, `.keras`, `.tflite` or bundled model name -> KerasPredictor or TFLitePredictor.

    `labels` (a file) overrides the model's own labels; a 1001-line ImageNet file with 'background' first
    fits a 1000-output model. `preprocess` (a preprocess.json) overrides the model's own preprocessing.
    Anything assumed rather than read from the model is said in `predictor.notes`. `backend`, `delegate` and
    `arena_size` are the Classifier's (a .tflite model only).
    """
    from edgevision.edge_runtime.model_ref import TFLITE, resolve_model_ref

    model = resolve_model_ref(ref)
    if model.kind == TFLITE:  # a bundled file was verified when it was bundled
        # A bundled file was verified with LiteRT on the CPU; with a delegate or on TFLite Micro it is checked again.
        runtime = {"backend": backend, "delegate": delegate, "arena_size": arena_size}
        trusted = model.bundled and delegate is None and backend != "tflite-micro"
        return _load_tflite(model.path, labels, preprocess, num_threads, runtime, trusted)
    if delegate is not None or arena_size is not None or backend != "auto":
        raise UsageError("--backend, --delegate and --arena-size apply to .tflite models; this is a Keras model")
    if model.is_keras:
        from edgevision.convert.keras_predictor import load_keras_predictor

        return load_keras_predictor(model, labels, preprocess)
    raise ModelError(f"{model.path} is a SavedModel; predict and evaluate run .tflite and Keras models: convert it "
                     "first (edgevision convert)")


def _load_tflite(path: Path, labels, preprocess, num_threads, runtime: dict, trusted) -> TFLitePredictor:
    from edgevision.edge_runtime.classifier import Classifier

    classifier = Classifier(str(path), num_threads=num_threads, labels=labels, trusted=trusted,
                            preprocess=preprocess, **runtime)
    return TFLitePredictor(classifier=classifier, path=path, notes=classifier.notes)


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


#: An annotated image is enlarged until its short side is at least this (text drawn on a 32x32 CIFAR image
#: cannot be read), by a whole factor with nearest-neighbour so its pixels stay sharp squares ...
ANNOTATE_MIN_SIDE = 320
#: ... but never beyond this long side, so a 1x4000 strip does not become a gigapixel picture.
ANNOTATE_MAX_SIDE = 4096


def legible_size(image):
    """`image` enlarged by a whole factor to a short side of ANNOTATE_MIN_SIDE (a copy); larger ones as they are."""
    import cv2

    h, w = image.shape[:2]
    factor = min(-(-ANNOTATE_MIN_SIDE // max(1, min(h, w))), max(1, ANNOTATE_MAX_SIDE // max(h, w)))
    if factor <= 1:
        return image.copy()
    return cv2.resize(image, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST)


def annotate(prediction: Prediction, out_dir, used_names: Optional[set] = None) -> Path:
    """Save the image, enlarged to a legible size, with its top labels drawn on it into `out_dir` (atomically);
    returns the new file."""
    import cv2

    from edgevision import atomic
    from edgevision.edge_runtime.images import read_image
    from edgevision.edge_runtime.overlay import draw_overlay

    src = Path(prediction.image)
    image = draw_overlay(legible_size(read_image(src)), prediction.top)
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
