"""Classification metrics in plain numpy (the edge extra has no scikit-learn and no TensorFlow)."""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j] = number of samples of true class i predicted as class j."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def classification_report(y_true, y_pred, class_names: Sequence[str]) -> Dict:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages (sklearn's definitions)."""
    n_classes = len(class_names)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    n = int(support.sum())
    present = support > 0  # macro averages over classes that occur, as sklearn does with labels=present
    weights = support / n if n else support

    def avg(values, w=None):
        if w is None:
            return float(values[present].mean()) if present.any() else 0.0
        return float((values * w).sum())

    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": avg(f1),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "macro_avg": {"precision": avg(precision), "recall": avg(recall), "f1": avg(f1), "support": n},
        "weighted_avg": {
            "precision": avg(precision, weights),
            "recall": avg(recall, weights),
            "f1": avg(f1, weights),
            "support": n,
        },
        "confusion_matrix": cm.tolist(),
        "classes": list(class_names),
    }


def format_report(report: Dict) -> str:
    """The report as an aligned text table (like sklearn's classification_report)."""
    names = list(report["per_class"])
    width = max([len(n) for n in names] + [len("weighted avg")])
    lines = [f"{'':<{width}}  precision    recall  f1-score   support", ""]
    for name in names:
        r = report["per_class"][name]
        lines.append(f"{name:<{width}}  {r['precision']:9.4f} {r['recall']:9.4f} {r['f1']:9.4f} {r['support']:9d}")
    lines.append("")
    lines.append(f"{'accuracy':<{width}}  {'':9} {'':9} {report['accuracy']:9.4f} {report['n']:9d}")
    for key, label in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        r = report[key]
        lines.append(f"{label:<{width}}  {r['precision']:9.4f} {r['recall']:9.4f} {r['f1']:9.4f} {r['support']:9d}")
    return "\n".join(lines) + "\n"
