"""Evaluation and prediction behind `edgevision evaluate` and `edgevision predict`.

Any model reference (a run directory, a `.keras` file, a `.tflite` file or a bundled model name) becomes a
`Predictor`: its class labels, its `PreprocessConfig` and `predict_pixels(uint8 batch) -> probabilities`.
Everything above that (reading image folders, metrics, top-k, annotation) is shared, so a `.tflite` model and
the Keras model it came from are measured by the very same code.

The `.tflite` route goes through the edge runtime's Classifier and needs only the `edge` extra: this module
imports Keras only when a Keras model is loaded.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from edgevision.edge_runtime.labels import align_labels, load_labels
from edgevision.edge_runtime.preprocess import MINUS_ONE_TO_ONE, PreprocessConfig, normalize, prepare_pixels
from edgevision.errors import DataError, ImageError, ModelError, UsageError

#: Input size assumed for a bare Keras model whose input shape does not fix one (MobileNet's default).
DEFAULT_INPUT_SIZE = (224, 224)
#: Images decoded and run per step: bounds memory (224x224 uint8 is 150 KB an image) without slowing Keras.
DEFAULT_BATCH = 64
#: Tolerance for "these outputs already are probabilities" (float32 softmax rows sum to 1 within ~1e-6).
_PROB_SUM_TOLERANCE = 1e-3


# --- predictors ---------------------------------------------------------------------------------------
@dataclass
class KerasPredictor:
    """A Keras model with the labels and preprocessing it was trained with."""

    model: object
    labels: List[str]
    preprocess: PreprocessConfig
    path: Path
    notes: List[str] = field(default_factory=list)
    batch_size: int = DEFAULT_BATCH
    kind: str = "keras"

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) in the model's colour order at its input size -> (N, classes) probabilities."""
        _check_pixels(pixels, self.preprocess)
        if len(pixels) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        out = self.model.predict(normalize(pixels, self.preprocess), batch_size=self.batch_size, verbose=0)
        return as_probabilities(np.asarray(out, dtype=np.float32))


@dataclass
class TFLitePredictor:
    """A `.tflite` model run by the edge runtime's Classifier (no TensorFlow)."""

    classifier: object
    path: Path
    notes: List[str] = field(default_factory=list)
    kind: str = "tflite"

    @property
    def labels(self) -> List[str]:
        return list(self.classifier.labels)

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.classifier.preprocess

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        _check_pixels(pixels, self.preprocess)
        if len(pixels) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        clf, order = self.classifier, self.preprocess.color_order
        # One image per invoke (edge models are converted with batch 1). The pixels are already at the input
        # size in the model's colour order, so prepare() only encodes them (quantizes or normalises).
        rows = [clf.scores_from_output(clf.invoke(clf.prepare(p, color_order=order)))[0] for p in pixels]
        return np.stack(rows).astype(np.float32, copy=False)


def _check_pixels(pixels: np.ndarray, preprocess: PreprocessConfig) -> None:
    h, w = preprocess.input_size
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (h, w, 3):
        raise UsageError(
            f"predict_pixels takes uint8 pixels of shape (N, {h}, {w}, 3), got {pixels.dtype} {tuple(pixels.shape)}; "
            "use edgevision.edge_runtime.preprocess.prepare_pixels first"
        )


def as_probabilities(out: np.ndarray) -> np.ndarray:
    """Model outputs -> probabilities: already-softmaxed rows pass through, logits get a softmax."""
    if out.size and (out.min() < 0 or out.max() > 1 or np.abs(out.sum(axis=-1) - 1).max() > _PROB_SUM_TOLERANCE):
        shifted = out - out.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=-1, keepdims=True)
    return out


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
    from edgevision.bundled import MODELS_DIR, resolve_model
    from edgevision.edge_runtime.metadata import is_tflite

    path = resolve_model(ref)
    if path.is_dir():
        return _load_run_dir(path, labels, preprocess)
    if path.suffix.lower() == ".tflite" or _sniff_tflite(path, is_tflite):
        trusted = path.resolve().parent == MODELS_DIR  # shipped inside the package, verified at build time
        return _load_tflite(path, labels, preprocess, num_threads, backend, trusted)
    if path.suffix.lower() == ".keras":
        return _load_keras_file(path, labels, preprocess)
    raise ModelError(
        f"{path}: unknown model format {path.suffix or '(no extension)'!r}; expected a run directory from "
        "`edgevision train`, a .keras file, a .tflite file or a bundled model name"
    )


