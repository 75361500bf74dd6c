"""Build, measure and bundle `imagenet-mobilenetv2`: MobileNetV2 1.0/224 with Keras' ImageNet weights, full int8.

    KERAS_HOME=/tmp/keras python -m edgevision.benchmarks.maintainer.imagenet_model \
        --samples ../shared/data/imagenet-samples --labels ../shared/models/reference/imagenet_labels.txt \
        --reference ../shared/models/reference/mobilenet_v2_1.0_224_quant.tflite --work runs/imagenet [--bundle]

1. The source: `keras.applications.MobileNetV2(weights="imagenet")` saved as `model.keras`, with `labels.txt`
   (the 1000 class names, from a 1001-line ImageNet labels file with "background" first) and `preprocess.json`.
2. A seeded split of the sample photos (`<synset>_<class>.JPEG`): calibration images for int8 (each with its
   mirror image, which doubles the views int8's ranges are measured on), evaluation images in one folder per
   class. They never overlap.
3. The resize mode (stretch or centre crop) is the one the float model scores better with on the calibration
   half, so the evaluation half judges the choice without having made it.
4. The int8 recipe (bias correction on or off, mirror images as extra calibration views or not) is chosen by
   two-fold cross-validation inside the calibration half: calibrate on one half of it, score the int8 file on
   the other, and swap. Ties keep convert's defaults. The evaluation half is not looked at.
5. `edgevision convert ... --quant int8 --calib` (default uint8 interface), `edgevision evaluate` of Google's
   quantized MobileNetV2 on the same images, and one `edgevision bench` run of both files.
6. `--bundle` copies the file into edgevision/models with its credits and writes the model card from what was
   measured (summary.json in the work folder has every figure).

Every step is an edgevision command run in a child process, so the figures are what a user would get.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

NAME = "imagenet-mobilenetv2"
INPUT = 224
MEAN = STD = 127.5  # MobileNetV2's ImageNet weights take pixels scaled to [-1, 1]
CALIB_N, SEED = 200, 0
#: The two class names that WordNet's first lemma gives twice; their synsets tell them apart (the sample files
#: are named `<synset>_<class>`, so their index comes from the synset, not the name).
DISAMBIGUATED = {134: "crane (bird)", 517: "crane (machine)", 639: "tank suit"}
SYNSET_INDEX = {"n02012849": 134, "n03126707": 517, "n03710637": 638, "n03710721": 639}
AUTHOR = "Google (MobileNetV2 ImageNet weights, Keras Applications); converted to int8 by edgevision"
LICENSE = "Apache-2.0 (the weights); ImageNet's terms apply to the data they were trained on"
DESCRIPTION = ("MobileNetV2 1.0/224 trained on ImageNet: names the main object of a photo as one of 1000 ImageNet "
               "classes. It is a classifier, not a detector: one answer per image, no boxes.")


def class_names(imagenet_labels: Path) -> List[str]:
    """The 1000 short names in Keras' output order: the first synonym of each line after 'background'."""
    lines = [line.strip() for line in imagenet_labels.read_text().splitlines() if line.strip()]
    if len(lines) != 1001 or lines[0].lower() != "background":
        raise SystemExit(f"{imagenet_labels}: expected 1001 lines with 'background' first, got {len(lines)}")
    names = [line.split(",")[0].strip() for line in lines[1:]]
    for i, name in DISAMBIGUATED.items():
        names[i] = name
    if len(set(names)) != len(names):
        raise SystemExit(f"{imagenet_labels}: class names are not unique after disambiguation")
    return names


def sample_index(path: Path, names: Sequence[str], lookup: Dict[str, List[int]]) -> int:
    """The class index of `<synset>_<class>.JPEG`: by name, or by synset where the name is ambiguous."""
    synset, _, cls = path.stem.partition("_")
    if synset in SYNSET_INDEX:
        return SYNSET_INDEX[synset]
    found = sorted(set(lookup.get(cls, [])))
    if not found or len(found) != 1:
        raise SystemExit(f"{path.name}: class {cls!r} matches {len(found or [])} of the 1000 names")
    return found[0]


