"""Put a converted model into the package as a bundled model, with a model card saying how it was made.

    python -m edgevision.benchmarks.maintainer.bundle_models --name cifar10-cnn --run runs/cifar10-cnn \
        --tflite variants/cifar10-cnn/cifar10-cnn-int8.tflite \
        --train-command "edgevision train cnn ..." --convert-command "edgevision convert ..."

The card is generated from what the run recorded (run.json) and what the converter embedded in the .tflite
(metadata: quantization, accuracy, agreement), so its numbers are the measured ones, not typed in.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Optional

from edgevision import atomic
from edgevision.bundled import BUNDLED, MODELS_DIR, build_label
from edgevision.edge_runtime.metadata import read_metadata
from edgevision.edge_runtime.model_metadata import read_model_metadata


def _pct(x) -> str:
    return f"{x * 100:.2f} %" if isinstance(x, (int, float)) else "-"


def _augmentation(aug) -> str:
    if not aug:
        return "not recorded (a run from before edgevision recorded it: random flips and 4-pixel translations)"
    parts = ["random horizontal flips"] if aug.get("flip") else []
    if aug.get("pad"):
        parts.append(f"translations of up to {aug['pad']} pixels (reflection pad, random crop)")
    if aug.get("cutout"):
        parts.append(f"cutout {aug['cutout']}x{aug['cutout']} pixels")
    return ", ".join(parts) or "none"


STEP_WORDS = {"qat": "quantization-aware training", "pruned": "pruning", "clustered": "clustering"}


def _fine_tune_lines(fine_tune) -> list:
    """One line per tfmot step that trained the shipped weights, from the settings the converter embedded."""
    if not fine_tune:
        return []
    lines = []
    for step in fine_tune.get("steps", []):
        qat = step == "qat"
        epochs = fine_tune.get("qat_epochs" if qat else "fine_tune_epochs")
        rate = fine_tune.get("qat_learning_rate" if qat else "learning_rate")
        lines.append(f"- {STEP_WORDS.get(step, step).capitalize()}: {epochs} epoch(s) on {fine_tune.get('n'):,} "
                     f"images from {fine_tune.get('source')}, batch size {fine_tune.get('batch_size')}, "
                     f"learning rate {rate:g}")
    return lines


def _bias_correction_lines(bc) -> list:
    if not bc:
        return []
    # The converter records where the correction went (before conversion, in the weights QAT started from, or
    # after pruning/clustering); files converted before it did so carry no such field and were post-training.
    where = bc.get("applied", "before conversion")
    return [f"- Bias correction: the int8 rounding of the weights is compensated {where}, in {bc.get('layers')} conv "
            f"layers (mean output shift measured on {bc.get('images')} calibration images, subtracted where the "
            "converter folds it in: the bias, or the beta of the following batch norm)"]


CPU_SHARED = "a 2-core CPU shared with other work, so this is an upper bound"

#: How a user measures a CIFAR-10 model on the official test split, which none of the card's figures use.
TEST_SPLIT_COMMAND = "edgevision evaluate {name} --data cifar10"


def yaml_lines(value, indent: int = 0) -> list:
    """Block YAML for the front matter. Scalars are written as JSON, which YAML reads as the same value, so no
    YAML library is needed to write it and no string can break the document."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines += [f"{pad}{key}:", *yaml_lines(item, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {json.dumps(item)}")
        return lines
    lines = []
    for item in value:
        # "- " then the item's block, its first line on the dash's line (the usual YAML list-of-maps shape).
        block = yaml_lines(item, indent + 2) if isinstance(item, (dict, list)) else [f"{pad}  {json.dumps(item)}"]
        lines += [f"{pad}- {block[0].lstrip()}", *block[1:]]
    return lines


def front_matter(fields: dict) -> list:
    """The YAML header a model hub reads (licence, datasets, metrics with their split), between `---` lines."""
    return ["---", *yaml_lines(fields), "---", ""]


def hub_fields(name: str, license: str, datasets: list, tags: list, dataset: dict, metrics: list) -> dict:
    """Front-matter fields in the model-index shape (one task, one dataset split, its measured metrics)."""
    return {
        "license": license.lower(),
        "library_name": "edgevision",
        "pipeline_tag": "image-classification",
        "tags": tags,
        "datasets": datasets,
        "metrics": sorted({m["type"] for m in metrics}),
        "model-index": [{"name": name, "results": [{
            "task": {"type": "image-classification", "name": "Image classification"},
            "dataset": dataset,
            "metrics": metrics,
        }]}],
    }