def _sniff_tflite(path: Path, is_tflite) -> bool:
    try:
        with open(path, "rb") as f:
            return bool(is_tflite(f.read(16)))
    except OSError:
        return False


def _load_tflite(path: Path, labels, preprocess, num_threads, backend, trusted) -> TFLitePredictor:
    from edgevision.edge_runtime.classifier import Classifier

    classifier = Classifier(str(path), num_threads=num_threads, backend=backend, labels=labels, trusted=trusted,
                            preprocess=preprocess)
    notes = []
    if classifier.preprocess_source == "inferred":
        p = classifier.preprocess
        notes.append(
            f"{path.name} carries no edgevision metadata: preprocessing inferred from its input tensor "
            f"({p.input_size[0]}x{p.input_size[1]} {p.color_order}, mean {p.mean[0]:g}, std {p.std[0]:g}); "
            "pass --preprocess FILE.json if that is wrong"
        )
    return TFLitePredictor(classifier=classifier, path=path, notes=notes)


def _load_run_dir(path: Path, labels, preprocess) -> KerasPredictor:
    from edgevision.train.run_dir import MODEL, is_run_dir, load_run

    if not is_run_dir(path) and not (path / MODEL).is_file():
        raise ModelError(
            f"{path} is a folder but not a run directory (no {MODEL}, labels.txt, preprocess.json); expected a "
            "run directory from `edgevision train`, a .keras file, a .tflite file or a bundled model name"
        )
    run = load_run(path)
    label_list = load_labels(labels) if labels is not None else list(run.labels)
    config = PreprocessConfig.load(preprocess) if preprocess is not None else run.preprocess
    return _keras_predictor(run.model_path, label_list, config, [])


def _load_keras_file(path: Path, labels, preprocess) -> KerasPredictor:
    from edgevision.train.run_dir import LABELS, PREPROCESS

    notes: List[str] = []
    side = path.parent
    if labels is not None:
        label_list = load_labels(labels)
    elif (side / LABELS).is_file():
        label_list = load_labels(side / LABELS)
    else:
        label_list = None  # filled in with class indices once the output size is known
    if preprocess is not None:
        config = PreprocessConfig.load(preprocess)
    elif (side / PREPROCESS).is_file():
        config = PreprocessConfig.load(side / PREPROCESS)
    else:
        config = None  # inferred from the input shape once the model is loaded
    return _keras_predictor(path, label_list, config, notes)


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


# --- reading images -------------------------------------------------------------------------------
def _prepare_file(path: Path, config: PreprocessConfig) -> np.ndarray:
    from edgevision.edge_runtime.images import read_image

    return prepare_pixels(read_image(path), config, source_order="BGR")


def prepare_files(paths: Sequence[Path], config: PreprocessConfig, workers: Optional[int] = None):
    """Decode and prepare image files in parallel: (pixels (N,H,W,3) uint8, kept indices, [(index, error)])."""

    def load(path):
        try:
            return _prepare_file(path, config), None
        except ImageError as e:
            return None, str(e)

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(load, paths))
    kept = [i for i, (img, _) in enumerate(results) if img is not None]
    failed = [(i, err) for i, (img, err) in enumerate(results) if img is None]
    h, w = config.input_size
    pixels = np.stack([results[i][0] for i in kept]) if kept else np.zeros((0, h, w, 3), np.uint8)
    return pixels, kept, failed


# --- evaluate ------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    report: dict  # edge_runtime.metrics.classification_report over the classes involved, plus model/data/skipped
    skipped: List[Tuple[str, str]]  # (file, why) of images that could not be decoded
    confusion: np.ndarray
    classes: List[str]  # rows/columns of `confusion`

    def skipped_summary(self, limit: int = 3) -> Optional[str]:
        if not self.skipped:
            return None
        names = ", ".join(Path(p).name for p, _ in self.skipped[:limit])
        more = f" and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        return f"skipped {len(self.skipped)} file(s) that are not decodable images: {names}{more}"


