"""Two .tflite files of one model on a run's validation split: top-1 of each, agreement, largest score change.

    python -m edgevision.benchmarks.maintainer.compare_files OLD.tflite NEW.tflite --data cifar10/train --seed 1

For a rewrite that should change nothing (a new interface, new metadata), this shows that it did not. The
split is drawn as `edgevision train` drew it (train/data.py: the folder, --val-split, --seed).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def compare(old: str, new: str, data: str, seed: int, fraction: float, batch: int = 256) -> dict:
    from edgevision.edge_runtime.classifier import Classifier
    from edgevision.train.data import SplitSpec, draw_split

    a, b = Classifier(old, trusted=True), Classifier(new, trusted=True)
    part = draw_split(SplitSpec(data=data, val_fraction=fraction, seed=seed), a.preprocess, lazy=True).val
    hits_a = hits_b = agree = 0
    diff = 0.0
    for start in range(0, len(part), batch):
        index = np.arange(start, min(start + batch, len(part)))
        for pixels, truth in zip(part.pixels(index), part.labels[index]):
            sa, sb = a.scores(pixels, color_order="RGB"), b.scores(pixels, color_order="RGB")
            diff = max(diff, float(np.abs(sa - sb).max()))
            hits_a += int(sa.argmax() == truth)
            hits_b += int(sb.argmax() == truth)
            agree += int(sa.argmax() == sb.argmax())
    n = len(part)
    return {"n": n, "top1_old": hits_a / n, "top1_new": hits_b / n, "agreement": agree / n, "max_score_diff": diff}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--data", required=True, help="the image folder the run trained on")
    p.add_argument("--seed", type=int, default=0, help="the run's --seed (it draws the split)")
    p.add_argument("--val-split", type=float, default=0.1)
    args = p.parse_args(argv)
    r = compare(args.old, args.new, args.data, args.seed, args.val_split)
    print(f"validation split (seed {args.seed}, n={r['n']}): top-1 {r['top1_old']:.4f} -> {r['top1_new']:.4f}, "
          f"top-1 agreement {r['agreement']:.4f}, largest score change {r['max_score_diff']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
