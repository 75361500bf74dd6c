"""The edge runtime runs without TensorFlow: nothing it imports pulls in tensorflow, keras or tf_keras.

Checked in fresh processes (this test process may have imported TensorFlow for other tests): once through
the Python API, and once through `edgevision classify`, listing sys.modules after the command has finished
(capture threads included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from _edge_helpers import tiny_models_for
from conftest import SHARED

FORBIDDEN = ("tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "tensorboard")

API_SCRIPT = r"""
import json, sys
import edgevision.edge_runtime as er
after_import = sorted(sys.modules)
clf = er.Classifier(sys.argv[1])
import numpy as np
frame = np.zeros((480, 640, 3), np.uint8); frame[:, :320] = 200
top = clf.classify(frame, top_k=2)
clf.classify_batch([frame, frame], top_k=1)
print(json.dumps({"after_import": after_import, "after_classify": sorted(sys.modules),
                  "top": [c.label for c in top], "backend": clf.backend, "verification": clf.verification}))
"""


def _forbidden(modules):
    return sorted({m for m in modules if m.split(".")[0] in FORBIDDEN})


@pytest.fixture(scope="module")
def model(request, tmp_path_factory):
    return tiny_models_for(request, tmp_path_factory)["meta_int8"]


def test_api_imports_no_tensorflow(model, tmp_path):
    env = {**os.environ, "EDGEVISION_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", API_SCRIPT, str(model)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["verification"] == "child" and len(out["top"]) == 2
    assert _forbidden(out["after_import"]) == []
    assert _forbidden(out["after_classify"]) == []
    assert "cv2" not in out["after_import"], "importing the package should stay cheap (lazy names)"
    assert "ai_edge_litert" in {m.split(".")[0] for m in out["after_classify"]}


CLI_SCRIPT = r"""
import json, runpy, sys
report, sys.argv = sys.argv[1], ["edgevision"] + sys.argv[2:]
try:
    runpy.run_module("edgevision.cli", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
open(report, "w").write(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_classify_command_imports_no_tensorflow(model, tmp_path):
    """`edgevision classify` exactly as a user runs it; the modules are listed after it has finished."""
    image = SHARED / "images" / "cat.bmp"
    if not image.is_file():
        pytest.skip("needs ../shared/images/cat.bmp")
    env = {**os.environ, "EDGEVISION_CACHE_DIR": str(tmp_path / "cache"), "EDGEVISION_DEBUG": ""}
    report = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", CLI_SCRIPT, str(report), "classify", "--model", str(model), "--source", str(image),
         "--headless", "--max-frames", "1"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    out = json.loads(report.read_text())
    assert out["code"] in (0, None), proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[0])["label"]  # it really classified
    assert "edgevision.edge_runtime.classifier" in out["modules"]
    assert _forbidden(out["modules"]) == []
