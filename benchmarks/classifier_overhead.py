"""What the edge runtime adds to the interpreter: `Classifier.classify` vs a bare `interpreter.invoke()` loop.

    python -m edgevision.benchmarks.classifier_overhead [--model M] [--threads 1] [--runs 300]

Targets (issue 4): on a frame already at the model's input size, `classify` costs at most 5 % more than a
bare `invoke()` on the same interpreter (same model, same threads); preparing a 720p frame (resize and
conversion) stays under 1 ms.

Method: one interpreter serves both loops, which run in alternating blocks so that a busy neighbour on a
shared CPU slows both alike; the stage table comes from `classify(..., timings=ClassifyTimings())`, the
classifier timing its own stages (wall time only); every call is timed on its own with perf_counter_ns (wall) and process_time_ns
(CPU time of this process, all its threads: on a loaded machine it leaves out the time other processes
held the cores, which wall time cannot); warm-up calls are not counted; the report gives n, median and p90,
the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

REFERENCE_MODEL = Path("models/reference/mobilenet_v2_1.0_224_quant.tflite")
REFERENCE_LABELS = REFERENCE_MODEL.with_name("imagenet_labels.txt")
FRAME_720P = Path("images/cat_720p.jpg")
HD_SIZE = (720, 1280)  # height, width of a 720p camera frame
BLOCK = 5  # calls per block when the loops alternate: short, so load changes hit every loop alike


def _shared_dir() -> Path:
    env = os.environ.get("EDGEVISION_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared"


def default_model() -> str:
    """Google's reference model when ../shared is here, else the bundled default model."""
    reference = _shared_dir() / REFERENCE_MODEL
    if reference.is_file():
        return str(reference)
    from edgevision.bundled import DEFAULT_MODEL

    return DEFAULT_MODEL


def machine_note() -> Dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "load_1min": load, "python": platform.python_version(),
            "platform": platform.platform()}


def stats_us(samples: List, wall_only: bool = False) -> Dict[str, Optional[float]]:
    """n, median and p90 in microseconds of (wall ns, CPU ns) pairs, or of wall ns alone."""
    a = np.asarray(samples, dtype=np.float64).reshape(-1, 1 if wall_only else 2) / 1e3
    wall = a[:, 0]
    out = {"n": int(len(a)), "median_us": float(np.median(wall)), "p90_us": float(np.percentile(wall, 90)),
           "cpu_median_us": None, "cpu_p90_us": None}
    if not wall_only:
        out.update(cpu_median_us=float(np.median(a[:, 1])), cpu_p90_us=float(np.percentile(a[:, 1], 90)))
    return out


def stage_samples(clf, frames: Dict[str, np.ndarray], runs: int, warmup: int) -> Dict[str, List[int]]:
    """Per-stage wall ns of `runs` classify calls on each frame, as classify itself times them."""
    from edgevision.edge_runtime.classifier import ClassifyTimings

    samples: Dict[str, List[int]] = {}
    timings = ClassifyTimings()
    for name, image in frames.items():
        for _ in range(warmup):
            clf.classify(image, top_k=5)
        prepare, invoke, post = [], [], []
        for _ in range(runs):
            clf.classify(image, top_k=5, timings=timings)
            prepare.append(timings.prepare_ns)
            invoke.append(timings.invoke_ns)
            post.append(timings.postprocess_ns)
        samples[f"prepare_{name}"] = prepare
        if name == "input_size":
            samples["invoke"], samples["postprocess"] = invoke, post
    return samples


def time_calls(fn: Callable[[], object], n: int) -> List[tuple]:
    """(wall ns, process CPU ns) of each of n calls."""
    wall, cpu = time.perf_counter_ns, time.process_time_ns
    out = []
    for _ in range(n):
        w0, c0 = wall(), cpu()
        fn()
        c1, w1 = cpu(), wall()
        out.append((w1 - w0, c1 - c0))
    return out


def interleaved(fns: Dict[str, Callable[[], object]], runs: int, warmup: int) -> Dict[str, List[tuple]]:
    """Time each function `runs` times, in alternating blocks, after `warmup` untimed calls of each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: Dict[str, List[tuple]] = {name: [] for name in fns}
    while any(len(s) < runs for s in samples.values()):
        for name, fn in fns.items():
            samples[name] += time_calls(fn, min(BLOCK, runs - len(samples[name])))
    return samples


def input_size_frame(clf, shared: Path) -> np.ndarray:
    """A real photo at the model's input size (BGR), or a smooth synthetic one without ../shared."""
    import cv2

    from edgevision.edge_runtime.images import read_image

    h, w = clf.input_size
    photo = shared / FRAME_720P
    if photo.is_file():
        return cv2.resize(read_image(photo), (w, h), interpolation=cv2.INTER_AREA)
    return synthetic_frame(h, w)


