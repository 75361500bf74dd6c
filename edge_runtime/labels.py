"""Class labels: reading label files and matching them to a model's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from edgevision.edge_runtime.files import read_regular_file
from edgevision.errors import LabelsError

BACKGROUND = "background"
#: Largest labels file read: tens of thousands of class names fit in well under this.
MAX_LABELS_BYTES = 16 * 1024 * 1024


def parse_labels(text: str) -> List[str]:
    """One label per line; blank lines at the end are ignored, inner blank lines are kept as ''."""
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def load_labels(path) -> List[str]:
    path = Path(path)
    text = read_regular_file(path, MAX_LABELS_BYTES, "labels file", LabelsError).decode("utf-8", errors="replace")
    labels = parse_labels(text)
    if not labels:
        raise LabelsError(f"labels file {path} is empty; expected one class name per line")
    return labels


def align_labels(labels: Sequence[str], num_outputs: int, source: str = "labels") -> List[str]:
    """Make `labels` match a model with `num_outputs` classes, or say clearly why they cannot.

    TFLite's ImageNet classifiers have 1001 outputs with 'background' first, while Keras' have 1000: a
    1001-line file with 'background' first serves both, so one extra leading 'background' is dropped,
    and a missing one is added for a model that has the extra output.
    """
    labels = list(labels)
    n = len(labels)
    if n == num_outputs:
        return labels
    if n == num_outputs + 1 and labels[0].strip().lower() == BACKGROUND:
        return labels[1:]
    if n + 1 == num_outputs:
        return [BACKGROUND] + labels
    raise LabelsError(
        f"{source} has {n} class names but the model has {num_outputs} outputs; "
        f"give a labels file with {num_outputs} lines (one class name per output, in output order)"
    )


#: Label files looked for beside a model that carries none, most specific first: per-model names (one folder
#: can hold several models; `edgevision convert` writes `<model>.labels.txt` when `labels.txt` is taken),
#: then the TFLite examples' shared `labels.txt`.
LABELS_BESIDE = ("{stem}.labels.txt", "{stem}_labels.txt", "{stem}.txt", "labels.txt")


def labels_beside(model: Path) -> Optional[Path]:
    """The labels file beside `model`, or None."""
    model = Path(model)
    for pattern in LABELS_BESIDE:
        candidate = model.with_name(pattern.format(stem=model.stem))
        if candidate != model and candidate.is_file():
            return candidate
    return None
