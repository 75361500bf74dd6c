"""Third-party consumers of edgevision's .tflite files, each in its own virtual environment.

MediaPipe Tasks and the TFLite Task Library read a classifier's input type, normalisation and labels from the
file's standard TFLite metadata; a file they accept and score like edgevision's runtime is a file any standard
tool can use. Neither can live in the main venv (tflite-support 0.4.4 pins protobuf 3, which TensorFlow cannot
use; mediapipe is large), so `make consumers` builds two venvs without edgevision:

    python3 -m venv .venv-mediapipe && .venv-mediapipe/bin/pip install 'mediapipe==0.10.35' numpy
    python3 -m venv .venv-tfsupport && .venv-tfsupport/bin/pip install 'tflite-support==0.4.4' 'numpy<2'

(tflite-support also needs Debian's libusb-1.0-0; EDGEVISION_MEDIAPIPE_PYTHON / EDGEVISION_TFSUPPORT_PYTHON
point at other interpreters). The helpers below run this file as a script in one of them, one child process
per call with every image batched into it (each library takes seconds to start), and return its JSON answer.
The child part imports only the standard library and the consumer library: it sees a model file and images.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
MEDIAPIPE = "mediapipe"
TFSUPPORT = "tfsupport"
_VENVS = {
    MEDIAPIPE: {
        "dir": ".venv-mediapipe", "env": "EDGEVISION_MEDIAPIPE_PYTHON",
        "probe": "import mediapipe.tasks.python.vision",
        "make": "make .venv-mediapipe/.installed (python3 -m venv .venv-mediapipe && "
                ".venv-mediapipe/bin/pip install 'mediapipe==0.10.35' numpy)",
    },
    TFSUPPORT: {
        "dir": ".venv-tfsupport", "env": "EDGEVISION_TFSUPPORT_PYTHON",
        "probe": "from tflite_support import metadata; import tflite_support.task.vision",
        "make": "make .venv-tfsupport/.installed (apt-get install libusb-1.0-0; python3 -m venv .venv-tfsupport && "
                ".venv-tfsupport/bin/pip install 'tflite-support==0.4.4' 'numpy<2')",
    },
}
TIMEOUT_S = 300
_STDERR_TAIL = 25  # lines of the child's stderr quoted when a library refuses a model

Scores = List[Tuple[str, float]]


class ConsumerError(AssertionError):
    """A consumer library refused a model (or failed on it); the message quotes its own words."""


# --- the parent side (main venv, under pytest) -------------------------------------------------------------
def consumer_python(venv: str) -> Path:
    spec = _VENVS[venv]
    return Path(os.environ.get(spec["env"]) or REPO / spec["dir"] / "bin" / "python")


@functools.lru_cache(maxsize=None)
def skip_reason(venv: str) -> Optional[str]:
    """Why tests needing `venv` ("mediapipe" or "tfsupport") cannot run here, with the command that fixes it;
    None when its interpreter imports the library."""
    spec = _VENVS[venv]
    python = consumer_python(venv)
    if not python.exists():
        return f"no {venv} environment at {python}; make it with: {spec['make']}"
    probe = subprocess.run([str(python), "-c", spec["probe"]], capture_output=True, text=True, timeout=120,
                           env=_child_env())
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"{python} cannot run `{spec['probe']}` ({last}); remake it with: {spec['make']}"
    return None


def require(venv: str) -> Path:
    """The consumer venv's python, or skip the calling test saying how to build it."""
    import pytest

    reason = skip_reason(venv)
    if reason:
        pytest.skip(reason)
    return consumer_python(venv)


def mediapipe_classify(model_path, image_paths, top_k: int) -> List[Scores]:
    """MediaPipe Tasks' ImageClassifier on every image: per image, its top_k (label, score), best first."""
    rows = _run(MEDIAPIPE, "mediapipe_classify", model=_abs(model_path), images=[_abs(p) for p in image_paths],
                top_k=int(top_k))
    return [[(label, score) for label, score in row] for row in rows]


def task_library_classify(model_path, image_paths, top_k: int) -> List[Scores]:
    """The TFLite Task Library's ImageClassifier on every image: per image, its top_k (label, score)."""
    rows = _run(TFSUPPORT, "task_library_classify", model=_abs(model_path), images=[_abs(p) for p in image_paths],
                top_k=int(top_k))
    return [[(label, score) for label, score in row] for row in rows]


