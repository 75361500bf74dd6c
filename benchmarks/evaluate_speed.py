"""How close `evaluate` comes to the model's own time: the engine on a folder vs N bare invokes.

    python -m edgevision.benchmarks.evaluate_speed --data DIR            # a class-per-folder tree
    python -m edgevision.benchmarks.evaluate_speed --tar cifar10-train.tar.gz --per-class 300

Target (issue 18): `edgevision.edge_runtime.evaluation.evaluate` on N images takes at most 1.2x the floor,
N `interpreter.invoke()` calls on the same interpreter (same model, same threads), on both bundled models.

Method: one Classifier per model serves both measurements. One untimed evaluate and one untimed floor
come first (interpreter warm-up, the files in the page cache). Then evaluate and the floor alternate, so
that a busy neighbour on a shared CPU slows both alike. The report gives n, median and spread (min-max)
of each, the ratio of the medians and the median of the paired ratios (each evaluate over the floor run
right after it, under the same load), with the machine and its load. The verdict uses the paired ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

MODELS = ("cifar10-cnn", "cifar10-mobilenetv2")
TARGET = 1.2


def extract_subset(tar_path, per_class: int, dest: Path) -> Path:
    """The first `per_class` images of each class folder of a CIFAR-style tarball, extracted to `dest`."""
    from edgevision.edge_runtime.images import is_image_file

    counts: Dict[str, int] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 2 or not is_image_file(Path(member.name)):
                continue
            cls = parts[-2]
            if counts.get(cls, 0) >= per_class:
                continue
            counts[cls] = counts.get(cls, 0) + 1
            target = dest / cls / Path(member.name).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    return dest


def floor_seconds(clf, n: int) -> float:
    """Wall seconds of n bare invokes of `clf`'s interpreter on one prepared input."""
    interpreter = clf.interpreter
    invoke = interpreter.invoke
    clock = time.perf_counter
    start = clock()
    for _ in range(n):
        invoke()
    return clock() - start


def measure(model: str, data: Path, repeats: int, threads: Optional[int]) -> dict:
    """Alternating timings of evaluate and of the floor for one model (warm-up excluded)."""
    from edgevision.edge_runtime.classifier import Classifier
    from edgevision.edge_runtime.evaluation import TFLitePredictor, evaluate

    clf = Classifier(model, num_threads=threads)
    predictor = TFLitePredictor(clf)
    first = evaluate(predictor, data)  # warm-up: interpreter, page cache; also gives N (one invoke per image)
    interpreter = clf.interpreter
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                           np.zeros(clf.input_shape, np.dtype(clf.input_dtype)))
    floor_seconds(clf, min(first.n, 200))
    evals, floors = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = evaluate(predictor, data)
        evals.append(time.perf_counter() - start)
        floors.append(floor_seconds(clf, result.n))
    return {"model": model, "threads": clf.num_threads, "images": first.n, "accuracy": first.accuracy,
            "evaluate_s": evals, "floor_s": floors}


def summarize(m: dict) -> dict:
    ev, fl = np.asarray(m["evaluate_s"]), np.asarray(m["floor_s"])
    return {
        **{k: m[k] for k in ("model", "threads", "images", "accuracy")},
        "repeats": len(ev),
        "evaluate": {"median_s": float(np.median(ev)), "min_s": float(ev.min()), "max_s": float(ev.max())},
        "floor": {"median_s": float(np.median(fl)), "min_s": float(fl.min()), "max_s": float(fl.max())},
        "ratio_of_medians": float(np.median(ev) / np.median(fl)),
        "median_paired_ratio": float(np.median(ev / fl)),
    }


def format_report(rows: List[dict], data: Path) -> str:
    from edgevision.benchmarks.classifier_overhead import machine_note

    m = machine_note()
    load = f"{m['load_1min']:.2f}" if m["load_1min"] is not None else "?"
    lines = [
        f"machine: {m['cpu']}, {m['cores']} usable cores, load {load} (1 min), Python {m['python']}",
        f"data:    {data}; evaluate = edge_runtime.evaluation.evaluate end to end (scan, decode, invoke, report);",
        "         floor = N bare interpreter.invoke() calls; warm-up excluded; the two alternate",
        "",
        f"{'model':<22}{'thr':>4}{'N':>6}{'runs':>5}  {'evaluate median (min-max)':<27}"
        f"{'floor median (min-max)':<27}{'ratio':>7}{'paired':>8}",
    ]
    for r in rows:
        e, f = r["evaluate"], r["floor"]
        lines.append(
            f"{r['model']:<22}{r['threads']:>4}{r['images']:>6}{r['repeats']:>5}  "
            f"{e['median_s']:>7.3f} s ({e['min_s']:.3f}-{e['max_s']:.3f})   "
            f"{f['median_s']:>7.3f} s ({f['min_s']:.3f}-{f['max_s']:.3f})   "
            f"{r['ratio_of_medians']:>6.3f}{r['median_paired_ratio']:>8.3f}"
        )
    lines.append("")
    for r in rows:
        verdict = "PASS" if r["median_paired_ratio"] <= TARGET else "FAIL"
        lines.append(f"{r['model']}: evaluate / floor {r['median_paired_ratio']:.3f}x, median of the pairs "
                     f"(target <= {TARGET}x) -> {verdict}; "
                     f"top-1 {r['accuracy'] * 100:.2f} % on {r['images']} images")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a folder with one subfolder of images per class")
    source.add_argument("--tar", help="a CIFAR-style .tar.gz (class/image files) to take --per-class images from")
    parser.add_argument("--per-class", type=int, default=300, help="images per class taken from --tar (default 300)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models (default: both bundled)")
    parser.add_argument("--repeats", type=int, default=7, help="timed evaluate/floor pairs per model (default 7)")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: every core)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.per_class < 1:
        parser.error("--repeats and --per-class must be at least 1")
    from edgevision.errors import EdgeVisionError

    try:
        with tempfile.TemporaryDirectory(prefix="edgevision-eval-speed-") as tmp:
            data = Path(args.data) if args.data else extract_subset(args.tar, args.per_class, Path(tmp) / "data")
            rows = [summarize(measure(m, data, args.repeats, args.threads)) for m in args.models.split(",") if m]
    except (EdgeVisionError, OSError, tarfile.TarError) as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    print(json.dumps(rows, indent=2) if args.json else format_report(rows, Path(args.data or args.tar)))
    return 0 if all(r["median_paired_ratio"] <= TARGET for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
