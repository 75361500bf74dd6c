"""`convert --target micro|edgetpu` and `--npu`: real conversions of the tiny trained run, checked against the
device rules, run in TFLite Micro's own interpreter, and the C array built with the system compiler."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="conversion needs the train extra")

from conftest import run_cli  # noqa: E402
from edgevision.convert import ConvertOptions  # noqa: E402
from edgevision.convert import targets  # noqa: E402
from edgevision.convert.api import run_conversion  # noqa: E402
from edgevision.convert.options import Variant  # noqa: E402
from edgevision.edge_runtime.interpreter import make_interpreter  # noqa: E402
from edgevision.errors import UsageError  # noqa: E402

pytestmark = pytest.mark.slow
HAS_MICRO = importlib.util.find_spec("tflite_micro") is not None
needs_micro = pytest.mark.skipif(not HAS_MICRO, reason="TFLite Micro's Python interpreter (the micro extra) "
                                                       "is not installed")
FAST = dict(evaluate=False, calib_samples=24, bias_correction=False)  # the checks do not depend on these


def convert(tiny_run, out: Path, **options):
    report = run_conversion(tiny_run, [Variant("int8" if options.get("target") else options.pop("quant", "int8"))],
                            ConvertOptions(**{**FAST, **options}), out=out)
    return report, report.variants[0]


@pytest.fixture(scope="module")
def micro(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("micro") / "shapes.tflite"
    return convert(tiny_run, out, target="micro")


@pytest.fixture(scope="module")
def plain_int8(tiny_run, tmp_path_factory):
    """What convert writes without --target: the converter's dynamic batch is still in the file."""
    return convert(tiny_run, tmp_path_factory.mktemp("plain") / "plain.tflite")[1]


@pytest.fixture(scope="module")
def gelu_model(tiny_run, tmp_path_factory):
    """A bare .keras file with GELU: TFLite has an int8 GELU kernel, TFLite Micro and the Edge TPU have none."""
    import keras

    from edgevision.edge_runtime.preprocess import MINUS_ONE_TO_ONE, PreprocessConfig

    folder = tmp_path_factory.mktemp("gelu")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Activation("gelu")(keras.layers.Conv2D(4, 3, padding="same")(inputs))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(folder / "model.keras")
    PreprocessConfig(input_size=(16, 16), color_order="RGB", mean=MINUS_ONE_TO_ONE[0],
                     std=MINUS_ONE_TO_ONE[1]).save(folder / "preprocess.json")
    (folder / "labels.txt").write_text("circle\nsquare\ntriangle\n")
    return folder


def gelu_args(folder: Path, tiny_run):
    return [folder / "model.keras", "--labels", folder / "labels.txt", "--preprocess", folder / "preprocess.json",
            "--calib", tiny_run.parent / "data", "--calib-samples", "10", "--no-bias-correction", "-q"]


def shape_images(tiny_run, per_class=5):
    import cv2

    files = [p for c in sorted((tiny_run.parent / "data").iterdir()) for p in sorted(c.glob("*.png"))[:per_class]]
    return np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in files])


# --- micro ----------------------------------------------------------------------------------------------


def test_micro_file_passes_every_check_with_static_shapes_and_uint8_pixels(micro):
    report, result = micro
    assert report.target["target"] == "micro" and report.target["passed"]
    assert {f.rule for f in targets.check_micro(result.model) if not f.ok} == set()
    graph = targets.read_graph(result.path.read_bytes())
    assert all(t.signature is None or min(t.signature) > 0 for t in graph.tensors)  # the batch is fixed at 1
    assert [graph.tensors[i].type for i in graph.inputs + graph.outputs] == ["uint8", "uint8"]
    assert "QUANTIZE" in report.target["ops"] and "DEPTHWISE_CONV_2D" in report.target["ops"]  # the pixel interface


