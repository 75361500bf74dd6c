"""One recipe, several seeds: train them at once, then score every seed on the fixed held-out split.

    python -m edgevision.benchmarks.maintainer.seeds train --work runs/cnn-seeds --seeds 0 1 2 -- \\
        cnn --data cifar10/train --holdout 0.1 --val-split 0.05
    python -m edgevision.benchmarks.maintainer.seeds score --work runs/cnn-seeds --convert "--quant int8 --tta flip"

`train` starts one `edgevision train` per seed (WORK/seedN, its log beside it), all at once unless --parallel
says fewer: on a GPU the runs share it (each is small), on a CPU run one at a time. It runs on any Keras
backend (KERAS_BACKEND=jax on a GPU machine without TensorFlow). `score` needs TensorFlow: it converts each
seed's model.keras with the given `edgevision convert` options and scores the float model and the file on the
run's held-out images (`train --holdout`), which no seed, checkpoint or recipe was chosen on. It writes
WORK/seeds.json: every seed's figures, and their mean, standard deviation, minimum and maximum, the figures a
model card leads with.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence

import numpy as np

from edgevision import atomic

SUMMARY = "seeds.json"
#: The edgevision command line of the Python running this script (the console script may not be on PATH).
EDGEVISION = [sys.executable, "-m", "edgevision.cli"]
CONVERTED = "converted.tflite"


def seed_dir(work: Path, seed: int) -> Path:
    return work / f"seed{seed}"


def train_seeds(work: Path, seeds: Sequence[int], train_args: Sequence[str], parallel: int) -> int:
    """Run `edgevision train TRAIN_ARGS --seed S --out WORK/seedS` for every seed, `parallel` at a time."""
    work.mkdir(parents=True, exist_ok=True)
    pending, running, failed = list(seeds), [], []
    while pending or running:
        while pending and len(running) < parallel:
            seed = pending.pop(0)
            out = seed_dir(work, seed)
            command = [*EDGEVISION, "train", *train_args, "--seed", str(seed), "--out", str(out)]
            log = open(work / f"seed{seed}.log", "ab")
            running.append((seed, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
        seed, process, log = running.pop(0)
        if process.wait() != 0:
            failed.append(seed)
        log.close()
    for seed in failed:
        print(f"seed {seed} failed: see {work / f'seed{seed}.log'}", file=sys.stderr)
    return 1 if failed else 0


def convert_seed(run: Path, convert_args: Sequence[str]) -> Path:
    """The seed's model converted with `edgevision convert RUN CONVERT_ARGS` (once; a later call reuses it)."""
    out = run / CONVERTED
    if not out.is_file():
        command = [*EDGEVISION, "convert", str(run), *convert_args, "--out", str(out),
                   "--report", str(run / "convert-report.json")]
        subprocess.run(command, check=True)
    return out


def score_seed(run: Path, convert_args: Sequence[str]) -> dict:
    """One seed's figures: validation (float) as training scored it, and the held-out split, float and file."""
    from edgevision.benchmarks.maintainer.bundle_models import holdout_figures

    record = json.loads((run / "run.json").read_text())
    held = holdout_figures(run, convert_seed(run, convert_args))  # what the card of that file would say
    return {"seed": record["settings"]["seed"], "run": str(run), "val_accuracy_float": record.get("val_accuracy"),
            "holdout_images": held["images"], "holdout_accuracy_float": held["float"],
            "holdout_accuracy_file": held["file"], "train_seconds": record.get("train_seconds")}


def spread(values: Sequence[float]) -> dict:
    """mean, standard deviation (n - 1), min, max and n: how a figure over seeds is published."""
    x = np.asarray(values, dtype=np.float64)
    return {"n": int(len(x)), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
            "min": float(x.min()), "max": float(x.max())}


def summarize(runs: List[dict], convert_args: Sequence[str]) -> dict:
    keys = ("val_accuracy_float", "holdout_accuracy_float", "holdout_accuracy_file")
    return {"convert": list(convert_args), "seeds": runs,
            **{key: spread([r[key] for r in runs]) for key in keys if all(r[key] is not None for r in runs)}}


def score_work(work: Path, convert_args: Sequence[str]) -> dict:
    runs = sorted((p for p in work.glob("seed*") if (p / "run.json").is_file()), key=lambda p: p.name)
    complete = [p for p in runs if json.loads((p / "run.json").read_text()).get("status") == "complete"]
    if not complete:
        raise SystemExit(f"error: no complete run in {work} (expected {work}/seedN/run.json)")
    summary = summarize([score_seed(p, convert_args) for p in complete], convert_args)
    atomic.write_json(work / SUMMARY, summary)
    return summary


def table(summary: dict) -> str:
    rows = ["seed  val float  held-out float  held-out file"]
    for r in summary["seeds"]:
        rows.append(f"{r['seed']:>4}  {r['val_accuracy_float'] * 100:8.2f}  {r['holdout_accuracy_float'] * 100:14.2f}"
                    f"  {r['holdout_accuracy_file'] * 100:13.2f}")
    f = summary["holdout_accuracy_file"]
    rows.append(f"held-out, the file: mean {f['mean'] * 100:.2f} %, sd {f['std'] * 100:.2f}, "
                f"range {f['min'] * 100:.2f}-{f['max'] * 100:.2f} over {f['n']} seeds")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    t = sub.add_parser("train", help="train every seed (the edgevision train arguments follow --)")
    t.add_argument("--work", type=Path, required=True)
    t.add_argument("--seeds", type=int, nargs="+", required=True)
    t.add_argument("--parallel", type=int, default=0, help="runs at once [default: every seed]")
    t.add_argument("train_args", nargs=argparse.REMAINDER)
    s = sub.add_parser("score", help="convert every seed and score it on the held-out split")
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--convert", default="--quant int8", help="edgevision convert options, one string")
    args = p.parse_args(argv)
    if args.step == "train":
        train_args = [a for a in args.train_args if a != "--"]
        return train_seeds(args.work, args.seeds, train_args, args.parallel or len(args.seeds))
    print(table(score_work(args.work, shlex.split(args.convert))))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