def cifar10_fields(name: str, run: dict, meta: dict, build: str) -> dict:
    """The front matter of a CIFAR-10 card: the validation figures the card's table gives, named by split."""
    s, m = run.get("settings", {}), meta.get("metrics", {})
    tta = (meta.get("test_time_augmentation") or {}).get("mode")
    metrics = [{"type": "accuracy", "name": "top-1, Keras float32", "value": run.get("val_accuracy")},
               *([{"type": "accuracy", "name": f"top-1, Keras float32 with {tta} TTA",
                   "value": m.get("accuracy_float")}] if tta else []),
               {"type": "accuracy", "name": f"top-1, this file ({build})", "value": m.get("accuracy")}]
    tags = ["image-classification", "tflite", "litert", meta.get("quantization") or "float32", "cifar10",
            *(meta.get("optimizations") or ()), *([f"{tta}-tta"] if tta else []), s.get("arch")]
    dataset = {"type": "cifar10", "name": "CIFAR-10", "split": "validation",
               "args": {"held_out_from": "train", "images": m.get("n") or run.get("num_val"),
                        "seed": s.get("seed")}}
    return hub_fields(name, LICENSE, ["cifar10"], [t for t in tags if t], dataset,
                      [x for x in metrics if x["value"] is not None])


def with_holdout_result(fields: dict, holdout: Optional[dict], build: str) -> dict:
    """The front matter with a second result, on the held-out split, listed first (the figure to expect)."""
    if not holdout:
        return fields
    fig, summary = holdout["figures"], holdout.get("summary")
    metrics = [*([{"type": "accuracy", "name": f"top-1, this recipe ({build}), mean over "
                   f"{summary['holdout_accuracy_file']['n']} seeds", "value": summary["holdout_accuracy_file"]["mean"]}]
                 if summary else []),
               {"type": "accuracy", "name": f"top-1, this file ({build})", "value": fig["file"]},
               {"type": "accuracy", "name": "top-1, Keras float32", "value": fig["float"]}]
    dataset = {"type": "cifar10", "name": "CIFAR-10", "split": "holdout",
               "args": {"held_out_from": "train", "images": fig["images"], "fraction": fig["fraction"],
                        "rule": "holdout-v1"}}
    result = {"task": fields["model-index"][0]["results"][0]["task"], "dataset": dataset, "metrics": metrics}
    fields["model-index"][0]["results"].insert(0, result)
    return fields


def intended_use_lines(labels) -> list:
    """What the model is for and where it fails; a user reads this before trusting an answer."""
    return [
        "## Intended use and limitations",
        "",
        f"- Use: name the main object of a small photo or video frame as one of {len(labels)} CIFAR-10 classes "
        f"({', '.join(labels)}), on a phone, a Raspberry Pi or any machine with a TFLite runtime.",
        f"- Ten CIFAR-10 classes only: every picture gets one of them, with no \"none of these\" answer. A person, "
        "a face, a document or an empty room still comes out as, say, \"cat\", often with a high score.",
        "- A classifier, not a detector: one answer per image and no boxes; with several objects it names one.",
        "- Trained on CIFAR-10's 32x32 thumbnails (centred objects that fill the frame, daylight photos): expect "
        "less on small or off-centre objects, clutter, unusual viewpoints, drawings or infrared cameras.",
        "- Not for decisions about people, or where a wrong answer is unsafe.",
        "",
    ]


def measurement_lines(name: str, run: dict, meta: dict, seeds: int) -> list:
    """How the accuracy table was measured: split, images, seeds, and how to measure the test split."""
    s, m = run.get("settings", {}), meta.get("metrics", {})
    n = m.get("n") or run.get("num_val")
    tta = (meta.get("test_time_augmentation") or {}).get("mode")
    resize = (meta.get("preprocess") or {}).get("resize", "stretch")
    seed_line = (f"- Seeds: the recipe was run with {seeds} seeds, each on its own validation split (the seed also "
                 f"draws the split); this file is seed {s.get('seed')}'s run. Picking one of several by its "
                 "validation score flatters it; the note above gives the others." if seeds > 1 else
                 f"- Seeds: one run (seed {s.get('seed')}); another seed can land a point higher or lower.")
    return [
        "## How accuracy was measured",
        "",
        f"- Split: validation, {n:,} images held out of the 50,000 CIFAR-10 training images by a stratified split "
        f"(fraction {s.get('val_split')}, seed {s.get('seed')}). The model never trained on them, but they were "
        "seen while choosing the recipe, and they are not the official test split." if isinstance(n, int) else
        "- Split: validation (held out of the CIFAR-10 training images); size not recorded",
        f"- Metric: top-1 accuracy, every image once, the whole image resized to the input ({resize})" +
        (f", {tta} test-time augmentation inside the file" if tta else "") + "; a tie goes to the lower class index.",
        seed_line,
        "- No figure measured for this card comes from the official CIFAR-10 test split (10,000 images). Measure it "
        "with "
        f"`{TEST_SPLIT_COMMAND.format(name=name)}` (Keras downloads it once: the train extra); expect it a little "
        "below the validation figure.",
        "",
    ]


