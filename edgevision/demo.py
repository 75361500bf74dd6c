"""`make demo` / `python -m edgevision.demo`: the product on real photos, offline, with the edge runtime only.

1. Classify the sample photos shipped in the package (edgevision/samples/, licences in LICENSES.md) with the
   general model (`edgevision predict`) and with each CIFAR-10 model, and say per photo what each model said
   and whether it matches the photo's known answer.
2. Make a short clip of the photos and run the video path on it (`edgevision classify`), saving the annotated
   video, per-frame JSON and a PNG with one annotated frame per photo.
3. Benchmark the bundled models (`edgevision bench`).
4. Print where the results and pictures are.

It runs the real CLI in child processes, exactly as a user would, and needs no network. The exit status is
non-zero when a command fails or the general model gets a photo wrong.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

CLIP_FPS = 10
FRAMES_PER_PHOTO = 10
CLIP_SIDE = 320  # square frames: what a centre-cropping model sees of each photo, big enough to read the overlay
SHEET_SIDE = 320


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _cli(*args: str, stdout=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgevision.cli", *args]
    _say("$ edgevision " + " ".join(args))
    return subprocess.run(cmd, stdout=stdout, text=True)


def _predict(model: str, photos: Sequence[Path]) -> Optional[Dict[str, dict]]:
    """file name -> `edgevision predict --json`'s top answer, or None when the command failed."""
    result = _cli("predict", model, *map(str, photos), "--top-k", "3", "--json", stdout=subprocess.PIPE)
    if result.returncode != 0:
        return None
    return {Path(r["image"]).name: r["top"][0] for r in json.loads(result.stdout)}


def square(photo_bgr: np.ndarray, side: int) -> np.ndarray:
    """The largest centred square of the photo at side x side: what a centre-cropping model looks at."""
    import cv2

    from edgevision.edge_runtime.preprocess import center_crop_box

    y0, y1, x0, x1 = center_crop_box(photo_bgr.shape[0], photo_bgr.shape[1], (side, side))
    return cv2.resize(photo_bgr[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA)


def write_clip(path: Path, photos: Sequence[Path]) -> None:
    import cv2

    from edgevision.atomic import atomic_path
    from edgevision.edge_runtime.images import read_image

    with atomic_path(path, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), CLIP_FPS, (CLIP_SIDE, CLIP_SIDE))
        for photo in photos:
            frame = square(read_image(photo), CLIP_SIDE)
            for _ in range(FRAMES_PER_PHOTO):
                writer.write(frame)
        writer.release()


def contact_sheet(video: Path, out: Path, count: int) -> Optional[Path]:
    """A PNG with the middle annotated frame of each photo's stretch of the clip, side by side."""
    import cv2

    from edgevision.atomic import atomic_path

    cap = cv2.VideoCapture(str(video))
    frames = []
    for k in range(count):
        cap.set(cv2.CAP_PROP_POS_FRAMES, k * FRAMES_PER_PHOTO + FRAMES_PER_PHOTO // 2)
        ok, frame = cap.read()
        if ok:
            frames.append(cv2.resize(frame, (SHEET_SIDE, SHEET_SIDE), interpolation=cv2.INTER_AREA))
    cap.release()
    if not frames:
        return None
    with atomic_path(out, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), np.hstack(frames))
    return out


def report_photos(samples, answers: Dict[str, Dict[str, dict]], general: str) -> int:
    """One line per photo and model; returns how many photos the general model got wrong."""
    wrong = 0
    for s in samples:
        _say(f"{s.file} ({s.shows}):")
        for model, by_file in answers.items():
            top = by_file.get(s.file)
            expected = s.imagenet if model == general else s.cifar10
            said = f"{top['label']} {top['score']:.0%}" if top else "no answer"
            if expected is None:
                verdict = "no right answer: not one of the 10 classes this model knows"
            else:
                verdict = ("right" if top and top["label"] == expected else "WRONG") + f" (expected {expected})"
            if model == general and not (top and top["label"] == expected):
                wrong += 1
            _say(f"  {model:<22} {said:<28} {verdict}")
    return wrong


def _video_labels(jsonl: Path, count: int) -> List[str]:
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.startswith("{")]
    return [rows[k * FRAMES_PER_PHOTO + FRAMES_PER_PHOTO // 2]["label"] for k in range(count)
            if k * FRAMES_PER_PHOTO + FRAMES_PER_PHOTO // 2 < len(rows)]


def run_video(model: str, samples, out: Path) -> Optional[Path]:
    """The video path: a clip of the photos through `edgevision classify`; the annotated video, or None."""
    clip, annotated, jsonl = out / "sample_clip.mp4", out / "annotated.mp4", out / "classify.jsonl"
    write_clip(clip, [s.path for s in samples])
    _say(f"a clip of the {len(samples)} photos, {FRAMES_PER_PHOTO} frames each: {clip}")
    with open(jsonl, "w") as f:
        result = _cli("classify", "--model", model, "--source", str(clip), "--headless", "--json", "--save",
                      str(annotated), "--max-frames", str(len(samples) * FRAMES_PER_PHOTO), "--top-k", "3", stdout=f)
    if result.returncode != 0:
        _say(f"classify failed with exit status {result.returncode}")
        return None
    labels = _video_labels(jsonl, len(samples))
    hits = sum(label == s.imagenet for label, s in zip(labels, samples))
    _say(f"on the clip: {hits}/{len(samples)} photos labelled right ({', '.join(labels)})")
    return annotated


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo-output", help="where results go (default: demo-output)")
    parser.add_argument("--no-bench", action="store_true", help="skip the benchmark")
    args = parser.parse_args(argv)

    from edgevision.bundled import CIFAR10_MODELS, DEFAULT_MODEL, list_bundled
    from edgevision.samples import sample_photos

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    samples = sample_photos()
    if not samples:
        _say("no sample photos in this installation (edgevision/samples is missing)")
        return 1
    bundled = [m.name for m in list_bundled()]
    models = [DEFAULT_MODEL] + [m for m in CIFAR10_MODELS if m in bundled]
    _say(f"{len(samples)} sample photos, models: {', '.join(models)}; results go to {out}")
    answers = {}
    for model in models:
        answers[model] = _predict(model, [s.path for s in samples])
        if answers[model] is None:
            _say(f"predict with {model} failed")
            return 1
    wrong = report_photos(samples, answers, DEFAULT_MODEL)
    _say(f"{DEFAULT_MODEL}: {len(samples) - wrong}/{len(samples)} photos labelled right")
    (out / "photos.json").write_text(json.dumps(answers, indent=2) + "\n")

    annotated = run_video(DEFAULT_MODEL, samples, out)
    if annotated is None:
        return 1
    sheet = contact_sheet(annotated, out / "frames.png", len(samples))
    if not args.no_bench:
        result = _cli("bench", *bundled, "--threads", "1", "--warmup", "10", "--runs", "100",
                      "--json", str(out / "bench.json"), "--md", str(out / "bench.md"))
        if result.returncode != 0:
            _say(f"bench failed with exit status {result.returncode}")
            return result.returncode
    _say(f"done in {time.time() - started:.0f} s. Results:")
    for path in (sheet, annotated, out / "photos.json", out / "classify.jsonl", out / "bench.md"):
        if path and Path(path).exists():
            _say(f"  {path}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
