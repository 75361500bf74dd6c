"""The project's published benchmark tables, regenerated with one command.

    python -m edgevision.benchmarks.run --suite cifar10-cnn=out/cnn --suite cifar10-mobilenetv2=out/mnv2

A suite is a folder of the variants `edgevision convert RUN --all --out-dir DIR` made (float32, float16,
dynamic, int8, int16x8, and with --qat-epochs / --prune the QAT and pruned int8 models). Every variant is
measured at 1 and 2 threads (and 4 where the machine has 4 cores), through `edgevision bench` and through the
camera pipeline (--e2e), and each suite becomes `benchmarks/results/<suite>.md` with the machine header, plus
the raw `<suite>.json` and a `<suite>.png` latency/accuracy plot. Accuracy comes from `--eval DIR` when given,
else from the accuracy the converter measured and stored in each model's metadata. The bundled models form a
suite of their own ("bundled") when they are installed.

It works on whatever models exist, and says what is missing (a variant, a folder, the bundled models) and
how to make it, so a half-finished pipeline still gets honest, partial tables.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import click

from edgevision.errors import UsageError

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The variants a full suite has: (label, quantization, optimisation or None). `convert --all` makes the first
#: five; QAT (--qat-epochs) and pruning (--prune) make the optimised int8 models.
EXPECTED_VARIANTS: Tuple[Tuple[str, str, Optional[str]], ...] = (
    ("float32", "float32", None),
    ("float16", "float16", None),
    ("dynamic", "dynamic", None),
    ("int8", "int8", None),
    ("int16x8", "int16x8", None),
    ("QAT int8", "int8", "qat"),
    ("pruned int8", "int8", "pruned"),
)
#: Frames of the generated clip for --e2e when no source is given.
CLIP_FRAMES = 120
CLIP_FPS = 30


@dataclass(frozen=True)
class Suite:
    name: str
    models: Tuple[Path, ...]
    #: What is missing, in words (shown in the Markdown and on stderr).
    missing: Tuple[str, ...] = ()


def variant_of(path: Path) -> Tuple[Optional[str], Tuple[str, ...]]:
    """(quantization, optimisations) from a model's metadata, (None, ()) for a model without any."""
    from edgevision.edge_runtime.metadata import read_metadata

    try:
        meta = read_metadata(path.read_bytes()) or {}
    except Exception:  # unreadable metadata: the bench itself will report the file
        return None, ()
    opts = meta.get("optimizations") or []
    return meta.get("quantization"), tuple(str(o) for o in opts if isinstance(o, str))


def missing_variants(models: Sequence[Path]) -> List[str]:
    """Labels of the EXPECTED_VARIANTS no model provides (read from the models' edgevision metadata)."""
    present = [variant_of(p) for p in models]
    missing = []
    for label, quant, opt in EXPECTED_VARIANTS:
        found = any(q == quant and ((opt is None and not opts) or (opt is not None and opt in opts))
                    for q, opts in present)
        if not found:
            missing.append(label)
    return missing


def make_suite(name: str, folder: Path) -> Suite:
    if not folder.is_dir():
        return Suite(name, (), (f"folder {folder} does not exist (make it with `edgevision convert RUN --all "
                                f"--out-dir {folder}`)",))
    models = tuple(sorted(folder.glob("*.tflite")))
    if not models:
        return Suite(name, (), (f"no .tflite files in {folder}",))
    if all(variant_of(p)[0] is None for p in models):
        return Suite(name, models, (f"the models in {folder} carry no edgevision metadata, so their variants "
                                    "cannot be told apart or checked for completeness",))
    missing = missing_variants(models)
    hint = []
    if missing:
        hint.append(f"missing variants: {', '.join(missing)} (`edgevision convert RUN --all --out-dir {folder}` "
                    "makes the post-training ones; add --qat-epochs N for QAT int8 and --prune S for pruned int8)")
    return Suite(name, models, tuple(hint))


def bundled_suite() -> Suite:
    from edgevision.bundled import BUNDLED, MODELS_DIR

    present = [MODELS_DIR / f for f in BUNDLED.values() if (MODELS_DIR / f).is_file()]
    absent = [n for n, f in BUNDLED.items() if not (MODELS_DIR / f).is_file()]
    missing = (f"bundled models not installed: {', '.join(absent)}",) if absent else ()
    return Suite("bundled", tuple(present), missing)


def parse_suite(text: str) -> Tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise UsageError(f"--suite takes NAME=FOLDER (e.g. cifar10-cnn=out/cnn), got {text!r}")
    if any(c in name for c in "/\\ "):
        raise UsageError(f"--suite NAME becomes a file name; use letters, digits, '-' and '_', got {name!r}")
    return name.strip(), Path(folder.strip()).expanduser()


def default_threads() -> Tuple[int, ...]:
    from edgevision.benchmarks.machine import usable_cores

    return (1, 2, 4) if usable_cores() >= 4 else (1, 2)


