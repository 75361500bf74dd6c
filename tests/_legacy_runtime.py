"""Running the edge runtime on the legacy `tflite-runtime` backend, in its own virtual environment.

tflite-runtime 2.14 is built against numpy 1, so it cannot live in the main environment (numpy 2). The
tests use a second venv made once with:

    python3 -m venv .venv-tflite
    .venv-tflite/bin/pip install 'tflite-runtime==2.14.*' 'numpy<2' 'opencv-python-headless<4.11' click
    .venv-tflite/bin/pip install --no-deps -e .

(or point EDGEVISION_TFLITE_PYTHON at another interpreter that has tflite-runtime and edgevision).
Run as a script in that venv, this file scores images with `Classifier(..., backend="tflite-runtime")`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / ".venv-tflite" / "bin" / "python"
MAKE_VENV = (
    "python3 -m venv .venv-tflite && .venv-tflite/bin/pip install 'tflite-runtime==2.14.*' 'numpy<2' "
    "'opencv-python-headless<4.11' click && .venv-tflite/bin/pip install --no-deps -e ."
)
_CHECK = "import tflite_runtime.interpreter, edgevision.edge_runtime.classifier; print('ok')"


def legacy_python() -> Path:
    """The tflite-runtime venv's python, or skip the test saying how to make it."""
    import pytest

    python = Path(os.environ.get("EDGEVISION_TFLITE_PYTHON", VENV_PYTHON))
    if not python.exists():
        pytest.skip(f"no tflite-runtime environment at {python}; make it with: {MAKE_VENV}")
    probe = subprocess.run([str(python), "-c", _CHECK], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"{python} cannot import tflite_runtime and edgevision ({last}); remake it with: {MAKE_VENV}")
    return python


def run_legacy_scores(python: Path, cases, images, workdir: Path) -> dict:
    """model -> {"backend", "scores": [list per image]} computed by tflite-runtime in the legacy venv."""
    task = workdir / "legacy_task.json"
    result = workdir / "legacy_result.json"
    task.write_text(json.dumps({"cases": cases, "images": [str(p) for p in images]}))
    proc = subprocess.run([str(python), __file__, str(task), str(result)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": ""})
    if proc.returncode != 0:
        raise AssertionError(f"the tflite-runtime run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(result.read_text())


def _main(task_path: str, result_path: str) -> None:
    from edgevision.edge_runtime.classifier import Classifier
    from edgevision.edge_runtime.images import read_image

    task = json.loads(Path(task_path).read_text())
    images = [read_image(p) for p in task["images"]]
    out = {}
    for model, labels in task["cases"]:
        clf = Classifier(model, labels=labels, backend="tflite-runtime")
        out[model] = {"backend": clf.backend, "scores": [clf.scores(i).tolist() for i in images]}
    Path(result_path).write_text(json.dumps(out))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
