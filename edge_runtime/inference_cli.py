"""`edgevision evaluate` and `edgevision predict`: thin click commands over edgevision.edge_runtime.inference.

Only click and the standard library are imported here; a `.tflite` model never brings in TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgevision.options import (arena_option, backend_option, delegate_option, labels_option, model_argument,
                                preprocess_option, threads_option, top_k_option)


def _model_options(f):
    options = [
        labels_option(help="Class names, one per line in output order (overrides the model's own; a 1001-line "
                           "ImageNet file with 'background' first fits a 1000-output model)."),
        preprocess_option(help="A preprocess.json for a Keras model that has none beside it "
                               "(default for a bare .keras: RGB scaled to [-1, 1], the MobileNet convention)."),
        threads_option(),
        click.option("--batch-size", type=int, default=64, show_default=True, help="Images decoded and run per step."),
        backend_option(), delegate_option(), arena_option(),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _load(model, labels, preprocess, threads, runtime):
    from edgevision.edge_runtime.inference import load_predictor

    predictor = load_predictor(model, labels=labels, preprocess=preprocess, num_threads=threads, **runtime)
    for note in predictor.notes:
        click.echo(f"note: {note}", err=True)
    return predictor


@click.command("evaluate")
@model_argument()
@click.option("--data", required=True, type=click.Path(),
              help="Image folder with one subfolder per class, named like the model's labels "
                   "(case does not matter; '_' may stand for a space), or `cifar10`: the official CIFAR-10 test "
                   "split (10,000 images; downloaded once through Keras, so it needs the train extra; a folder of "
                   "that name is ./cifar10).")
@click.option("--skip-unknown", is_flag=True,
              help="Leave out (and name) class folders that match no label, instead of refusing the folder "
                   "(what `bench --eval` does).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (messages go to stderr).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Where report.json, report.txt and confusion_matrix.png go [default: a new folder "
                   "runs/evaluate/<model>, <model>2, ... so no earlier report is overwritten].")
@click.option("--exist-ok", is_flag=True,
              help="Let --out replace the report of an earlier evaluation in that folder (refused otherwise).")
@click.option("--holdout", type=float, default=0.0, metavar="FRACTION",
              help="Score only the fixed held-out FRACTION of each class folder that `train --holdout FRACTION` "
                   "on the same folder left out of training and validation.")
@_model_options
def evaluate(model, data, skip_unknown, as_json, out, exist_ok, holdout, labels, preprocess, threads, batch_size,
             **runtime):
    """Accuracy and the per-class report of MODEL on an image folder.

    MODEL is a run directory, a .keras file, a .tflite file or a bundled model name (see `edgevision models`).

    \b
    Examples:
      edgevision evaluate runs/cnn --data cifar10-test/
      edgevision evaluate cifar10-cnn --data cifar10-test/ --json
      edgevision evaluate cifar10-cnn --data cifar10          # the official test split
      edgevision evaluate runs/cnn --data cifar10/train --holdout 0.1   # what `train --holdout 0.1` left out
    """
    from edgevision.edge_runtime.datasets import check_holdout
    from edgevision.edge_runtime.evaluation import check_data_folder, evaluate as run_evaluation
    from edgevision.edge_runtime.metrics import format_report
    from edgevision.edge_runtime.inference import write_evaluation

    from edgevision.edge_runtime.progress import Progress

    from edgevision.datasets import NAMED_DATA, resolve_data  # light: Keras only for a named set not yet written

    if data in NAMED_DATA:
        data, note = resolve_data(data)
        if note:
            click.echo(f"note: {note}", err=True)
    check_data_folder(data)
    check_holdout(holdout)
    if out:
        check_out_folder(Path(out), exist_ok)  # before the run, not after minutes of it
    predictor = _load(model, labels, preprocess, threads, runtime)
    with Progress("evaluate") as progress:
        result = run_evaluation(predictor, data, skip_unknown=skip_unknown, holdout=holdout, batch_size=batch_size,
                                progress=progress)
    result.report["model"] = str(predictor.path)
    for note in result.notes():
        click.echo(f"warning: {note}", err=True)
    out_dir = Path(out) if out else new_run_folder(Path("runs", "evaluate"), _model_name(model))
    written, note = write_evaluation(result, out_dir)
    if note:
        click.echo(f"note: {note}", err=True)
    if as_json:
        click.echo(json.dumps(result.report))
        click.echo(f"wrote {', '.join(str(p) for p in written)}", err=True)
        return
    click.echo(f"accuracy: {result.accuracy * 100:.2f}% on {result.n} images ({predictor.path}, {data})")
    click.echo(format_report(result.report), nl=False)
    click.echo(f"wrote {', '.join(str(p) for p in written)}")


#: What `evaluate` writes into its folder; an --out folder holding one of them holds an earlier evaluation.
REPORT_FILES = ("report.json", "report.txt", "confusion_matrix.png")


def check_out_folder(out: Path, exist_ok: bool) -> None:
    """Refuse an --out that would overwrite an earlier evaluation, unless --exist-ok says to."""
    from edgevision.errors import UsageError

    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    found = [name for name in REPORT_FILES if (out / name).exists()]
    if found and not exist_ok:
        raise UsageError(f"--out {out} already holds an evaluation ({', '.join(found)}); pass --exist-ok to "
                         "replace it, or leave out --out for a new numbered folder under runs/evaluate/")


def new_run_folder(parent: Path, name: str) -> Path:
    """parent/name, or name2, name3, ... : the first that does not exist, created now so that two runs
    started together cannot pick the same one."""
    parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        folder = parent / (name if n == 1 else f"{name}{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            n += 1


def _model_name(model: str) -> str:
    path = Path(model)
    return (path.name if path.is_dir() else path.stem) or "model"


@click.command("predict")
@model_argument()
@click.argument("images", nargs=-1, required=True)
@top_k_option(help="How many labels to show per image.", dest="k")
@click.option("--json", "as_json", is_flag=True,
              help='Print a JSON list: [{"image": PATH, "top": [{"index": ..., "label": ..., "score": ...}, ...]}, ...].')
@click.option("--annotate", "annotate_dir", type=click.Path(file_okay=False), default=None,
              help="Save each image with its labels drawn on it into this folder.")
@_model_options
def predict(model, images, k, as_json, annotate_dir, labels, preprocess, threads, batch_size, **runtime):
    """Top-k labels with confidence for each IMAGE (files, or folders of images).

    MODEL is a run directory, a .keras file, a .tflite file or a bundled model name (see `edgevision models`).

    \b
    Examples:
      edgevision predict cifar10-cnn photo.jpg
      edgevision predict mobilenet_v2.keras cat.bmp --labels imagenet_labels.txt --top-k 3 --json
    """
    from edgevision.errors import ImageError
    from edgevision.edge_runtime.inference import annotate

    predictor = _load(model, labels, preprocess, threads, runtime)
    results = _predict_with_progress(predictor, images, k, batch_size)
    used: set = set()
    for r in results:
        if r.error:
            click.echo(f"error: {r.error}", err=True)
        elif annotate_dir:
            saved = annotate(r, annotate_dir, used)
            click.echo(f"annotated {r.image} -> {saved}", err=True)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results]))
    else:
        for r in results:
            if r.error:
                continue
            click.echo(r.image)
            for t in r.top:
                click.echo(f"  {t.score * 100:6.2f}%  {t.label}")
    failed = sum(1 for r in results if r.error)
    if failed:
        raise ImageError(f"{failed} of {len(results)} image(s) could not be read (see above)")


def _predict_with_progress(predictor, images, k, batch_size):
    """Predict `batch_size` files at a time so a bar can follow (on a terminal); same results as one call."""
    from edgevision.edge_runtime.inference import expand_images, predict as run_prediction
    from edgevision.edge_runtime.progress import Progress

    paths = expand_images(images)
    if batch_size < 1 or len(paths) <= batch_size:  # one step (or a bad size the engine refuses)
        return run_prediction(predictor, paths, k=k, batch_size=batch_size)
    results = []
    with Progress("predict") as progress:
        for start in range(0, len(paths), batch_size):
            results.extend(run_prediction(predictor, paths[start:start + batch_size], k=k, batch_size=batch_size))
            progress(len(results), len(paths))
    return results