def model_metadata(model_path) -> dict:
    """MetadataDisplayer's view of a file: {"json": metadata as a dict, "packed": {file name: text}}."""
    return _run(TFSUPPORT, "metadata", model=_abs(model_path))


def metadata_json(model_path) -> dict:
    return model_metadata(model_path)["json"]


def packed_files(model_path) -> List[str]:
    return sorted(model_metadata(model_path)["packed"])


def write_standard_metadata(model_path, out_path, mean, std, label_file) -> Path:
    """tflite-support's own image-classifier metadata writer: `model_path` + normalisation + labels -> out_path."""
    _run(TFSUPPORT, "write_metadata", model=_abs(model_path), out=_abs(out_path), mean=[float(v) for v in mean],
         std=[float(v) for v in std], labels=_abs(label_file))
    return Path(out_path)


def _abs(path) -> str:
    return str(Path(path).resolve())  # the child runs in a temporary folder


def _child_env() -> dict:
    # The consumer venvs must not see the main venv's packages (protobuf, numpy 2, edgevision).
    return {**os.environ, "PYTHONPATH": "", "PYTHONNOUSERSITE": "1"}


def _run(venv: str, op: str, **args):
    python = require(venv)
    with tempfile.TemporaryDirectory(prefix=f"consumer-{venv}-") as tmp:
        task, result = Path(tmp) / "task.json", Path(tmp) / "result.json"
        task.write_text(json.dumps({"op": op, **args}))
        try:
            proc = subprocess.run([str(python), __file__, str(task), str(result)], capture_output=True, text=True,
                                  timeout=TIMEOUT_S, env=_child_env(), cwd=tmp)
        except subprocess.TimeoutExpired as e:
            raise ConsumerError(f"{op} in {venv} took over {TIMEOUT_S} s on {args.get('model')}") from e
        if proc.returncode != 0 or not result.exists():
            lines = proc.stderr.strip().splitlines() or ["(no output)"]
            tail = "\n".join(lines[-_STDERR_TAIL:])
            raise ConsumerError(f"{op} ({venv}) failed on {args.get('model')}: {lines[-1]}\n"
                                f"--- its stderr (exit {proc.returncode}) ---\n{tail}")
        return json.loads(result.read_text())


# --- the child side (a consumer venv; standard library + the consumer only) -----------------------------
def _mediapipe_classify(task: dict) -> list:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=task["model"]),
                                            max_results=task["top_k"])
    with vision.ImageClassifier.create_from_options(options) as classifier:
        rows = []
        for path in task["images"]:
            result = classifier.classify(mp.Image.create_from_file(path))
            rows.append([[c.category_name, float(c.score)] for c in result.classifications[0].categories])
    return rows


def _task_library_classify(task: dict) -> list:
    from tflite_support.task import core, processor, vision

    options = vision.ImageClassifierOptions(
        base_options=core.BaseOptions(file_name=task["model"]),
        classification_options=processor.ClassificationOptions(max_results=task["top_k"]))
    classifier = vision.ImageClassifier.create_from_options(options)
    rows = []
    for path in task["images"]:
        result = classifier.classify(vision.TensorImage.create_from_file(path))
        rows.append([[c.category_name, float(c.score)] for c in result.classifications[0].categories])
    return rows


def _metadata(task: dict) -> dict:
    from tflite_support import metadata

    displayer = metadata.MetadataDisplayer.with_model_file(task["model"])
    packed = {}
    for name in displayer.get_packed_associated_file_list():
        packed[name] = displayer.get_associated_file_buffer(name).decode("utf-8", errors="replace")
    return {"json": json.loads(displayer.get_metadata_json()), "packed": packed}


def _write_metadata(task: dict) -> dict:
    from tflite_support.metadata_writers import image_classifier, writer_utils

    writer = image_classifier.MetadataWriter.create_for_inference(
        writer_utils.load_file(task["model"]), input_norm_mean=task["mean"], input_norm_std=task["std"],
        label_file_paths=[task["labels"]])
    writer_utils.save_file(writer.populate(), task["out"])
    return {"out": task["out"]}


_OPS = {"mediapipe_classify": _mediapipe_classify, "task_library_classify": _task_library_classify,
        "metadata": _metadata, "write_metadata": _write_metadata}


def _main(task_path: str, result_path: str) -> None:
    task = json.loads(Path(task_path).read_text())
    Path(result_path).write_text(json.dumps(_OPS[task["op"]](task)))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