@needs_micro
def test_micro_file_runs_in_tflite_micro_in_its_measured_arena_and_agrees_with_litert(micro, tiny_run):
    from tflite_micro.python.tflite_micro import runtime

    report, result = micro
    arena = report.target["arena"]
    header = result.path.with_suffix(".h").read_text()
    assert f"#define MODEL_TENSOR_ARENA_SIZE {arena['arena_bytes']}" in header
    assert 0 < arena["arena_bytes"] < 256 * 1024 and arena["arena_bytes"] % 16 == 0
    model = result.path.read_bytes()
    micro_interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena["arena_bytes"])
    litert = make_interpreter(model)
    inp, out = litert.get_input_details()[0], litert.get_output_details()[0]
    agree = 0
    images = shape_images(tiny_run)
    for image in images:
        micro_interpreter.set_input(image[None], 0)
        micro_interpreter.invoke()
        litert.set_tensor(inp["index"], image[None])
        litert.invoke()
        agree += int(np.argmax(micro_interpreter.get_output(0)) == np.argmax(litert.get_tensor(out["index"])))
    assert agree == len(images)


@needs_micro
def test_the_measured_arena_is_the_smallest_that_allocates(micro):
    # In a child process: TFLite Micro's interpreter may crash rather than fail in an arena too small.
    report, result = micro
    size = report.target["arena"]["arena_bytes"]
    code = ("import sys; from tflite_micro.python.tflite_micro import runtime; "
            "runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read(), arena_size=int(sys.argv[2]))")
    fits = [subprocess.run([sys.executable, "-c", code, str(result.path), str(n)], capture_output=True).returncode == 0
            for n in (size, size - 16)]
    assert fits == [True, False]


@needs_micro
def test_micro_with_int8_io_also_runs_in_tflite_micro(tiny_run, tmp_path):
    report, result = convert(tiny_run, tmp_path / "int8io.tflite", target="micro", io="int8")
    assert report.target["passed"] and report.target["arena"]["arena_bytes"] > 0
    graph = targets.read_graph(result.model)
    assert [graph.tensors[i].type for i in graph.inputs + graph.outputs] == ["int8", "int8"]


@pytest.mark.skipif(not (shutil.which("cc") and shutil.which("c++")), reason="no system C/C++ compiler (cc, c++)")
def test_c_array_compiles_and_holds_exactly_the_tflite_bytes_16_byte_aligned(micro, tmp_path):
    _, result = micro
    source, header = result.path.with_suffix(".cc"), result.path.with_suffix(".h")
    subprocess.run(["cc", "-c", "-Wall", "-Werror", str(source), "-o", str(tmp_path / "model.o")], check=True)
    main = tmp_path / "dump.cc"
    main.write_text(f'#include <cstdint>\n#include <cstdio>\n#include "{header}"\n'
                    "int main(int argc, char** argv) {\n"
                    "  if (reinterpret_cast<std::uintptr_t>(g_model) % 16 != 0) return 3;\n"
                    "  std::FILE* f = std::fopen(argv[1], \"wb\");\n"
                    "  return std::fwrite(g_model, 1, g_model_len, f) == g_model_len && std::fclose(f) == 0 ? 0 : 4;\n"
                    "}\n")
    subprocess.run(["c++", str(main), str(tmp_path / "model.o"), "-o", str(tmp_path / "dump")], check=True)
    subprocess.run([str(tmp_path / "dump"), str(tmp_path / "back.tflite")], check=True)
    assert (tmp_path / "back.tflite").read_bytes() == result.path.read_bytes()
    assert "extern const unsigned char g_model[];" in header.read_text()