def _name_lookup(lines_1001: List[str]) -> Dict[str, List[int]]:
    """Every synonym of every class (underscored; case kept: 'Cardigan' the corgi, 'cardigan' the sweater) ->
    class indices, to read the sample file names. A first synonym wins over another class's later synonym."""
    out: Dict[str, List[int]] = {}
    for rank in (0, 1):  # first synonyms, then the others where no first synonym has the name
        for i, line in enumerate(lines_1001[1:]):
            syns = [x.strip().replace(" ", "_") for x in line.split(",")]
            for key in (syns[:1] if rank == 0 else syns[1:]):
                if rank == 0 or key not in first:
                    out.setdefault(key, []).append(i)
        first = dict(out)
    return out


def split_samples(samples: Path, labels_file: Path, work: Path, names: Sequence[str]) -> dict:
    """Seeded split into work/calib (flat) and work/eval/<class>/ (symlinks, so nothing is copied)."""
    import numpy as np

    files = sorted(p for p in samples.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    lookup = _name_lookup([line.strip() for line in labels_file.read_text().splitlines() if line.strip()])
    index = [sample_index(p, names, lookup) for p in files]
    # ImageNet's class order is its synsets' order, so reading the names right gives increasing indices.
    if index != sorted(set(index)):
        raise SystemExit(f"{samples}: the class names do not map one to one onto the classes in synset order")
    order = np.random.default_rng(SEED).permutation(len(files))
    calib, evaluation = [files[i] for i in order[:CALIB_N]], [files[i] for i in order[CALIB_N:]]
    for folder in ("calib", "calib-labelled", "eval"):
        _fresh(work / folder)
    for part, folder in ((calib, "calib-labelled"), (evaluation, "eval")):
        for p in part:
            cls = work / folder / _folder_name(names[sample_index(p, names, lookup)])
            cls.mkdir(exist_ok=True)
            (cls / p.name).symlink_to(p.resolve())
    for p in calib:
        (work / "calib" / p.name).symlink_to(p.resolve())
        mirror(p, work / "calib" / f"mirror_{p.stem}.png")
    return {"seed": SEED, "calibration": len(calib), "evaluation": len(evaluation), "from": str(samples)}


def mirror(photo: Path, out: Path) -> None:
    """The photo mirrored, lossless: twice the calibration views of the same photos, none from the evaluation half."""
    import cv2

    from edgevision.edge_runtime.images import read_image

    cv2.imwrite(str(out), read_image(photo)[:, ::-1])


def _folder_name(label: str) -> str:
    # The evaluation rule matches folders to labels case-insensitively with '_' for ' '; '/' cannot be a name.
    return label.replace("/", "_")


def _fresh(folder: Path) -> None:
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def build_source(work: Path, names: Sequence[str], resize: str) -> Path:
    """model.keras + labels.txt + preprocess.json: a source `edgevision convert` takes as it is."""
    from edgevision.native_log import quiet_native_stderr

    with quiet_native_stderr():
        import keras

        model = keras.applications.MobileNetV2(input_shape=(INPUT, INPUT, 3), alpha=1.0, weights="imagenet")
    src = work / "source"
    src.mkdir(parents=True, exist_ok=True)
    if not (src / "model.keras").is_file():
        model.save(src / "model.keras")
    (src / "labels.txt").write_text("\n".join(names) + "\n")
    write_preprocess(src, resize)
    return src / "model.keras"


def write_preprocess(src: Path, resize: str) -> None:
    from edgevision.edge_runtime.preprocess import PreprocessConfig

    PreprocessConfig(input_size=(INPUT, INPUT), color_order="RGB", mean=(MEAN,) * 3, std=(STD,) * 3,
                     resize=resize).save(src / "preprocess.json")


def ev(*args: str, capture: bool = False) -> str:
    """Run an edgevision command as a user would; its stdout when `capture`."""
    print("+ edgevision " + " ".join(args), file=sys.stderr, flush=True)
    out = subprocess.run([sys.executable, "-m", "edgevision.cli", *args], check=True, text=True,
                         stdout=subprocess.PIPE if capture else None)
    return out.stdout if capture else ""


def top1(model: str, data: Path, labels: Path = None, preprocess: Path = None) -> dict:
    """`edgevision evaluate`'s accuracy and image count."""
    extra = [*(["--labels", str(labels)] if labels else []), *(["--preprocess", str(preprocess)] if preprocess else [])]
    doc = json.loads(ev("evaluate", model, "--data", str(data), "--json", "--exist-ok", "--out", str(data.parent / "evaluate-tmp"),
                        *extra, capture=True))
    return {"accuracy": doc["accuracy"], "n": doc["n"]}


def choose_resize(keras_file: Path, work: Path) -> dict:
    """Float top-1 on the calibration half for each resize mode; the better one is used (ties: centre crop,
    which keeps objects' shape as Google's own evaluation crop does)."""
    scores = {}
    for mode in ("center_crop", "stretch"):
        write_preprocess(keras_file.parent, mode)
        scores[mode] = top1(str(keras_file), work / "calib-labelled")
    best = max(scores, key=lambda m: (scores[m]["accuracy"], m == "center_crop"))
    write_preprocess(keras_file.parent, best)
    return {"chosen": best, "float_top1_on_calibration_half": scores}


#: The int8 recipes cross-validated on the calibration half: (bias correction, mirror views). The first is
#: convert's default and wins ties.
RECIPES = ((True, True), (True, False), (False, True), (False, False))


def recipe_args(bias_correction: bool) -> List[str]:
    return [] if bias_correction else ["--no-bias-correction"]


def calib_folder(photos: Sequence[Path], folder: Path, mirrors: bool) -> Path:
    """A flat calibration folder of `photos` (links), with their mirror images when `mirrors`."""
    _fresh(folder)
    for p in photos:
        (folder / p.name).symlink_to(p.resolve())
        if mirrors:
            mirror(p, folder / f"mirror_{p.stem}.png")
    return folder


def labelled_folder(photos: Sequence[Path], folder: Path) -> Path:
    """One subfolder per class (links), the layout `--eval` reads; the class is the photo's folder in calib-labelled."""
    _fresh(folder)
    for p in photos:
        (folder / p.parent.name).mkdir(exist_ok=True)
        (folder / p.parent.name / p.name).symlink_to(p.resolve())
    return folder


def choose_recipe(keras_file: Path, work: Path) -> dict:
    """Int8 top-1 of each recipe, two-fold cross-validated inside the calibration half (see the module doc)."""
    import numpy as np

    photos = sorted((work / "calib-labelled").glob("*/*"))
    order = np.random.default_rng(SEED + 1).permutation(len(photos))
    folds = [[photos[i] for i in order[: len(photos) // 2]], [photos[i] for i in order[len(photos) // 2:]]]
    scores = {}
    for bias, mirrors in RECIPES:
        key = f"bias_correction={'on' if bias else 'off'}, mirrors={'yes' if mirrors else 'no'}"
        correct = total = 0
        for k in (0, 1):
            cv = work / "cv" / f"fold{k}"
            calib = calib_folder(folds[k], cv / ("calib-mirrors" if mirrors else "calib"), mirrors)
            held = labelled_folder(folds[1 - k], cv / "eval")
            variant = _convert_variant(keras_file, calib, held, cv / "int8.tflite", cv / "report.json",
                                       recipe_args(bias))
            correct += round(variant["accuracy"] * variant["eval_n"])
            total += variant["eval_n"]
        scores[key] = {"bias_correction": bias, "mirrors": mirrors, "accuracy": correct / total, "n": total}
    best = max(scores, key=lambda k: scores[k]["accuracy"])  # max keeps the first of equals: the default
    return {"chosen": best, "int8_top1_cross_validated": scores}


def _convert_variant(keras_file: Path, calib: Path, eval_dir: Path, out: Path, report: Path, extra: List[str]) -> dict:
    ev("convert", str(keras_file), "--quant", "int8", "--calib", str(calib), "--calib-samples", str(2 * CALIB_N),
       "--eval", str(eval_dir), "--report", str(report), "--out", str(out), *extra)
    return json.loads(report.read_text())["variants"][0]


def convert(keras_file: Path, work: Path, recipe: dict) -> dict:
    """The int8 file (default uint8 interface) with the chosen recipe, calibrated on the calibration half, compared
    with the float Keras model on the evaluation half by convert itself."""
    chosen = recipe["int8_top1_cross_validated"][recipe["chosen"]]
    calib = work / "calib" if chosen["mirrors"] else labelled_folder_flat(work)
    variant = _convert_variant(keras_file, calib, work / "eval", work / f"{NAME}-int8.tflite",
                               work / "convert-report.json", recipe_args(chosen["bias_correction"]))
    out = work / f"{NAME}-int8.tflite"
    keep = ("bytes", "gzip_bytes", "accuracy", "accuracy_float", "accuracy_delta", "agreement", "eval_n",
            "input_type", "output_type", "convert_seconds")
    return {"path": str(out), **{k: variant.get(k) for k in keep}}


def labelled_folder_flat(work: Path) -> Path:
    """The calibration half without mirror images, flat."""
    return calib_folder(sorted((work / "calib-labelled").glob("*/*")), work / "calib-plain", mirrors=False)


def reference(google: Path, work: Path, labels: Path, resize: str) -> dict:
    """Google's quantized MobileNetV2 on the same evaluation images: as edgevision reads the file (its metadata
    names no resize, so stretch), and with the resize chosen for ours, so neither side is handicapped."""
    as_read = top1(str(google), work / "eval", labels=labels)
    pre = work / "reference-preprocess.json"
    from edgevision.edge_runtime.preprocess import PreprocessConfig

    PreprocessConfig(input_size=(INPUT, INPUT), mean=(MEAN,) * 3, std=(STD,) * 3, resize=resize).save(pre)
    same = top1(str(google), work / "eval", labels=labels, preprocess=pre)
    return {"path": str(google), "bytes": google.stat().st_size, "as_read": as_read, f"with_{resize}": same}


def bench(paths: Sequence[str], work: Path) -> dict:
    """Both int8 files in one `edgevision bench` run (one process each, same machine, same settings)."""
    ev("bench", *paths, "--threads", "1", "--warmup", "20", "--runs", "200", "--json", str(work / "bench.json"),
       "--md", str(work / "bench.md"))
    rows = json.loads((work / "bench.json").read_text())["results"]
    return {r["model"]: {"p50_ms": r["latency_ms"]["p50"], "mean_ms": r["latency_ms"]["mean"], "threads": r["threads"]}
            for r in rows}


def check_targets(summary: dict) -> List[str]:
    """The issue's targets, each as a line saying whether it is met."""
    c, ref = summary["int8"], summary["reference"]
    google = max(v["accuracy"] for k, v in ref.items() if isinstance(v, dict) and "accuracy" in v)
    lines = [
        (round(c["accuracy_float"] - c["accuracy"], 9) <= 0.01, f"int8 {c['accuracy']:.2%} within 1 point of float "
         f"{c['accuracy_float']:.2%}"),
        (round(c["accuracy"] - google, 9) >= 0, f"int8 {c['accuracy']:.2%} not below Google's {google:.2%}"),
        (c["bytes"] <= 4.5e6, f"file {c['bytes'] / 1e6:.2f} MB <= 4.5 MB"),
    ]
    return [("met: " if ok else "NOT MET: ") + text for ok, text in lines]


def bundle(summary: dict, command: str) -> Path:
    """The int8 file into edgevision/models with its credits, and its card from the measured figures."""
    from dataclasses import replace

    from edgevision import atomic
    from edgevision.bundled import BUNDLED, MODELS_DIR
    from edgevision.convert.metadata_writer import embed
    from edgevision.edge_runtime.model_metadata import read_model_metadata

    data = Path(summary["int8"]["path"]).read_bytes()
    meta = read_model_metadata(data)
    data = embed(data, replace(meta, name=NAME, description=DESCRIPTION, author=AUTHOR, license=LICENSE))
    target = MODELS_DIR / BUNDLED[NAME]
    atomic.write_bytes(target, data)
    atomic.write_text(target.with_suffix(".md"), card_text(summary, command, data))
    return target


def card_text(summary: dict, command: str, data: bytes) -> str:
    """The whole card: front matter, the measured sections, and the file's own description."""
    from edgevision.benchmarks.maintainer.bundle_models import file_lines, front_matter

    # 1000 names would bury the card: it says where they are instead.
    lines = [f"- Labels: the 1000 ImageNet class names (tench, goldfish, great white shark, …), in the file as "
             "labels.txt" if line.startswith("- Labels:") else line for line in file_lines(data)]
    return "\n".join(front_matter(hub_header(summary)) + card_lines(summary, command) + lines)


def hub_header(s: dict) -> dict:
    """The front matter a model hub reads: licence, dataset, and the two figures with the photos they came from."""
    from edgevision.benchmarks.maintainer.bundle_models import hub_fields

    c, split = s["int8"], s["split"]
    dataset = {"type": "imagenet-1k", "name": "ImageNet (ILSVRC-2012) sample photos", "split": "sample",
               "args": {"images": c["eval_n"], "per_class": 1, "calibration_images_excluded": split["calibration"],
                        "seed": split["seed"]}}
    metrics = [{"type": "accuracy", "name": "top-1, Keras float32", "value": c["accuracy_float"]},
               {"type": "accuracy", "name": "top-1, this file (int8)", "value": c["accuracy"]}]
    return hub_fields(NAME, "Apache-2.0", ["imagenet-1k"], ["image-classification", "tflite", "litert", "int8",
                      "imagenet", "mobilenetv2"], dataset, metrics)


def _pct(x) -> str:
    return f"{x * 100:.2f} %"


def card_lines(s: dict, command: str) -> List[str]:
    split, r = s["split"], s["resize"]
    modes = ", ".join(f"{m}: {_pct(v['accuracy'])}" for m, v in r["float_top1_on_calibration_half"].items())
    rec = s["recipe"]
    recipes = "; ".join(f"{k}: {_pct(v['accuracy'])}" for k, v in rec["int8_top1_cross_validated"].items())
    views = " and their mirror images" if rec["int8_top1_cross_validated"][rec["chosen"]]["mirrors"] else ""
    return [
        f"# {NAME}", "",
        "A general image classifier: MobileNetV2 1.0/224 with ImageNet weights, full int8, bundled with edgevision. "
        "It names the main object of a photo as one of the 1000 ImageNet classes. Labels and preprocessing are "
        "inside the file.", "",
        "## Intended use and limitations", "",
        "- Use: name the main object of a photo (or a camera frame) on a phone, a Raspberry Pi or any machine with a "
        "TFLite runtime, when its 1000 classes cover what you point it at.",
        "- 1000 ImageNet classes and nothing else: a person is not a class (it answers with clothing, e.g. "
        "\"military uniform\"), and anything outside the list gets the nearest class that is in it.",
        "- A classifier, not a detector: one answer per image, no boxes; a scene with several objects gets the "
        "most salient one.", "",
        "## Where the weights come from", "",
        "- Weights: Keras Applications' MobileNetV2 (alpha 1.0, 224) ImageNet weights, what "
        "`keras.applications.MobileNetV2(weights=\"imagenet\")` loads (Google; Apache-2.0). This file was built "
        "from the copy in the project's shared data, which is rebuilt from Google's post-training-quantized Keras "
        "MobileNetV2 (int8 weights dequantized, batch norm folded); its top-1 is close to the float original's.",
        "- Data: ImageNet (ILSVRC-2012) training images, under ImageNet's terms (research and evaluation). "
        "No training was done here: the weights are used as published.",
        "- Licence of this file: Apache-2.0, as the weights.", "",
        "## How it was made", "",
        f"- Command: `{command}` (`benchmarks/maintainer/imagenet_model.py`)",
        f"- Conversion: `{s['convert_command']}`",
        f"- Calibration: {split['calibration']} ImageNet photos{views} (one photo per class, from "
        f"a 500-photo sample), a seeded split (seed {split['seed']}) kept apart from the {split['evaluation']} "
        "evaluation photos",
        f"- Int8 recipe: {rec['chosen']}, the best of {len(rec['int8_top1_cross_validated'])} by two-fold "
        f"cross-validation inside the calibration photos ({recipes}; ties keep convert's defaults)",
        f"- Resize: `{r['chosen']}`, the mode the float model scored better with on the calibration half "
        f"({modes})",
        f"- Versions: edgevision {s['edgevision']}, Keras {s['keras']}, TensorFlow {s['tensorflow']}", "",
    ] + accuracy_lines(s) + measured_how_lines(s)


def accuracy_lines(s: dict) -> List[str]:
    c, ref = s["int8"], s["reference"]
    google_mode = next(k for k in ref if k.startswith("with_"))
    p50 = {name: row["p50_ms"] for name, row in s["bench"].items()}
    return [
        f"## Accuracy (top-1 on {c['eval_n']} ImageNet photos it was not calibrated on)", "",
        "| model | top-1 | size |", "|---|---|---|",
        f"| Keras float32 | {_pct(c['accuracy_float'])} | - |",
        f"| this file (int8) | {_pct(c['accuracy'])} | {c['bytes'] / 1e6:.2f} MB |",
        f"| Google's quantized MobileNetV2, as edgevision reads it (stretch) | {_pct(ref['as_read']['accuracy'])} | "
        f"{ref['bytes'] / 1e6:.2f} MB |",
        f"| Google's quantized MobileNetV2, with this file's resize ({google_mode[5:]}) | "
        f"{_pct(ref[google_mode]['accuracy'])} | "
        f"{ref['bytes'] / 1e6:.2f} MB |", "",
        f"Top-1 agreement between the Keras model and this file: {_pct(c['agreement'])}. One photo per class is a "
        f"small sample: one standard error at 70 % on {c['eval_n']} photos is about 2.6 points, so read the rows "
        "as equal unless they differ by more.", "",
        "Latency (`edgevision bench`, one thread, p50, both files in the same run): "
        + ", ".join(f"{n} {v:.2f} ms" for n, v in p50.items()) + ".", "",
    ]


def measured_how_lines(s: dict) -> List[str]:
    c, split, r = s["int8"], s["split"], s["resize"]
    return [
        "## How accuracy was measured", "",
        f"- Photos: {c['eval_n']} ImageNet photos, one per class, from a {split['calibration'] + c['eval_n']}-photo "
        f"sample; the other {split['calibration']} calibrated the int8 conversion and chose the resize mode "
        f"(seeded split, seed {split['seed']}), so none of the {c['eval_n']} shaped the file. They are not the "
        "ImageNet validation set (50,000 images), and they are easier: Keras Applications lists 71.3 % top-1 for "
        "these weights there, so expect about that on photos in general, not the figures above.",
        f"- Metric: top-1 over the 1000 classes, every photo once, resize `{r['chosen']}`; Google's file was run on "
        "the same photos by the same `edgevision evaluate`.",
        "- Seeds: none; no training was done. The conversions of the cross-validation saw only calibration photos; "
        "the evaluation photos were used once, by the final file.", "",
    ]


def measure(args) -> dict:
    import edgevision

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    names = class_names(args.labels)
    split = split_samples(args.samples, args.labels, work, names)
    keras_file = build_source(work, names, "center_crop")
    resize = choose_resize(keras_file, work)
    recipe = choose_recipe(keras_file, work)
    int8 = convert(keras_file, work, recipe)
    ref = reference(args.reference, work, keras_file.parent / "labels.txt", resize["chosen"])
    import keras
    import tensorflow as tf

    chosen = recipe["int8_top1_cross_validated"][recipe["chosen"]]
    calib = work / ("calib" if chosen["mirrors"] else "calib-plain")
    summary = {"split": split, "resize": resize, "recipe": recipe, "int8": int8, "reference": ref,
               "bench": bench([int8["path"], str(args.reference)], work),
               "convert_command": f"edgevision convert {keras_file} --quant int8 --calib {calib} "
                                  f"--calib-samples {2 * CALIB_N} --eval {work / 'eval'}"
                                  + "".join(" " + a for a in recipe_args(chosen["bias_correction"])),
               "edgevision": edgevision.__version__, "keras": keras.__version__, "tensorflow": tf.__version__}
    summary["targets"] = check_targets(summary)
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=Path, required=True, help="ImageNet photos named <synset>_<class>.JPEG")
    p.add_argument("--labels", type=Path, required=True, help="1001-line ImageNet labels, 'background' first")
    p.add_argument("--reference", type=Path, required=True, help="Google's mobilenet_v2_1.0_224_quant.tflite")
    p.add_argument("--work", type=Path, default=Path("runs/imagenet"))
    p.add_argument("--bundle", action="store_true", help="put the file into edgevision/models with its card")
    args = p.parse_args(argv)
    if "KERAS_HOME" not in os.environ:
        print("note: KERAS_HOME is not set; Keras looks for the ImageNet weights in ~/.keras", file=sys.stderr)
    summary = measure(args)
    print("\n".join(summary["targets"]))
    if args.bundle:
        command = "python -m edgevision.benchmarks.maintainer.imagenet_model " + " ".join(
            re.sub(r"^/work/shared/", "../shared/", a) for a in (argv if argv is not None else sys.argv[1:]))
        print(f"bundled {bundle(summary, command)}")
    return 0  # a target not met is said above and in summary.json; the figures are what they are


if __name__ == "__main__":
    sys.exit(main())
