"""TensorFlow Lite Micro as a runtime backend: real runs of TFLite Micro's own interpreter (`pip install
tflite-micro`, the micro extra), compared with LiteRT on the same images.

Skipped, with the reason, where tflite_micro cannot be imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED, run_cli

pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                    reason="TensorFlow Lite Micro's interpreter (pip install 'edgevision[micro]') is not installed")

from edgevision.edge_runtime import Classifier  # noqa: E402
from edgevision.errors import ModelError  # noqa: E402

SAMPLES = sorted((REPO / "edgevision" / "samples").glob("*.jpg"))
GENERAL = "imagenet-mobilenetv2"  # bundled, int8, no test-time augmentation: a file TFLite Micro can run


def _photos():
    """The package's sample photos and, where ../shared is present, its photos too."""
    extra = [SHARED / "images" / name for name in ("cat.bmp", "grace_hopper.bmp", "cat_720p.jpg")]
    return SAMPLES + [p for p in extra if p.is_file()]


def _crops(count: int = 24):
    """Different views of the photos (seeded crops), so a small model sees more than a handful of inputs."""
    import cv2

    rng = np.random.default_rng(3)
    photos = [cv2.imread(str(p)) for p in _photos()]
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        size = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        out.append(np.ascontiguousarray(photo[y:y + size, x:x + size]))
    return out


@pytest.fixture(scope="module")
def general_micro():
    return Classifier(GENERAL, backend="tflite-micro")


def test_a_converted_model_runs_in_tflite_micro_with_its_arena_reported(general_micro):
    interp = general_micro.interpreter
    assert general_micro.backend == "tflite-micro"
    assert general_micro.verification in ("child", "cache")  # a bundled file is re-checked on TFLite Micro
    used = interp.arena_used_bytes
    # The arena holds at least the largest activation pair of MobileNetV2 at 224 px (input + first conv out).
    assert used is not None and 224 * 224 * 3 + 112 * 112 * 32 < used <= interp.arena_size
    assert len(general_micro.classify(SAMPLES[0], top_k=3)) == 3


def test_top_1_matches_litert_on_the_sample_photos(general_micro):
    litert = Classifier(GENERAL, backend="ai-edge-litert")
    photos = _photos()
    micro_top = [general_micro.classify(p, top_k=1)[0].index for p in photos]
    litert_top = [litert.classify(p, top_k=1)[0].index for p in photos]
    assert micro_top == litert_top
    assert len(set(litert_top)) > 1  # the photos are told apart, so agreeing means something


def test_top_1_matches_litert_on_a_tiny_int8_model(request, tmp_path_factory):
    from _edge_helpers import tiny_models_for

    models = tiny_models_for(request, tmp_path_factory)
    crops = _crops()
    for name in ("portable_int8", "int8"):
        micro = Classifier(models[name], backend="tflite-micro")
        litert = Classifier(models[name], backend="ai-edge-litert")
        assert micro.interpreter.arena_used_bytes > 0
        micro_scores = micro.scores_batch(crops)
        litert_scores = litert.scores_batch(crops)
        # Integer kernels may round a step apart; the winners must not differ unless the scores nearly tie.
        top_litert = litert_scores.argmax(axis=1)
        gap = np.sort(litert_scores, axis=1)[:, -1] - np.sort(litert_scores, axis=1)[:, -2]
        decided = gap > 2 / 256
        assert decided.sum() >= len(crops) // 2
        assert (micro_scores.argmax(axis=1)[decided] == top_litert[decided]).all(), name


def test_a_fixed_arena_below_the_need_is_one_clear_error(general_micro):
    need = general_micro.interpreter.arena_used_bytes
    with pytest.raises(ModelError, match=f"needs {need} bytes of TFLite Micro arena and --arena-size is 65536"):
        Classifier(GENERAL, backend="tflite-micro", arena_size=65536, trusted=True)
    fitted = Classifier(GENERAL, backend="tflite-micro", arena_size=need + 1024, trusted=True)
    assert fitted.interpreter.arena_size == need + 1024
    assert fitted.classify(SAMPLES[0], top_k=1)[0].index == general_micro.classify(SAMPLES[0], top_k=1)[0].index


def test_the_bundled_cnns_tta_batch_is_one_line_naming_it():
    with pytest.raises(ModelError) as info:
        Classifier("cifar10-cnn", backend="tflite-micro", trusted=True)
    message = str(info.value)
    assert "\n" not in message and "2 images per invoke" in message and "--tta" in message
    result = run_cli("predict", "cifar10-cnn", SAMPLES[0], "--backend", "tflite-micro")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "RESHAPE" in lines[0], result.stderr


def test_an_operator_tflite_micro_lacks_is_named(tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    from edgevision.convert.flatbuffer import pack_model, unpack_model
    from edgevision.edge_runtime.interpreter import make_interpreter

    model = unpack_model((REPO / "edgevision" / "models" / f"{GENERAL}.tflite").read_bytes())
    softmax = next(c for c in model.operatorCodes if c.builtinCode == schema.BuiltinOperator.SOFTMAX)
    softmax.builtinCode = softmax.deprecatedBuiltinCode = schema.BuiltinOperator.TOPK_V2
    with pytest.raises(ModelError, match="TensorFlow Lite Micro has no TOPK_V2 operator"):
        make_interpreter(pack_model(model), backend="tflite-micro", name="topk")


def test_cli_predict_and_bench_on_tflite_micro(tmp_path):
    result = run_cli("predict", GENERAL, *SAMPLES, "--backend", "tflite-micro", "--top-k", "1", "--json")
    assert result.returncode == 0, result.stderr
    default = run_cli("predict", GENERAL, *SAMPLES, "--top-k", "1", "--json")
    assert [r["top"][0]["index"] for r in json.loads(result.stdout)] == \
        [r["top"][0]["index"] for r in json.loads(default.stdout)]
    out = tmp_path / "bench.json"
    bench = run_cli("bench", GENERAL, "--backend", "tflite-micro", "--runs", "2", "--warmup", "1",
                    "--no-overhead-check", "--json", out)
    assert bench.returncode == 0, bench.stderr
    row = json.loads(out.read_text())["results"][0]
    assert row["backend"] == "tflite-micro" and row["arena_bytes"] > 0
    assert row["bytes"] == (REPO / "edgevision" / "models" / f"{GENERAL}.tflite").stat().st_size
    assert "arena KB" in bench.stdout and "flash KB" in bench.stdout and "CMSIS-NN" in bench.stdout


def test_tflite_micro_runs_on_one_thread_only():
    result = run_cli("bench", GENERAL, "--backend", "tflite-micro", "--threads", "1,2")
    assert result.returncode == 2 and "one thread" in result.stderr


def test_a_missing_tflite_micro_says_how_to_install_it():
    code = ("import sys; sys.modules['tflite_micro'] = None\n"
            "from edgevision.edge_runtime.interpreter import resolve_backend\n"
            "from edgevision.errors import DependencyError\n"
            "try:\n    resolve_backend('tflite-micro')\nexcept DependencyError as e:\n    print(e)\n")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'edgevision[micro]'" in out.stdout, out.stdout + out.stderr
