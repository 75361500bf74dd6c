"""The one evaluation engine: a predictor and a labelled image folder in, one `Evaluation` out.

    from edgevision.edge_runtime import Classifier
    from edgevision.edge_runtime.evaluation import TFLitePredictor, evaluate

    result = evaluate(TFLitePredictor(Classifier("cifar10-cnn")), "data/test")
    print(result.accuracy, result.n, result.skipped_summary())

`edgevision evaluate`, `edgevision bench --eval`, `convert`'s Keras-vs-TFLite comparison and training's
validation report all score here, so a folder is matched, read and scored the same way by every command.

A predictor has `labels`, `preprocess` (a PreprocessConfig) and three methods:
`prepare(image_bgr)` turns one decoded image into what the model takes (it must be safe to call from
other threads), `predict_prepared(items)` gives the (N, classes) probabilities of a list of those, and
`predict_pixels(pixels)` the same for uint8 pixels (N, H, W, 3) already at the input size in the model's
colour order. `TFLitePredictor` (the edge runtime's Classifier) is here; the Keras one is
`edgevision.convert.keras_predictor.KerasPredictor`. This module never imports TensorFlow.

The rules, the same everywhere:
- Folder to class: each subfolder of the data folder is named after one of the model's labels. Case does
  not matter and '_' may stand for a space (`egyptian_cat/` is "Egyptian cat"). A folder that names no
  label is an error naming it and the labels, unless `skip_unknown` (then it is listed in the report).
  Labels that occur twice (ImageNet's two "crane"s) are one class: predicting either is right.
- Top-1 is the highest probability; on a tie the lower output index wins, as in `Classifier.classify`.
- Images are the files directly or deeper inside each class folder (jpg, jpeg, png, bmp, webp), sorted;
  files that cannot be decoded are skipped and counted, never a crash.

Speed: files are decoded and prepared on a pool of threads kept for the whole run, a few batches ahead of
the model (OpenCV releases the GIL while it decodes and resizes, the interpreter while it runs), so reading
the folder overlaps inference instead of adding to it.
"""

from __future__ import annotations

import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edgevision.edge_runtime.preprocess import PreprocessConfig
from edgevision.errors import DataError, ImageError, UsageError

#: Images decoded and run per step: bounds memory (a 224x224 image is 150 KB) and sets the read-ahead unit.
DEFAULT_BATCH = 64
#: Most decoding threads (decoding a folder of photos scales with cores; small images need one).
MAX_WORKERS = 8
SHOWN_LABELS = 10  # labels named in an "unknown folder" error


# --- predictors -------------------------------------------------------------------------------------
@dataclass
class TFLitePredictor:
    """A `.tflite` model run by the edge runtime's Classifier, exactly as a device runs it."""

    classifier: object
    path: Optional[Path] = None
    notes: List[str] = field(default_factory=list)
    kind: str = "tflite"

    @property
    def labels(self) -> List[str]:
        return list(self.classifier.labels)

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.classifier.preprocess

    def prepare(self, image_bgr: np.ndarray) -> np.ndarray:
        return self.classifier.prepare(image_bgr, color_order="BGR")

    def predict_prepared(self, tensors: Sequence[np.ndarray]) -> np.ndarray:
        return self.classifier.scores_batch(tensors, prepared=True)

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        check_pixels(pixels, self.preprocess)
        return self.classifier.scores_batch(pixels, color_order=self.preprocess.color_order)


def check_pixels(pixels: np.ndarray, preprocess: PreprocessConfig) -> None:
    """UsageError unless `pixels` is uint8 (N, H, W, 3) at the model's input size."""
    h, w = preprocess.input_size
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (h, w, 3):
        got = f"{getattr(pixels, 'dtype', type(pixels).__name__)} {tuple(getattr(pixels, 'shape', ()))}"
        raise UsageError(
            f"predict_pixels takes uint8 pixels of shape (N, {h}, {w}, 3), got {got}; "
            "use edgevision.edge_runtime.preprocess.prepare_pixels first"
        )


