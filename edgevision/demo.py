"""`make demo` / `python -m edgevision.demo`: the main job, end to end, on the bundled default model.

1. Pick a sample source: a camera if one opens; otherwise a clip made from CIFAR-10 test images when Keras
   can download them; otherwise a clip of generated frames. It says which.
2. Classify it with the edge runtime (`edgevision classify`), saving the annotated video and per-frame JSON.
3. Benchmark the bundled models (`edgevision bench`).
4. Print where the results and pictures are.

It runs the real CLI in child processes, exactly as a user would, and needs no network.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

CLIP_FPS = 10
FRAMES_PER_IMAGE = 5
CLIP_SIZE = (320, 320)  # (width, height): small enough to encode quickly, big enough to read the overlay


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _camera_available(index: int = 0) -> bool:
    import cv2

    if not os.path.exists(f"/dev/video{index}") and sys.platform.startswith("linux"):
        return False
    cap = cv2.VideoCapture(index)
    try:
        return bool(cap.isOpened() and cap.read()[0])
    finally:
        cap.release()


def _cifar10_test_images(n: int) -> Optional[Tuple[np.ndarray, List[str]]]:
    """n CIFAR-10 test images (RGB) and their class names, or None when Keras cannot download them."""
    import importlib.util

    if importlib.util.find_spec("keras") is None:  # an edge-only install: no Keras, no CIFAR-10 download
        return None
    from edgevision.errors import DataError
    from edgevision.native_log import quiet_native_stderr
    from edgevision.train.data import CIFAR10_CLASSES, load_cifar10_arrays

    try:
        with quiet_native_stderr():
            _, _, x, y = load_cifar10_arrays()
    except DataError:  # offline and not cached
        return None
    rng = np.random.default_rng(0)
    pick = rng.choice(len(x), n, replace=False)
    return x[pick], [CIFAR10_CLASSES[int(i)] for i in y.reshape(-1)[pick]]


def _write_clip(path: Path, frames_rgb: List[np.ndarray]) -> None:
    import cv2

    from edgevision.atomic import atomic_path

    with atomic_path(path, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), CLIP_FPS, CLIP_SIZE)
        for frame in frames_rgb:
            big = cv2.resize(frame, CLIP_SIZE, interpolation=cv2.INTER_CUBIC)
            for _ in range(FRAMES_PER_IMAGE):
                writer.write(cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
        writer.release()


def _generated_frames(n: int) -> List[np.ndarray]:
    """Synthetic scenes (sky, ground, a moving object): exercises the whole pipeline without any data."""
    import cv2

    frames = []
    h, w = 32, 32
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[: h // 2] = (110 + 3 * i % 60, 160, 220)
        img[h // 2 :] = (90, 130 + 2 * i % 50, 70)
        cx = 4 + (i * 3) % (w - 8)
        cv2.circle(img, (cx, h // 2), 5, (200, 40 + 5 * i % 200, 40), -1)
        frames.append(img)
    return frames


def _cli(*args: str, stdout=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgevision.cli", *args]
    _say("$ edgevision " + " ".join(args))
    return subprocess.run(cmd, stdout=stdout, text=True)


def _contact_sheet(video: Path, out: Path, count: int = 8) -> Optional[Path]:
    """A PNG grid of frames from the annotated video: the 'picture' of the run."""
    import cv2

    from edgevision.atomic import atomic_path

    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 0
    frames = []
    for k in range(count):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(k * max(total, 1) / count))
        ok, frame = cap.read()
        if ok:
            frames.append(cv2.resize(frame, (240, 240)))
    cap.release()
    if not frames:
        return None
    while len(frames) % 4:
        frames.append(np.zeros_like(frames[0]))
    rows = [np.hstack(frames[i : i + 4]) for i in range(0, len(frames), 4)]
    with atomic_path(out, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), np.vstack(rows))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo-output", help="where results go (default: demo-output)")
    parser.add_argument("--model", default=None, help="model to demo (default: the bundled default model)")
    parser.add_argument("--images", type=int, default=40, help="images in the sample clip")
    args = parser.parse_args(argv)

    from edgevision.bundled import DEFAULT_MODEL, list_bundled

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = args.model or DEFAULT_MODEL
    started = time.time()
    _say(f"model: {model}; results go to {out}")

    truth: Optional[List[str]] = None
    if _camera_available():
        source, max_frames = "0", 150
        _say("source: the camera (/dev/video0), 150 frames")
    else:
        clip = out / "sample_clip.mp4"
        cifar = _cifar10_test_images(args.images)
        if cifar is not None:
            images, truth = cifar
            _write_clip(clip, list(images))
            _say(f"source: no camera; a clip of {args.images} CIFAR-10 test images ({clip.name})")
        else:
            _write_clip(clip, _generated_frames(args.images))
            _say(
                "source: no camera and CIFAR-10 cannot be downloaded (offline); "
                f"a clip of {args.images} generated frames ({clip.name}) — its labels mean little, "
                "it exercises the pipeline"
            )
        source, max_frames = str(clip), args.images * FRAMES_PER_IMAGE

    annotated = out / "annotated.mp4"
    jsonl = out / "classify.jsonl"
    with open(jsonl, "w") as f:
        result = _cli("classify", "--model", model, "--source", source, "--headless", "--json",
                      "--save", str(annotated), "--max-frames", str(max_frames), "--top-k", "3", stdout=f)
    if result.returncode != 0:
        _say(f"classify failed with exit status {result.returncode}")
        return result.returncode
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.startswith("{")]
    if rows:
        infer = np.median([r["infer_ms"] for r in rows])
        total = np.median([r["total_ms"] for r in rows])
        _say(f"classified {len(rows)} frames: median inference {infer:.2f} ms, median per frame {total:.2f} ms")
        if truth:
            per_image = [rows[i * FRAMES_PER_IMAGE]["label"] for i in range(min(len(truth), len(rows) // FRAMES_PER_IMAGE))]
            hits = sum(p == t for p, t in zip(per_image, truth))
            _say(f"on the CIFAR-10 clip: {hits}/{len(per_image)} images labelled correctly")
    sheet = _contact_sheet(annotated, out / "frames.png") if annotated.exists() else None

    bundled = [m.name for m in list_bundled()]
    bench_models = bundled or [model]
    result = _cli("bench", *bench_models, "--threads", "1,2", "--warmup", "10", "--runs", "100",
                  "--json", str(out / "bench.json"), "--md", str(out / "bench.md"))
    if result.returncode != 0:
        _say(f"bench failed with exit status {result.returncode}")
        return result.returncode

    _say(f"done in {time.time() - started:.0f} s. Results:")
    for path in (annotated, sheet, jsonl, out / "bench.md", out / "bench.json"):
        if path and Path(path).exists():
            _say(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