#: A microcontroller model's budgets (issue 21): flash for the file, RAM for TensorFlow Lite Micro's arena.
MICRO_FLASH, MICRO_ARENA = 160 * 1024, 256 * 1024


def micro_arena_used(interpreter) -> int:
    """The bytes TensorFlow Lite Micro's recording allocator says the model took of its arena. It only prints
    the figure (to the process's stderr, from C++), so stderr is caught at the descriptor for that one call."""
    import os
    import re
    import tempfile

    with tempfile.TemporaryFile() as caught:
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        text = caught.read().decode(errors="replace")
    found = re.search(r"Arena allocation total (\d+) bytes", text)
    if not found:
        raise RuntimeError(f"TensorFlow Lite Micro printed no arena total: {text[:200]!r}")
    return int(found.group(1))


def micro_figures(data: bytes, images, labels) -> dict:
    """TensorFlow Lite Micro's interpreter on the file, in the arena budget: the arena it measured, and its
    top-1 on `images` (uint8 RGB at the input size) against the true `labels` and against LiteRT's."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    from tflite_micro.python.tflite_micro import runtime

    micro = runtime.Interpreter.from_bytes(data, arena_size=MICRO_ARENA)
    litert = Interpreter(model_content=data, num_threads=1)
    litert.allocate_tensors()
    inp, out = litert.get_input_details()[0]["index"], litert.get_output_details()[0]["index"]
    micro_top1, litert_top1, seconds = [], [], {"micro": [], "litert": []}
    for image in images:
        micro.set_input(image[None], 0)
        seconds["micro"].append(_timed(micro.invoke))
        micro_top1.append(int(np.argmax(micro.get_output(0))))
        litert.set_tensor(inp, image[None])
        seconds["litert"].append(_timed(litert.invoke))
        litert_top1.append(int(np.argmax(litert.get_tensor(out))))
    micro_top1, litert_top1 = np.array(micro_top1), np.array(litert_top1)
    p50 = {f"p50_ms_{k}": float(np.median(v) * 1000) for k, v in seconds.items()}
    ops = sorted({op["op_name"] for op in litert._get_ops_details()} - {"DELEGATE"})
    return {"operators": ops, "flash_bytes": len(data), "arena_bytes": micro_arena_used(micro), "arena_budget": MICRO_ARENA,
            "images": len(images), "accuracy_micro": float(np.mean(micro_top1 == labels)),
            "accuracy_litert": float(np.mean(litert_top1 == labels)),
            "agreement": float(np.mean(micro_top1 == litert_top1)), **p50}


def _timed(call) -> float:
    import time

    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def micro_section(run_dir: Path, data: bytes) -> list:
    """`micro_lines` for the file, measured on the run's validation split (redrawn as training drew it)."""
    from edgevision.train.data import validation_arrays

    images, labels = validation_arrays(run_dir)
    figures = micro_figures(data, images, labels)
    atomic.write_json(run_dir / "micro.json", figures)
    return micro_lines(figures)