def check_data_folder(data_dir) -> Path:
    """DataError unless `data_dir` is a folder (checked before a model takes seconds to load)."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist" if not root.exists()
            else f"{root} is not a folder; expected a folder with one subfolder per class"
        )
    return root


def match_class_folders(data_dir, labels: Sequence[str]) -> List[str]:
    """The class folders of `data_dir`, each of which must be one of the model's labels (DataError if not)."""
    root = check_data_folder(data_dir)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root} has no class folders; expected one subfolder per class, named like the model's labels")
    known = set(labels)
    unknown = [name for name in found if name not in known]
    if unknown:
        shown = ", ".join(list(labels)[:10]) + (", ..." if len(labels) > 10 else "")
        raise DataError(
            f"class folder(s) {', '.join(map(repr, unknown[:5]))} in {root} are not among the model's "
            f"{len(labels)} labels ({shown}); rename the folders to match the labels, or pass --labels FILE"
        )
    return found


def evaluate(
    predictor,
    data_dir,
    batch_size: int = DEFAULT_BATCH,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Evaluation:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of `predictor` on a class-per-folder tree.

    Folders are matched to the model's labels by name. Images are decoded in batches (memory stays bounded on
    big folders); undecodable files are skipped and counted, never a crash.
    """
    from edgevision.edge_runtime.datasets import scan_image_folder
    from edgevision.edge_runtime.metrics import classification_report

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    labels = list(predictor.labels)
    match_class_folders(data_dir, labels)
    folder = scan_image_folder(data_dir, classes=labels)
    y_true, y_pred, skipped = [], [], []
    total = len(folder.files)
    for start in range(0, total, batch_size):
        paths = folder.files[start : start + batch_size]
        pixels, kept, failed = prepare_files(paths, predictor.preprocess)
        skipped.extend((str(paths[i]), err) for i, err in failed)
        if kept:
            probs = predictor.predict_pixels(pixels)
            y_pred.append(np.argmax(probs, axis=1))
            y_true.append(folder.labels[start + np.asarray(kept)])
        if progress:
            progress(min(start + batch_size, total), total)
    if not y_true:
        raise DataError(f"none of the {total} images in {folder.root} could be decoded")
    y_true_all, y_pred_all = np.concatenate(y_true), np.concatenate(y_pred)
    full = classification_report(y_true_all, y_pred_all, labels)
    report = _involved_classes_report(full, y_true_all, y_pred_all, labels)
    report.update(skipped=len(skipped), data=str(Path(data_dir).expanduser().resolve()))
    return Evaluation(report, skipped, np.asarray(report["confusion_matrix"]), list(report["classes"]))


def _involved_classes_report(full: dict, y_true, y_pred, labels: Sequence[str]) -> dict:
    """Keep only classes that occur or are predicted: an ImageNet model checked on 3 folders reports 3-ish rows.

    Accuracy and the macro averages (over classes that occur) are unchanged by dropping the others.
    """
    involved = sorted(set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist()))
    if len(involved) == len(labels):
        return full
    cm = np.asarray(full["confusion_matrix"])[np.ix_(involved, involved)]
    names = [labels[i] for i in involved]
    report = dict(full)
    report["per_class"] = {name: full["per_class"][name] for name in names}
    report["confusion_matrix"] = cm.tolist()
    report["classes"] = names
    return report


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
@dataclass(frozen=True)
class Label:
    label: str
    score: float


@dataclass
class Prediction:
    image: str
    top: List[Label]
    error: Optional[str] = None

    def to_dict(self) -> dict:
        d = {"image": self.image, "top": [{"label": t.label, "score": round(t.score, 6)} for t in self.top]}
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


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> List[Label]:
    k = min(k, len(probs))
    # argpartition then sort the k: O(n) for 1000 classes; ties keep the lower index first.
    idx = np.argpartition(-probs, k - 1)[:k]
    idx = idx[np.lexsort((idx, -probs[idx]))]
    return [Label(labels[i], float(probs[i])) for i in idx]


def predict(predictor, images: Sequence, k: int = 5, batch_size: int = DEFAULT_BATCH) -> List[Prediction]:
    """Top-k labels for each image file; a file that cannot be read gets `error` instead of a crash."""
    if k < 1:
        raise UsageError(f"--top-k must be at least 1, got {k}")
    paths = expand_images(images)
    labels = list(predictor.labels)
    results: List[Prediction] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        pixels, kept, failed = prepare_files(chunk, predictor.preprocess)
        probs = predictor.predict_pixels(pixels) if kept else np.zeros((0, len(labels)))
        row = {i: probs[j] for j, i in enumerate(kept)}
        errors = dict(failed)
        for i, path in enumerate(chunk):
            if i in row:
                results.append(Prediction(str(path), top_k(row[i], labels, k)))
            else:
                results.append(Prediction(str(path), [], error=errors[i]))
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