def test_c_header_says_when_the_arena_is_unmeasured():
    from edgevision.convert.c_array import c_files, resolver_call

    source, header = c_files(b"TFL3" * 5, "m.h", None, ["CONV_2D", "UNIDIRECTIONAL_SEQUENCE_LSTM"])
    assert "UNMEASURED" in header and "MODEL_TENSOR_ARENA_SIZE" not in header.replace("// ", "").split("UNMEASURED")[0]
    assert "#define MODEL_TENSOR_ARENA_SIZE" not in header
    assert "g_model_len = 20;" in source
    assert resolver_call("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert resolver_call("UNIDIRECTIONAL_SEQUENCE_LSTM") == "AddUnidirectionalSequenceLSTM"


def test_an_operator_tflite_micro_lacks_is_refused_in_one_line_naming_it(gelu_model, tiny_run, tmp_path):
    out = tmp_path / "gelu.tflite"
    done = run_cli("convert", *gelu_args(gelu_model, tiny_run), "--target", "micro", "--out", out)
    assert done.returncode == 1, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "--target micro" in lines[0] and "TFLite Micro has no GELU" in lines[0] and "nothing was written" in lines[0]
    assert not out.exists() and not out.with_suffix(".cc").exists()


def test_the_micro_check_refuses_the_bundled_flip_tta_file_that_tflite_micro_cannot_prepare():
    # Issue 21's symptom: TFLite Micro fails to prepare a RESHAPE of the two-view batch. The check names it.
    model = (Path(__file__).resolve().parents[1] / "edgevision" / "models" / "cifar10-cnn.tflite").read_bytes()
    broken = {f.rule: f.detail for f in targets.check_micro(targets.static_batch(model)) if not f.ok}
    assert set(broken) == {"static-shapes"} and "Reshape" in broken["static-shapes"]
    if HAS_MICRO:
        code = ("import sys; from tflite_micro.python.tflite_micro import runtime; "
                "runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read(), arena_size=1 << 22)")
        path = Path(__file__).resolve().parents[1] / "edgevision" / "models" / "cifar10-cnn.tflite"
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
        assert done.returncode != 0 and "RESHAPE" in done.stderr + done.stdout


@needs_micro
def test_every_op_on_the_micro_list_is_one_the_installed_tflite_micro_resolves():
    probe = Path(__file__).with_name("_micro_op_probe.py")
    done = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resolved = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= resolved  # the probe does find ops
    assert targets.MICRO_OPS - resolved == set()
    assert "GELU" not in resolved  # what the refusal test relies on


def test_target_options_that_cannot_work_are_refused_before_loading():
    for bad, words in (({"target": "micro", "quant": "float16"}, "int8"), ({"target": "micro", "tta": "flip"}, "--tta"),
                       ({"target": "edgetpu", "io": "int8"}, "--io uint8"), ({"target": "micro", "io": "float32"}, "--io"),
                       ({"target": "tpu"}, "unknown --target")):
        with pytest.raises(UsageError, match=re.escape(words)):
            ConvertOptions(**bad)


def test_cli_refuses_target_with_all_and_an_unknown_target(tiny_run, tmp_path):
    done = run_cli("convert", tiny_run, "--target", "micro", "--all", "--out-dir", tmp_path / "all", "--no-eval")
    assert done.returncode == 2 and "drop --all" in done.stderr and not (tmp_path / "all").exists()
    done = run_cli("convert", tiny_run, "--target", "esp32", "--out", tmp_path / "x.tflite")
    assert done.returncode == 2 and "esp32" in done.stderr


# --- Edge TPU ---------------------------------------------------------------------------------------------


def test_edgetpu_accepts_the_compliant_file_and_prints_the_compiler_command(tiny_run, tmp_path):
    out = tmp_path / "tpu.tflite"
    done = run_cli("convert", tiny_run, "--target", "edgetpu", "--out", out, "--no-eval", "--calib-samples", "24",
                   "--no-bias-correction", "-q")
    assert done.returncode == 0, done.stderr
    assert "target edgetpu: every check passed" in done.stdout
    assert f"edgetpu_compiler -s {out}" in done.stdout and "cannot run" in done.stdout
    assert not [f for f in targets.check_edgetpu(out.read_bytes()) if not f.ok]


def test_edgetpu_check_names_a_float_model_and_a_dynamic_shape(tiny_run, tmp_path, plain_int8):
    _, float_model = convert(tiny_run, tmp_path / "f32.tflite", quant="float32")
    broken = {f.rule: f.detail for f in targets.check_edgetpu(float_model.model) if not f.ok}
    assert {"full-integer", "io-types"} <= set(broken)
    assert "CONV_2D" in broken["full-integer"] and "float32" in broken["io-types"]
    broken = {f.rule: f.detail for f in targets.check_edgetpu(plain_int8.model) if not f.ok}
    assert set(broken) == {"static-shapes"} and "dynamic size" in broken["static-shapes"]
    assert not [f for f in targets.check_edgetpu(targets.static_batch(plain_int8.model)) if not f.ok]


def test_edgetpu_refuses_an_unsupported_op_naming_it(gelu_model, tiny_run, tmp_path):
    out = tmp_path / "gelu-tpu.tflite"
    done = run_cli("convert", *gelu_args(gelu_model, tiny_run), "--target", "edgetpu", "--out", out)
    assert done.returncode == 1 and "the Edge TPU has no GELU" in done.stderr and not out.exists()
    # QUANTIZE and the normalising DEPTHWISE_CONV_2D of the pixel interface, the CONV_2D, then GELU
    assert re.search(r"map the first 3 of \d+ ops and run GELU and the \d+ after it on the CPU", done.stderr)


def test_edgetpu_check_names_what_breaks_the_bundled_flip_tta_file():
    model = (Path(__file__).resolve().parents[1] / "edgevision" / "models" / "cifar10-cnn.tflite").read_bytes()
    broken = {f.rule: f.detail for f in targets.check_edgetpu(targets.static_batch(model)) if not f.ok}
    assert "REVERSE_V2" in broken["operators"]  # the mirror
    assert broken["op-limits"] == "MEAN over the batch axis"  # the average of the two views


def test_edgetpu_check_names_a_batch_of_two(plain_int8):
    # A two-image batch (what --tta builds) breaks Coral's rule on dimensions; edit the batch into the file.
    from edgevision.convert.flatbuffer import pack_model, unpack_model

    obj = unpack_model(targets.static_batch(plain_int8.model))
    for t in obj.subgraphs[0].tensors:
        stored = t.buffer > 0 and obj.buffers[t.buffer].data is not None and len(obj.buffers[t.buffer].data)
        if not stored and t.shape is not None and len(t.shape) == 4 and t.shape[0] == 1:
            t.shape = np.array([2, *t.shape[1:]], np.int32)
    broken = {f.rule for f in targets.check_edgetpu(pack_model(obj)) if not f.ok}
    assert "dimensions" in broken


# --- NPU ------------------------------------------------------------------------------------------------


def test_npu_spec_is_checked_against_litert_aot_socs():
    from edgevision.convert.npu import parse

    assert parse("qualcomm:sm8650").soc == "SM8650"
    with pytest.raises(UsageError, match="unknown SoC"):
        parse("qualcomm:SM0000")
    with pytest.raises(UsageError, match="VENDOR:SOC"):
        parse("nvidia:orin")


def test_npu_compilation_runs_or_says_which_sdk_is_missing(tiny_run, tmp_path):
    out = tmp_path / "npu.tflite"
    done = run_cli("convert", tiny_run, "--npu", "qualcomm:SM8650", "--out", out, "--no-eval", "--calib-samples", "24",
                   "--no-bias-correction", "-q")
    if importlib.util.find_spec("ai_edge_litert_sdk_qualcomm") is not None:  # the vendor SDK is here: it compiles
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "npu.qualcomm-SM8650.tflite").stat().st_size > 0
        return
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert "pip install ai-edge-litert-sdk-qualcomm" in line and "could not load" in line and "nothing was written" in line
    assert not out.exists() and os.listdir(tmp_path) == []
