"""`bench --accelerator`: LiteRT's CompiledModel on one accelerator. The CPU runs here; a GPU or NPU either
runs or says in one line why it cannot (no adapter, no vendor library), and nothing falls back silently."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, run_cli

MODEL = REPO / "edgevision" / "models" / "cifar10-cnn.tflite"


def test_the_compiled_model_on_the_cpu_gives_the_interpreters_output():
    from edgevision.benchmarks.accelerator import CompiledRunner
    from edgevision.edge_runtime.interpreter import make_interpreter

    data = MODEL.read_bytes()
    x = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    outputs = []
    for interp in (CompiledRunner(data, "cpu", 1, "cnn"), make_interpreter(data, 1)):
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        outputs.append(interp.get_tensor(interp.get_output_details()[0]["index"]))
    assert outputs[0].shape == (1, 10) and np.array_equal(outputs[0], outputs[1])


def test_bench_on_the_cpu_accelerator(tmp_path):
    result = run_cli("bench", MODEL, "--accelerator", "cpu", "--runs", "5", "--warmup", "1",
                     "--json", tmp_path / "b.json")
    assert result.returncode == 0, result.stderr
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert row["backend"] == "ai-edge-litert:cpu" and row["latency_ms"]["p50"] > 0


@pytest.mark.parametrize("accelerator", ["gpu", "npu"])
def test_gpu_and_npu_run_or_say_why_not(accelerator, tmp_path):
    result = run_cli("bench", MODEL, "--accelerator", accelerator, "--runs", "3", "--warmup", "1",
                     "--json", tmp_path / "b.json")
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    if result.returncode == 0:  # a machine with the accelerator and its library
        assert row["backend"] == f"ai-edge-litert:{accelerator}" and row["latency_ms"]["p50"] > 0
        return
    assert row["error"].startswith(f"LiteRT's {accelerator.upper()} accelerator cannot run this model here (")
    assert "\n" not in row["error"] and "litert_compiled_model.h" not in row["error"]


def test_the_accelerator_does_not_combine_with_the_interpreters_options():
    result = run_cli("bench", MODEL, "--accelerator", "cpu", "--profile")
    assert result.returncode == 2 and "does not combine with --profile" in result.stderr
