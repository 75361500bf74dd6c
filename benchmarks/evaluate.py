"""`--eval DIR`: top-1 accuracy of a .tflite classifier on a labelled image folder, through the edge runtime.

The folder has one subfolder per class, named like the model's labels ("cat", "Egyptian cat"); names are
compared without case, and '_' / '-' count as spaces, so `egyptian_cat/` matches "Egyptian cat". Folders that
match no label are left out and named in a note (a model that does not know a class cannot be scored on it);
images that cannot be decoded are skipped and counted. Images go through the very `Classifier` a device uses
(`read_image` -> `classify`), so the accuracy is the one the user will get, quantization included.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edgevision.errors import DataError, ImageError


def normalize_name(name: str) -> str:
    """'Egyptian_cat' / 'egyptian-cat' / ' Egyptian  cat' -> 'egyptian cat'."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", str(name))).strip().lower()


@dataclass
class EvalResult:
    accuracy: float
    images: int
    correct: int
    #: Class folders that matched a model label and were scored.
    classes: int
    skipped_images: int = 0
    skipped_classes: List[str] = field(default_factory=list)
    per_class: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # folder -> (correct, images)
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["per_class"] = {k: {"correct": c, "images": n} for k, (c, n) in self.per_class.items()}
        return d


def class_folders(root: Path) -> List[Path]:
    if not root.is_dir():
        raise DataError(f"--eval {root}: not a folder; expected one subfolder of images per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"--eval {root} has no subfolders; expected one subfolder of images per class")
    return folders


def match_folders(folders: Sequence[Path], labels: Sequence[str]) -> Tuple[List[Path], List[str]]:
    """(folders whose name is a model label, names of the others)."""
    known = {normalize_name(label) for label in labels}
    matched = [f for f in folders if normalize_name(f.name) in known]
    return matched, [f.name for f in folders if normalize_name(f.name) not in known]


def image_files(folder: Path, limit: Optional[int] = None) -> List[Path]:
    from edgevision.edge_runtime.images import is_image_file

    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    return files[:limit] if limit else files


def evaluate_folder(classifier, root, limit: Optional[int] = None) -> EvalResult:
    """Top-1 accuracy of `classifier` (an edge_runtime Classifier) on the class folders of `root`."""
    from edgevision.edge_runtime.images import read_image

    root = Path(root)
    matched, unmatched = match_folders(class_folders(root), classifier.labels)
    if not matched:
        sample = ", ".join(classifier.labels[:8]) + (", ..." if len(classifier.labels) > 8 else "")
        raise DataError(
            f"none of the class folders in {root} is named like one of the model's labels ({sample}); "
            "name each subfolder after the class it holds"
        )
    correct = images = skipped = 0
    per_class: Dict[str, Tuple[int, int]] = {}
    for folder in matched:
        want = normalize_name(folder.name)
        c = n = 0
        for path in image_files(folder, limit):
            try:
                image = read_image(path)
            except ImageError:
                skipped += 1
                continue
            top = classifier.classify(image, top_k=1)
            n += 1
            c += int(normalize_name(top[0].label) == want)
        per_class[folder.name] = (c, n)
        correct += c
        images += n
    if images == 0:
        raise DataError(f"--eval {root}: the matching class folders hold no readable images")
    notes = []
    if unmatched:
        notes.append(f"--eval: {len(unmatched)} folder(s) match no model label and were left out: "
                     + ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else ""))
    if skipped:
        notes.append(f"--eval: skipped {skipped} file(s) that are not decodable images")
    return EvalResult(accuracy=correct / images, images=images, correct=correct, classes=len(matched),
                      skipped_images=skipped, skipped_classes=unmatched, per_class=per_class, notes=notes)


def evaluate_task(task: Dict[str, Any]) -> Dict[str, Any]:
    """The child-process side of --eval."""
    from edgevision.benchmarks.child import stage
    from edgevision.edge_runtime.classifier import Classifier

    stage("load")
    clf = Classifier(task["model"], num_threads=task.get("threads"), backend=task.get("backend", "auto"),
                     trusted=bool(task.get("trusted")), labels=task.get("labels"))
    stage("eval")
    return evaluate_folder(clf, task["dir"], limit=task.get("limit")).to_dict()
