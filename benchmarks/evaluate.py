"""`--eval DIR`: accuracy of a .tflite classifier on a labelled image folder, in a child process.

The scoring is `edgevision.edge_runtime.evaluation.evaluate`, the engine behind `edgevision evaluate` too:
one subfolder per class, named like the model's labels (case does not matter, '_' may stand for a space),
images through the very `Classifier` a device uses, quantization included. `bench` compares models that
may not share every class, so it always leaves out (and names, in a note) folders that match no label,
as `edgevision evaluate --skip-unknown` does.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


def evaluate_folder(classifier, root, limit: Optional[int] = None):
    """The engine's Evaluation of `classifier` (an edge_runtime Classifier) on the class folders of `root`."""
    from edgevision.edge_runtime.evaluation import TFLitePredictor, evaluate

    return evaluate(TFLitePredictor(classifier), root, skip_unknown=True, limit_per_class=limit)


def summary(evaluation) -> Dict[str, Any]:
    """The figures the bench report keeps (runner._add_accuracy), from the engine's report."""
    report = evaluation.report
    return {
        "accuracy": evaluation.accuracy,
        "images": evaluation.n,
        "correct": evaluation.correct,
        "classes": sum(1 for c in report["per_class"].values() if c["support"] > 0),
        "skipped_images": len(evaluation.skipped),
        "skipped_classes": list(evaluation.unknown_folders),
        "notes": [f"--eval: {note}" for note in evaluation.notes()],
        "report": report,
    }


def evaluate_task(task: Dict[str, Any]) -> Dict[str, Any]:
    """The child-process side of --eval."""
    from edgevision.benchmarks.child import stage
    from edgevision.edge_runtime.classifier import Classifier

    stage("load")
    clf = Classifier(task["model"], num_threads=task.get("threads"), backend=task.get("backend", "auto"),
                     trusted=bool(task.get("trusted")), labels=task.get("labels"), delegate=task.get("delegate"),
                     arena_size=task.get("arena_size"))
    stage("eval")
    return summary(evaluate_folder(clf, task["dir"], limit=task.get("limit")))