def micro_lines(fig: dict) -> list:
    """The card's microcontroller section, from `micro_figures` (measured, not typed in)."""
    return [
        "## On a microcontroller (TensorFlow Lite Micro)",
        "",
        f"- Flash: the file is {fig['flash_bytes']:,} bytes ({fig['flash_bytes'] / 1024:.1f} KiB; the budget is "
        f"{MICRO_FLASH // 1024} KiB), weights, graph and metadata together",
        f"- RAM: TensorFlow Lite Micro's arena measured {fig['arena_bytes']:,} bytes "
        f"({fig['arena_bytes'] / 1024:.1f} KiB) for one invoke, opened in a {fig['arena_budget'] // 1024} KiB "
        "arena; a firmware adds its own stack, the input image and the interpreter object",
        f"- The same file in TensorFlow Lite Micro's interpreter (its reference kernels, as on a Cortex-M without "
        f"CMSIS-NN) and in LiteRT, on the {fig['images']:,} validation images: top-1 {_pct(fig['accuracy_micro'])} "
        f"and {_pct(fig['accuracy_litert'])}, the same answer on {_pct(fig['agreement'])} of them",
        f"- Operators: {', '.join(fig['operators'])}, all of them TensorFlow Lite Micro kernels; one image per "
        "invoke (no TTA, whose batch of two TensorFlow Lite Micro cannot prepare)",
        f"- Latency, one image per invoke on this machine (p50 over the same images, one thread): LiteRT "
        f"{fig['p50_ms_litert']:.2f} ms; TensorFlow Lite Micro's reference kernels {fig['p50_ms_micro']:.1f} ms, "
        "which says nothing of a microcontroller's (its clock and CMSIS-NN kernels decide that)",
        "",
    ]


def holdout_figures(run_dir: Path, tflite: Path) -> dict:
    """This run's model (float) and `tflite` scored on the run's fixed held-out split (`train --holdout`)."""
    from edgevision.edge_runtime.evaluation import evaluate_arrays
    from edgevision.edge_runtime.inference import load_predictor
    from edgevision.train.data import holdout_arrays, recorded_split

    pixels, labels = holdout_arrays(run_dir)
    scores = {kind: evaluate_arrays(load_predictor(ref), pixels, labels).accuracy
              for kind, ref in (("float", run_dir), ("file", tflite))}
    return {"images": int(len(labels)), "fraction": recorded_split(run_dir)[1].holdout, **scores}


def _spread_text(f: dict) -> str:
    return (f"{_pct(f['mean'])} (sd {f['std'] * 100:.2f}, {f['min'] * 100:.2f}-{f['max'] * 100:.2f}) over "
            f"{f['n']} seed{'s' if f['n'] > 1 else ''}")


def holdout_lines(fig: dict, seed: int, build: str, summary: Optional[dict] = None) -> list:
    """The card's lead: the held-out split, with the mean over seeds first when `summary` (seeds.json) is given."""
    over_seeds = [f"| this file's recipe ({build}), every seed | {_spread_text(summary['holdout_accuracy_file'])} |",
                  f"| Keras float32, every seed | {_spread_text(summary['holdout_accuracy_float'])} |"] if summary else []
    return [
        "## What to expect (the fixed held-out split)",
        "",
        f"{fig['images']:,} images: a fixed {fig['fraction']:g} of each class of the training images (those whose "
        "paths hash lowest), set aside before any split was drawn. No run trained or validated on them, and no "
        "recipe, seed or checkpoint was chosen on them; measure them again with `edgevision evaluate MODEL --data "
        f"DIR --holdout {fig['fraction']:g}` on the same folder.",
        "",
        "| model | top-1 |",
        "|---|---|",
        *over_seeds,
        f"| this file (seed {seed}) | {_pct(fig['file'])} |",
        f"| Keras float32 (seed {seed}) | {_pct(fig['float'])} |",
        "",
    ]


