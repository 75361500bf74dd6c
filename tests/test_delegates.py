"""`--delegate PATH[:key=value,...]`: external TFLite delegates loaded with LiteRT's load_delegate.

No accelerator is attached here, so the delegate that loads is a real one compiled by the test with the
system C compiler: it implements TFLite's external-delegate interface, claims no operator (so the CPU runs
the model), and writes what it was given to a log. That shows the options arrive, that the interpreter
prepares the graph with it, and that the model is checked with it in a child process before this one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, run_cli

from edgevision.edge_runtime.delegates import DelegateSpec, parse_delegate
from edgevision.errors import ModelError, UsageError

SAMPLE = REPO / "edgevision" / "samples" / "chelsea.jpg"
NOT_A_DELEGATE = next((p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6",
                                   "/usr/lib/libm.so.6", "/lib64/libm.so.6") if Path(p).is_file()), None)

# TFLite's external delegate interface (tensorflow/lite/delegates/external), written out for the test.
DELEGATE_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
typedef struct TfLiteDelegate {
  void* data_;
  int (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  int (*CopyFromBufferHandle)(void*, struct TfLiteDelegate*, int, void*);
  int (*CopyToBufferHandle)(void*, struct TfLiteDelegate*, int, void*);
  void (*FreeBufferHandle)(void*, struct TfLiteDelegate*, int*);
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;
static char log_path[4096];
static void note(const char* what) {
  FILE* f = log_path[0] ? fopen(log_path, "a") : NULL;
  if (f) { fprintf(f, "%d %s\n", (int)getpid(), what); fclose(f); }
}
static int prepare(void* context, TfLiteDelegate* delegate) { note("prepare"); return 0; }
TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n, void (*report)(const char*)) {
  for (size_t i = 0; i < n; i++) if (!strcmp(keys[i], "log")) snprintf(log_path, sizeof log_path, "%s", values[i]);
  for (size_t i = 0; i < n; i++) {
    char line[512];
    snprintf(line, sizeof line, "option %s=%s", keys[i], values[i]);
    note(line);
    if (!strcmp(keys[i], "fail")) { report(values[i]); return NULL; }
  }
  TfLiteDelegate* d = calloc(1, sizeof *d);
  d->Prepare = prepare;
  return d;
}
void tflite_plugin_destroy_delegate(TfLiteDelegate* d) { free(d); }
"""


@pytest.fixture(scope="module")
def noop_delegate(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("building the test delegate needs a C compiler (cc)")
    work = tmp_path_factory.mktemp("delegate")
    (work / "noop.c").write_text(DELEGATE_C)
    library = work / "libnoop_delegate.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(library), str(work / "noop.c")], check=True, timeout=120)
    return library


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stdout
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_the_spec_parses_options_and_keeps_colons_in_values():
    spec = parse_delegate("libedgetpu.so.1:device=usb:0,verbose=1")
    assert spec == DelegateSpec("libedgetpu.so.1", (("device", "usb:0"), ("verbose", "1")))
    assert parse_delegate(str(spec)) == spec
    assert parse_delegate("/opt/x/libd.so") == DelegateSpec("/opt/x/libd.so")
    with pytest.raises(UsageError, match="key=value"):
        parse_delegate("libd.so:a=1,oops")


@pytest.mark.parametrize("command", [
    ["predict", "cifar10-cnn", str(SAMPLE)],
    ["evaluate", "cifar10-cnn", "--data", str(REPO / "edgevision" / "samples")],
    ["classify", "cifar10-cnn", "--source", str(SAMPLE), "--headless"],
    ["bench", "cifar10-cnn", "--runs", "2", "--warmup", "0"],
])
def test_a_path_that_does_not_exist_is_one_line_on_every_runtime_command(command, tmp_path):
    missing = tmp_path / "libnot_there.so"
    line = _one_error_line(run_cli(*command, "--delegate", missing, cwd=tmp_path))
    assert f"--delegate {missing}: no such file" in line


def test_a_library_that_is_not_a_delegate_is_named_as_such(tmp_path):
    if NOT_A_DELEGATE is None:
        pytest.skip("no libm.so.6 found in the usual places")
    line = _one_error_line(run_cli("predict", "cifar10-cnn", SAMPLE, "--delegate", NOT_A_DELEGATE))
    assert "not a TensorFlow Lite delegate" in line and "tflite_plugin_create_delegate" in line
    bench = run_cli("bench", "cifar10-cnn", "--runs", "2", "--warmup", "0", "--delegate", NOT_A_DELEGATE,
                    "--json", tmp_path / "b.json")
    assert bench.returncode != 0
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert "not a TensorFlow Lite delegate" in row["error"]


def test_a_delegate_runs_with_its_options_after_a_child_checked_the_model(noop_delegate, tmp_path):
    log = tmp_path / "delegate.log"
    result = run_cli("predict", "cifar10-cnn", SAMPLE, "--top-k", "1", "--json",
                     "--delegate", f"{noop_delegate}:log={log},device=usb:0")
    assert result.returncode == 0, result.stderr
    plain = run_cli("predict", "cifar10-cnn", SAMPLE, "--top-k", "1", "--json")
    assert json.loads(result.stdout)[0]["top"] == json.loads(plain.stdout)[0]["top"]  # the CPU ran every op
    entries = [line.split(" ", 1) for line in log.read_text().splitlines()]
    prepared = [pid for pid, what in entries if what == "prepare"]
    assert len(set(prepared)) == 2  # the verification child, then this process
    assert entries[0][0] == prepared[0] and prepared[0] != prepared[-1]
    assert {what for _, what in entries} >= {"option device=usb:0", f"option log={log}"}


def test_a_delegate_that_refuses_to_start_says_its_reason(noop_delegate):
    line = _one_error_line(run_cli("predict", "cifar10-cnn", SAMPLE, "--delegate",
                                   f"{noop_delegate}:fail=no Edge TPU found"))
    assert "the delegate did not start (no Edge TPU found)" in line


def test_the_python_api_takes_a_delegate(noop_delegate, tmp_path):
    from edgevision.edge_runtime import Classifier

    log = tmp_path / "api.log"
    clf = Classifier("cifar10-cnn", delegate=f"{noop_delegate}:log={log}", trusted=True)
    assert clf.delegate.library == str(noop_delegate)
    assert "prepare" in log.read_text()
    with pytest.raises(ModelError, match="no such file"):
        Classifier("cifar10-cnn", delegate=str(tmp_path / "missing.so"))


def test_tflite_micro_has_no_delegates(noop_delegate):
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro is not installed")
    result = run_cli("bench", "imagenet-mobilenetv2", "--backend", "tflite-micro", "--delegate", noop_delegate)
    assert result.returncode == 2 and "TensorFlow Lite Micro has no delegates" in result.stderr