def synthetic_frame(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) % 256)], axis=-1).astype(np.uint8)


def run(model: Optional[str], threads: Optional[int], runs: int, warmup: int, backend: str) -> dict:
    from edgevision.edge_runtime.classifier import Classifier
    from edgevision.edge_runtime.images import read_image

    shared = _shared_dir()
    model = model or default_model()
    labels = shared / REFERENCE_LABELS if Path(model).resolve() == (shared / REFERENCE_MODEL).resolve() else None
    clf = Classifier(model, num_threads=threads, backend=backend, labels=labels)
    frame = input_size_frame(clf, shared)
    hd_path = shared / FRAME_720P
    frame_hd = read_image(hd_path) if hd_path.is_file() else synthetic_frame(*HD_SIZE)

    interpreter = clf.interpreter
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], clf.prepare(frame))

    loops = interleaved({"bare_invoke": interpreter.invoke, "classify": lambda: clf.classify(frame, top_k=5)},
                        runs, warmup)
    stages = stage_samples(clf, {"input_size": frame, "720p": frame_hd}, runs, warmup)
    results = {**{name: stats_us(s) for name, s in loops.items()},
               **{name: stats_us(s, wall_only=True) for name, s in stages.items()}}
    bare, full = results["bare_invoke"]["median_us"], results["classify"]["median_us"]
    bare_cpu, full_cpu = results["bare_invoke"]["cpu_median_us"], results["classify"]["cpu_median_us"]
    return {
        "model": str(clf.model_path),
        "input": f"{list(clf.input_shape)} {clf.input_dtype}",
        "input_path": clf._encode.kind,  # how pixels become the input tensor (copy/xor/table/affine)
        "backend": f"{clf.backend} {clf.backend_version}",
        "threads": clf.num_threads,
        "frame_720p": f"{frame_hd.shape[1]}x{frame_hd.shape[0]}",
        "machine": machine_note(),
        "timings": results,
        "classify_over_bare": full / bare,
        "overhead_us": full - bare,
        "classify_over_bare_cpu": full_cpu / bare_cpu,
        "overhead_cpu_us": full_cpu - bare_cpu,
        "top1": clf.classify(frame, top_k=1)[0].to_dict(),
    }


def format_report(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} usable cores, load {m['load_1min']:.2f} (1 min), "
        f"Python {m['python']}, {m['platform']}",
        f"model:   {r['model']}  input {r['input']} ({r['input_path']} input path)",
        f"backend: {r['backend']}, threads: {r['threads']}; warm-up excluded, perf_counter_ns per call, "
        "loops interleaved in blocks",
        "",
        f"{'stage':<22}{'n':>6}{'wall median':>14}{'wall p90':>12}{'CPU median':>14}{'CPU p90':>12}",
    ]
    for name, s in r["timings"].items():
        cpu = ("" if s["cpu_median_us"] is None
               else f"{s['cpu_median_us']:>12.1f}us{s['cpu_p90_us']:>10.1f}us")
        lines.append(f"{name:<22}{s['n']:>6}{s['median_us']:>12.1f}us{s['p90_us']:>10.1f}us{cpu}")
    lines.append("")
    for label, ratio, extra in (("wall", r["classify_over_bare"], r["overhead_us"]),
                                ("CPU ", r["classify_over_bare_cpu"], r["overhead_cpu_us"])):
        lines.append(
            f"classify / bare invoke, {label} medians: {ratio:.3f}  (+{(ratio - 1) * 100:.1f} %, {extra:.0f} us; "
            f"target <= +5 %)  -> {'PASS' if ratio <= 1.05 else 'FAIL'}"
        )
    lines += [
        f"prepare() on a {r['frame_720p']} frame: median {r['timings']['prepare_720p']['median_us']:.0f} us "
        f"(target < 1000 us) -> {'PASS' if r['timings']['prepare_720p']['median_us'] < 1000 else 'FAIL'}",
        f"top-1 on the input-size frame: {r['top1']['label']} ({r['top1']['score']:.3f})",
    ]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a .tflite file or bundled model name (default: the reference model)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--runs", type=int, default=300, help="timed calls per loop (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls first (default 30)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)
    from edgevision.errors import EdgeVisionError

    try:
        result = run(args.model, args.threads, args.runs, args.warmup, args.backend)
    except EdgeVisionError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