def model_card(name: str, run: dict, meta: dict, tflite: Path, train_cmd: str, convert_cmd: str,
               hardware: str = CPU_SHARED, note: str = "", seeds: int = 1, sections: tuple = (),
               holdout: Optional[dict] = None) -> str:
    """The card's text. `sections`: more lines (e.g. `micro_lines`) before how accuracy was measured. `note`: what the run's files cannot say (e.g. that this run is the better of two seeds),
    printed under the accuracy table so nobody reads the figure without it. `seeds`: how many runs of the recipe
    there were, of which this is one. `holdout`: {"figures": holdout_figures(...), "summary": seeds.json or None},
    which the card then leads with."""
    s = run.get("settings", {})
    m = meta.get("metrics", {})
    data = tflite.read_bytes()
    tta = meta.get("test_time_augmentation") or {}
    build = _build_text(meta)
    labels = list(read_model_metadata(data).labels or ())
    lines = [
        *front_matter(with_holdout_result(cifar10_fields(name, run, meta, build), holdout, build)),
        f"# {name}",
        "",
        f"A TensorFlow Lite image classifier ({build}) for the {len(labels)} "
        f"CIFAR-10 classes, bundled with edgevision. Labels and preprocessing are inside the file.",
        "",
        *intended_use_lines(labels),
        "## How it was made",
        "",
        f"- Training command: `{train_cmd}`",
        f"- Conversion command: `{convert_cmd}`",
        f"- Architecture: {s.get('arch')}" + (f" (input {s.get('input_size')}, alpha {s.get('alpha')}, weights {s.get('weights')})"
                                               if s.get("arch") == "mobilenetv2" else ""),
        _data_line(run),
        f"- Epochs: {s.get('epochs')}, batch size {s.get('batch_size')}, seed {s.get('seed')}, "
        f"precision {run.get('precision_policy')}",
        f"- Augmentation: {_augmentation(run.get('augmentation'))}",
        *_teacher_lines(s),
        *_fine_tune_lines(meta.get("fine_tune")),
        *_bias_correction_lines(meta.get("bias_correction")),
        *([f"- Test-time augmentation: {tta['mode']}, inside the graph: each invoke runs {tta.get('views')} views "
           f"({tta.get('output')}), so {tta.get('views')}x the compute of the plain model"] if tta else []),
        f"- Training time: {run.get('train_seconds', 0) / 60:.1f} min on {run.get('machine')} ({hardware})",
        f"- Parameters: {run.get('parameters'):,}" if run.get("parameters") else "- Parameters: -",
        f"- Versions: edgevision {run.get('edgevision')}, Keras {run.get('keras')} ({run.get('backend')} backend), "
        f"TensorFlow {meta.get('producer', {}).get('tensorflow')}",
        "",
        *(holdout_lines(holdout["figures"], s.get("seed"), build, holdout.get("summary")) if holdout else []),
        "## Accuracy (validation split: images the model never trained on)",
        "",
        "| model | top-1 |",
        "|---|---|",
        f"| Keras float32 | {_pct(run.get('val_accuracy'))} |",
        *([f"| Keras float32 with {tta['mode']} TTA | {_pct(m.get('accuracy_float'))} |"] if tta else []),
        f"| this file ({build}) | {_pct(m.get('accuracy'))} |",
        "",
        f"Top-1 agreement between the Keras model{' with TTA' if tta else ''} and this file: "
        f"{_pct(m.get('agreement'))}.",
        *(["", note] if note else []),
        "",
        *sections,
        *measurement_lines(name, run, meta, seeds),
        *file_lines(data),
    ]
    return "\n".join(lines)


def _teacher_lines(settings: dict) -> list:
    if not settings.get("teacher"):
        return []
    return [f"- Distilled from: `{Path(settings['teacher']).name}` (knowledge distillation: each training target is "
            f"{settings.get('distill_weight')} of its probabilities for the augmented image, the one-hot label the rest)"]


def _data_line(run: dict) -> str:
    """What the run trained on and what it kept back (validation, and a held-out split when there is one)."""
    s = run.get("settings", {})
    held = f", after a fixed {s['holdout']:g} of each class was set aside (the held-out split)" if s.get("holdout") else ""
    return (f"- Data: {run.get('data_source', {}).get('kind')} `{Path(str(s.get('data'))).name}`: the 50,000 CIFAR-10 "
            f"training images; {run.get('num_train')} for training, {run.get('num_val')} held out for validation "
            f"(stratified split, fraction {s.get('val_split')}, seed {s.get('seed')}){held}")


def _build_text(meta: dict) -> str:
    """"int8, flip TTA": what the converter made, in words."""
    tta = meta.get("test_time_augmentation") or {}
    extra = build_label(meta.get("optimizations") or (), tta.get("mode"))
    return ", ".join(filter(None, [meta.get("quantization") or "-", extra]))


FILE_SECTION = "## The file"
#: Whose weights each bundled model carries, and under what licence (the card and the file's metadata say it).
AUTHOR, LICENSE = "edgevision (trained by `edgevision train`)", "Apache-2.0"