def make_clip(out_dir: Path, shared: Optional[Path] = None) -> Tuple[Path, str]:
    """A short real video for --e2e: a 720p photo (../shared/images/cat_720p.jpg) if there is one, else
    generated frames. Returns (path, what it is)."""
    import cv2
    import numpy as np

    photo = (shared or Path(os.environ.get("EDGEVISION_SHARED", Path(__file__).resolve().parents[2] / "shared"))
             ) / "images" / "cat_720p.jpg"
    frame = cv2.imread(str(photo)) if photo.is_file() else None
    if frame is not None:
        what = f"{CLIP_FRAMES} frames of {photo.name} ({frame.shape[1]}x{frame.shape[0]}), MJPEG"
    else:
        frame = np.zeros((720, 1280, 3), np.uint8)
        what = f"{CLIP_FRAMES} generated 1280x720 frames, MJPEG"
    path = out_dir / "e2e-clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (frame.shape[1], frame.shape[0]))
    try:
        for i in range(CLIP_FRAMES):
            # A moving bar, so that consecutive frames differ (decoders take shortcuts on identical frames).
            f = frame.copy()
            x = (i * 16) % f.shape[1]
            f[:, x:x + 8] = 255
            writer.write(f)
    finally:
        writer.release()
    return path, what


def run_suite(suite: Suite, settings, out_dir: Path, command: str, progress, e2e_note: Optional[str]) -> Path:
    from edgevision.atomic import write_text
    from edgevision.benchmarks import report as rep
    from edgevision.benchmarks.runner import resolve_models, run_benchmarks

    specs = resolve_models([str(p) for p in suite.models])
    result = run_benchmarks(specs, settings, progress=progress)
    result.notes = list(suite.missing) + ([f"--e2e source: {e2e_note}"] if e2e_note else []) + result.notes
    data = result.to_dict()
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{suite.name}.md"
    rep.write_json(data, out_dir / f"{suite.name}.json")
    note = rep.write_plot(data, out_dir / f"{suite.name}.png")
    text = rep.to_markdown(data, title=f"edgevision benchmark: {suite.name}", command=command)
    if note is None:
        text += f"\n![latency against accuracy]({suite.name}.png)\n"
    write_text(md, text)
    return md


@click.command("run", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--suite", "suites", multiple=True, metavar="NAME=FOLDER",
              help="A folder of variants from `edgevision convert RUN --all --out-dir FOLDER` (repeatable).")
@click.option("--no-bundled", is_flag=True, help="Leave out the suite of bundled models.")
@click.option("--out", "out_dir", default=str(RESULTS_DIR), show_default=True, help="Where the Markdown goes.")
@click.option("--threads", default=None, metavar="N[,N...]", help="Default: 1,2 (and 4 with 4 or more cores).")
@click.option("--warmup", default=20, show_default=True, type=int)
@click.option("--runs", default=200, show_default=True, type=int)
@click.option("--e2e", "e2e_source", metavar="SRC", help="Source for the pipeline runs (default: a generated clip).")
@click.option("--e2e-frames", default=100, show_default=True, type=int)
@click.option("--no-e2e", is_flag=True, help="Skip the camera-pipeline runs.")
@click.option("--eval", "eval_dir", metavar="DIR", help="Labelled images for accuracy (default: model metadata).")
@click.option("--eval-limit", type=int, metavar="N", help="At most N images per class for --eval.")
@click.option("--check", is_flag=True, help="Only say which suites and variants exist and what is missing.")
def main(suites, no_bundled, out_dir, threads, warmup, runs, e2e_source, e2e_frames, no_e2e, eval_dir,
         eval_limit, check):
    """Regenerate the published benchmark tables (benchmarks/results/*.md)."""
    from edgevision.benchmarks.runner import BenchSettings, parse_threads

    plan = [make_suite(*parse_suite(s)) for s in suites]
    if not no_bundled:
        plan.insert(0, bundled_suite())
    for suite in plan:
        click.echo(f"suite {suite.name}: {len(suite.models)} model(s)", err=True)
        for line in suite.missing:
            click.echo(f"  missing: {line}", err=True)
    runnable = [s for s in plan if s.models]
    if check:
        return
    if not runnable:
        raise UsageError("no models to benchmark: give --suite NAME=FOLDER with the output of "
                         "`edgevision convert RUN --all --out-dir FOLDER`, or install the bundled models")
    command = "python -m edgevision.benchmarks.run " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="edgevision-bench-") as tmp:
        e2e_note = None
        if not no_e2e and e2e_source is None:
            clip, e2e_note = make_clip(Path(tmp))
            e2e_source = str(clip)
        elif e2e_source is not None:
            e2e_note = e2e_source
        settings = BenchSettings(
            threads=parse_threads(threads) if threads else default_threads(), warmup=warmup, runs=runs,
            e2e_source=None if no_e2e else e2e_source, e2e_frames=e2e_frames, eval_dir=eval_dir,
            eval_limit=eval_limit, trusted=True,  # our own converter's models; each already runs in a child
        )
        for suite in runnable:
            md = run_suite(suite, settings, Path(out_dir), command, lambda m: click.echo(m, err=True), e2e_note)
            click.echo(f"wrote {md}", err=True)


def cli_main(argv: Optional[Sequence[str]] = None) -> None:
    """`python -m edgevision.benchmarks.run`: errors as one line, like the edgevision command."""
    from edgevision.errors import EdgeVisionError

    try:
        main.main(args=argv, prog_name="python -m edgevision.benchmarks.run", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except EdgeVisionError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    cli_main()