def predict_arrays(predictor, pixels: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """(N, classes) probabilities of uint8 pixels already at the input size, `batch_size` at a time."""
    check_pixels(pixels, predictor.preprocess)
    _check_batch(batch_size)
    rows = [predictor.predict_pixels(pixels[s : s + batch_size]) for s in range(0, len(pixels), batch_size)]
    if not rows:
        return np.zeros((0, len(predictor.labels)), np.float32)
    return np.concatenate(rows).astype(np.float32, copy=False)


def top1(probabilities: np.ndarray) -> np.ndarray:
    """The predicted output index of each row: the highest probability, ties to the lower index."""
    return np.argmax(probabilities, axis=1)  # argmax returns the first of equal maxima


# --- folder to class --------------------------------------------------------------------------------
def class_key(name: str) -> str:
    """How a folder name is compared with a label: 'Egyptian_cat', 'egyptian cat' -> 'egyptian cat'."""
    return re.sub(r"\s+", " ", str(name).replace("_", " ")).strip().casefold()


@dataclass(frozen=True)
class ClassFolders:
    """The class folders of a data folder, matched to a model's labels."""

    root: Path
    classes: List[str]  # distinct label names, in output order of first occurrence
    output_class: np.ndarray  # model output index -> index into `classes`
    folders: List[Tuple[Path, int]]  # (folder, index into `classes`), sorted by folder name
    unknown: List[str]  # folder names that match no label (only with skip_unknown)


def check_data_folder(data_dir) -> Path:
    """DataError unless `data_dir` is a folder (checked before a model takes seconds to load)."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist" if not root.exists()
            else f"{root} is not a folder; expected a folder with one subfolder per class"
        )
    return root


def match_class_folders(data_dir, labels: Sequence[str], skip_unknown: bool = False) -> ClassFolders:
    """Match each subfolder of `data_dir` to one of `labels` (see the module's rules)."""
    root = check_data_folder(data_dir)
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(f"{root} has no class folders; expected one subfolder per class, named like the model's labels")
    classes = list(dict.fromkeys(str(label) for label in labels))
    class_index = {name: i for i, name in enumerate(classes)}
    by_key: Dict[str, List[int]] = {}
    for i, name in enumerate(classes):
        by_key.setdefault(class_key(name), []).append(i)
    folders, unknown = [], []
    for name in names:
        hits = [class_index[name]] if name in class_index else by_key.get(class_key(name), [])
        if len(hits) > 1:
            raise DataError(f"class folder {name!r} in {root} matches several of the model's labels "
                            f"({', '.join(repr(classes[i]) for i in hits)}); name it exactly like one of them")
        if hits:
            folders.append((root / name, hits[0]))
        else:
            unknown.append(name)
    if unknown and not skip_unknown:
        raise DataError(_unknown_message(root, unknown, labels))
    if not folders:
        raise DataError(f"none of the class folders in {root} is named like one of the model's labels "
                        f"({_some(labels)}); name each subfolder after the class it holds")
    output_class = np.asarray([class_index[str(label)] for label in labels], dtype=np.int64)
    return ClassFolders(root, classes, output_class, folders, unknown)


def _some(labels: Sequence[str]) -> str:
    return ", ".join(map(str, list(labels)[:SHOWN_LABELS])) + (", ..." if len(labels) > SHOWN_LABELS else "")


def _unknown_message(root: Path, unknown: List[str], labels: Sequence[str]) -> str:
    import difflib

    shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
    keys = {class_key(label): str(label) for label in labels}
    close = difflib.get_close_matches(class_key(unknown[0]), list(keys), n=1)
    hint = f" ({unknown[0]!r} may be {keys[close[0]]!r})" if close else ""
    return (
        f"class folder(s) {shown} in {root} are not among the model's {len(labels)} labels ({_some(labels)})"
        f"{hint}; rename them after a label (case does not matter, '_' may stand for a space), "
        "pass --labels FILE, or leave them out with --skip-unknown"
    )


def list_files(matched: ClassFolders, limit_per_class: Optional[int] = None,
               holdout: float = 0.0) -> Tuple[List[Path], np.ndarray]:
    """(image files, their class indices) of the matched folders; at most `limit_per_class` per folder.
    `holdout`: only the fixed held-out fraction of each folder that `train --holdout` left out."""
    from edgevision.edge_runtime.datasets import file_keys, holdout_mask, image_files

    if limit_per_class is not None and limit_per_class < 1:
        raise UsageError(f"the per-class image limit must be at least 1, got {limit_per_class}")
    files: List[Path] = []
    labels: List[int] = []
    for folder, cls in matched.folders:
        images = image_files(folder)
        if not images:
            raise DataError(f"class folder {folder} has no images (expected .jpg, .jpeg, .png, .bmp or .webp files)")
        if holdout:
            keys = file_keys(matched.root, images)
            images = [f for f, held in zip(images, holdout_mask(keys, np.zeros(len(keys)), holdout)) if held]
        images = images[:limit_per_class] if limit_per_class else images
        files.extend(images)
        labels.extend([cls] * len(images))
    return files, np.asarray(labels, dtype=np.int64)


# --- reading ahead ----------------------------------------------------------------------------------
def prepared_batches(paths: Sequence[Path], prepare: Callable[[np.ndarray], object], batch_size: int = DEFAULT_BATCH,
                     workers: Optional[int] = None) -> Iterator[Tuple[list, List[int], List[Tuple[int, str]]]]:
    """Decode and `prepare` image files on a thread pool, batches in order, a few ahead of the consumer.

    Yields (prepared items, their indices into `paths`, [(index, error)] of files that could not be read).
    """
    _check_batch(batch_size)
    workers = workers or default_workers()
    starts = iter(range(0, len(paths), batch_size))

    def load(start: int):
        from edgevision.edge_runtime.images import read_image

        items, kept, failed = [], [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                items.append(prepare(read_image(paths[i])))
                kept.append(i)
            except ImageError as e:
                failed.append((i, str(e)))
        return items, kept, failed

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgevision-decode") as pool:
        pending = deque(pool.submit(load, s) for _, s in zip(range(workers + 1), starts))
        while pending:
            batch = pending.popleft().result()
            nxt = next(starts, None)
            if nxt is not None:
                pending.append(pool.submit(load, nxt))
            yield batch


def default_workers() -> int:
    from edgevision.edge_runtime.interpreter import usable_cores

    return max(1, min(MAX_WORKERS, usable_cores()))


def _check_batch(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size!r}")


# --- the report --------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """What `evaluate` found. `report` is the JSON document every command prints or writes."""

    report: dict  # edge_runtime.metrics.classification_report over the classes involved, plus the keys below
    skipped: List[Tuple[str, str]]  # (file, why) of images that could not be decoded
    unknown_folders: List[str] = field(default_factory=list)  # left out with skip_unknown

    @property
    def accuracy(self) -> float:
        return float(self.report["accuracy"])

    @property
    def n(self) -> int:
        return int(self.report["n"])

    @property
    def correct(self) -> int:
        return int(self.report["correct"])

    @property
    def confusion(self) -> np.ndarray:
        return np.asarray(self.report["confusion_matrix"])

    @property
    def classes(self) -> List[str]:
        """The rows / columns of `confusion`."""
        return list(self.report["classes"])

    def to_dict(self) -> dict:
        return dict(self.report)

    def skipped_summary(self, limit: int = 3) -> Optional[str]:
        """One warning line naming a few of the undecodable files, or None."""
        if not self.skipped:
            return None
        names = ", ".join(Path(p).name for p, _ in self.skipped[:limit])
        more = f" and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        return f"skipped {len(self.skipped)} file(s) that are not decodable images: {names}{more}"

    def notes(self) -> List[str]:
        """Lines worth telling the user: folders left out, files skipped."""
        out = []
        if self.unknown_folders:
            shown = ", ".join(self.unknown_folders[:5]) + (" ..." if len(self.unknown_folders) > 5 else "")
            out.append(f"{len(self.unknown_folders)} folder(s) match no model label and were left out: {shown}")
        if self.skipped:
            out.append(self.skipped_summary())
        return out


def build_evaluation(y_true, y_pred, classes: Sequence[str], skipped=(), unknown=(), data=None) -> Evaluation:
    """The report over the classes that occur or are predicted (an ImageNet model checked on 3 folders
    reports 3-ish rows; accuracy and the macro averages over classes that occur do not change)."""
    from edgevision.edge_runtime.metrics import classification_report

    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    involved = sorted(set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist()))
    remap = np.full(len(classes), -1, dtype=np.int64)
    remap[involved] = np.arange(len(involved))
    report = classification_report(remap[y_true], remap[y_pred], [classes[i] for i in involved])
    report["correct"] = int(np.count_nonzero(y_true == y_pred))
    report["skipped"] = len(skipped)
    report["unknown_folders"] = list(unknown)
    if data is not None:
        report["data"] = str(data)
    return Evaluation(report, [(str(p), why) for p, why in skipped], list(unknown))


# --- evaluate -----------------------------------------------------------------------------------------
def evaluate(predictor, data_dir, *, skip_unknown: bool = False, limit_per_class: Optional[int] = None,
             holdout: float = 0.0, batch_size: int = DEFAULT_BATCH, workers: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> Evaluation:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of `predictor` on a class-per-folder tree.

    skip_unknown: leave out (and list) folders that name no label instead of refusing the folder.
    limit_per_class: score at most this many images of each class folder (the first, sorted by name).
    holdout: score only the fixed held-out fraction of each class folder (see `datasets.holdout_mask`).
    """
    _check_batch(batch_size)
    matched = match_class_folders(data_dir, predictor.labels, skip_unknown=skip_unknown)
    files, y_true = list_files(matched, limit_per_class, holdout)
    kept_all: List[int] = []
    predicted: List[np.ndarray] = []
    skipped: List[Tuple[Path, str]] = []
    done = 0
    for items, kept, failed in prepared_batches(files, predictor.prepare, batch_size, workers):
        if items:
            predicted.append(top1(predictor.predict_prepared(items)))
            kept_all.extend(kept)
        skipped.extend((files[i], err) for i, err in failed)
        done += len(kept) + len(failed)
        if progress:
            progress(done, len(files))
    if not kept_all:
        raise DataError(f"none of the {len(files)} images in {matched.root} could be decoded")
    y_pred = matched.output_class[np.concatenate(predicted)]
    result = build_evaluation(y_true[kept_all], y_pred, matched.classes, skipped, matched.unknown,
                              data=matched.root.resolve())
    if holdout:
        result.report["holdout"] = holdout
    return result


def evaluate_arrays(predictor, pixels: np.ndarray, y_true, classes: Optional[Sequence[str]] = None,
                    batch_size: int = DEFAULT_BATCH) -> Evaluation:
    """`evaluate` for pixels already decoded at the input size, with their output indices as labels."""
    labels = list(classes) if classes is not None else list(predictor.labels)
    y_pred = top1(predict_arrays(predictor, pixels, batch_size))
    return build_evaluation(y_true, y_pred, labels)


__all__ = [
    "ClassFolders", "DEFAULT_BATCH", "Evaluation", "TFLitePredictor", "build_evaluation", "check_data_folder",
    "check_pixels", "class_key", "evaluate", "evaluate_arrays", "list_files", "match_class_folders",
    "predict_arrays", "prepared_batches", "top1",
]