def file_lines(data: bytes) -> list:
    """The card's last section, from what the file says about itself."""
    meta = read_model_metadata(data)
    doc = meta.document
    in_graph = doc.get("normalization_in_graph")
    h, w = meta.input_size
    takes = (f"{h}x{w} {meta.color_order} pixels as uint8 (0-255); the graph normalises them with mean "
             f"{in_graph['mean']}, std {in_graph['std']} (pixel units)" if in_graph else
             f"{h}x{w} {meta.color_order}, mean {list(meta.mean)}, std {list(meta.std)} (pixel units)")
    return [
        FILE_SECTION,
        "",
        f"- Size: {len(data):,} bytes; SHA-256 `{hashlib.sha256(data).hexdigest()}`",
        f"- Input: {takes}; resize `{meta.resize}`; tensor types {doc.get('io')}",
        "- Metadata: standard TFLite metadata (`TFLITE_METADATA`: name, licence, colour space, normalisation, "
        "the labels as a TENSOR_AXIS_LABELS file), read by MediaPipe Tasks, the TFLite Task Library and Android "
        "Studio; edgevision's own document holds what that schema cannot say",
        f"- Licence: {meta.license or '-'}; author: {meta.author or '-'}",
        f"- Labels: {', '.join(meta.labels or ())}",
        f"- Bundled on {dt.date.today().isoformat()}",
        "",
    ]


def with_credits(data: bytes, name: str) -> bytes:
    """The file with the bundled model's name, author and licence in its metadata."""
    from dataclasses import replace

    from edgevision.convert.metadata_writer import embed

    meta = read_model_metadata(data)
    return embed(data, replace(meta, name=name, author=AUTHOR, license=LICENSE))


def upgrade_bundled(name: str) -> Path:
    """Rewrite a bundled file to the portable interface with standard metadata (exact: no retraining), and
    the card's file section with it."""
    from edgevision.convert.interface import upgrade

    target = MODELS_DIR / BUNDLED[name]
    atomic.write_bytes(target, upgrade(target.read_bytes(), name, AUTHOR, LICENSE))
    card = target.with_suffix(".md")
    text = card.read_text()
    head = text[: text.index(FILE_SECTION)] if FILE_SECTION in text else text + "\n"
    atomic.write_text(card, head + "\n".join(file_lines(target.read_bytes())))
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, choices=sorted(BUNDLED))
    p.add_argument("--upgrade", action="store_true",
                   help="rewrite the bundled file to the portable interface and standard metadata, nothing else")
    p.add_argument("--run", type=Path, help="the training run directory")
    p.add_argument("--tflite", type=Path, help="the converted model to bundle")
    p.add_argument("--train-command")
    p.add_argument("--convert-command")
    p.add_argument("--hardware", default=CPU_SHARED, help="what the model was trained on, in words")
    p.add_argument("--note", default="", help="a paragraph for the accuracy section, e.g. how this run was chosen")
    p.add_argument("--seeds", type=int, default=1, help="how many runs (seeds) of the recipe there were")
    p.add_argument("--seed-summary", type=Path, default=None,
                   help="seeds.json of benchmarks/maintainer/seeds.py score: the card leads with its held-out mean")
    p.add_argument("--micro", action="store_true",
                   help="a microcontroller model: measure it in TensorFlow Lite Micro on the run's validation "
                        "split (arena, flash, agreement with LiteRT) for the card")
    args = p.parse_args(argv)
    if args.upgrade:
        print(f"upgraded {upgrade_bundled(args.name)}")
        return 0
    if not (args.run and args.tflite and args.train_command and args.convert_command):
        p.error("--run, --tflite, --train-command and --convert-command are needed to bundle a new model")
    data = args.tflite.read_bytes()
    meta = read_metadata(data)
    if not meta:
        print(f"error: {args.tflite} has no edgevision metadata; convert it with `edgevision convert`", file=sys.stderr)
        return 1
    run = json.loads((args.run / "run.json").read_text())
    target = MODELS_DIR / BUNDLED[args.name]
    data = with_credits(data, args.name)
    atomic.write_bytes(target, data)
    sections = tuple(micro_section(args.run, data)) if args.micro else ()
    holdout = None
    if run.get("data_source", {}).get("holdout"):
        holdout = {"figures": holdout_figures(args.run, target),
                   "summary": json.loads(args.seed_summary.read_text()) if args.seed_summary else None}
        atomic.write_json(args.run / "holdout.json", holdout["figures"])
    # The card describes the file as bundled (with the credits just written), not the converter's output.
    card = model_card(args.name, run, meta, target, args.train_command, args.convert_command,
                      args.hardware, args.note, args.seeds, sections, holdout)
    atomic.write_text(target.with_suffix(".md"), card)
    print(f"bundled {target} ({len(data):,} bytes) and {target.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
