"""Bad model files give one clear ModelError and never crash or hang the test process.

Real files throughout: models made by TensorFlow's converter, truncated, mutated and foreign files, and real
child processes (the verifier itself, and processes that really segfault or hang for the parent's handling).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from _edge_helpers import tiny_models_for
from conftest import SHARED
from edgevision.edge_runtime import child_process, safety
from edgevision.edge_runtime.classifier import Classifier
from edgevision.errors import ModelError

MUTANTS = 36
SEED = 20240521


@pytest.fixture(autouse=True)
def verdict_cache(tmp_path, monkeypatch):
    """Every test starts with an empty verdict cache of its own."""
    monkeypatch.setenv("EDGEVISION_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def models(request, tmp_path_factory):
    return tiny_models_for(request, tmp_path_factory)


def _frame() -> np.ndarray:
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_files_that_are_not_models_fail_fast_in_process(models, tmp_path):
    good = models["float"].read_bytes()
    cases = {
        "empty.tflite": (b"", "empty"),
        "text.tflite": (b"hello, this is not a model\n" * 10, "not a TensorFlow Lite model"),
        "random.tflite": (random.Random(1).randbytes(5000), "not a TensorFlow Lite model"),
        "image.tflite": (b"\x89PNG\r\n\x1a\n" + bytes(500), "not a TensorFlow Lite model"),
        "tiny.tflite": (good[:12], "truncated"),
        "half.tflite": (good[: len(good) // 2], "truncated or corrupt"),
        "most.tflite": (good[: len(good) - 200], "truncated or corrupt"),
    }
    before = safety.child_runs()
    for name, (data, message) in cases.items():
        with pytest.raises(ModelError, match=message) as info:
            Classifier(write(tmp_path, name, data))
        assert "\n" not in str(info.value) and name in str(info.value)
    assert safety.child_runs() == before, "these are caught before any child process is needed"
    with pytest.raises(ModelError, match="does not exist"):
        Classifier(tmp_path / "missing.tflite")
    with pytest.raises(ModelError, match="is a folder without model.keras"):
        Classifier(tmp_path)


@pytest.mark.parametrize("name, message", [
    ("two_inputs", "has 2 inputs; an image classifier has one image input"),
    ("rank2", r"input has shape \[1, 48\] \(rank 2\)"),
])
def test_valid_models_that_are_not_image_classifiers(models, name, message):
    with pytest.raises(ModelError, match=message):
        Classifier(models[name])  # verdict from the child process
    with pytest.raises(ModelError, match=message):
        Classifier(models[name], trusted=True)  # the same check in-process


def _mutant(data: bytes, rng: random.Random, kind: int) -> bytes:
    b = bytearray(data)
    if kind == 0:  # a burst of random bytes in the graph (the front of the file)
        for _ in range(rng.randint(1, 24)):
            b[rng.randrange(8, len(b) // 3)] = rng.randrange(256)
    elif kind == 1:  # scattered flips anywhere
        for _ in range(rng.randint(5, 200)):
            b[rng.randrange(8, len(b))] ^= 1 << rng.randrange(8)
    elif kind == 2:  # cut short
        del b[rng.randrange(16, len(b)) :]
    else:  # a 16-byte run overwritten (an offset or a shape, often)
        i = rng.randrange(8, len(b) - 16)
        b[i : i + 16] = rng.randbytes(16)
    return bytes(b)


def test_mutated_models_give_model_errors_or_work(models, tmp_path, monkeypatch):
    """Dozens of mutated copies of real models through the safe path: each is refused with one line, or it
    loads and classifies (a mutation can be harmless). The test process itself must survive all of them."""
    monkeypatch.setenv(safety.TIMEOUT_ENV, "30")
    rng = random.Random(SEED)
    sources = [models["float"].read_bytes(), models["int8"].read_bytes()]
    paths = [write(tmp_path, f"mutant{i:02d}.tflite", _mutant(sources[i % 2], rng, i % 4)) for i in range(MUTANTS)]
    frame = _frame()

    def attempt(path):
        try:
            clf = Classifier(path)
        except ModelError as e:
            return "refused", str(e)
        scores = clf.scores(frame)
        return "works", scores

    with ThreadPoolExecutor(max_workers=2) as pool:  # the children run in parallel; the interpreters here do not
        outcomes = list(pool.map(attempt, paths))
    refused = [msg for kind, msg in outcomes if kind == "refused"]
    works = [s for kind, s in outcomes if kind == "works"]
    assert len(refused) + len(works) == MUTANTS
    assert len(refused) >= MUTANTS // 3, "most of these mutations break a model"
    for message in refused:
        assert "\n" not in message and message.startswith(str(tmp_path))
    for scores in works:
        assert scores.shape == (5,) and np.isfinite(scores).all()


def test_a_crashing_child_and_a_hanging_child_become_model_errors(tmp_path):
    """The parent's side of the isolation, with processes that really die of SIGSEGV or really hang."""
    segfault = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]
    with pytest.raises(ModelError, match=r"x\.tflite: the interpreter crashed \(SIGSEGV\) while loading this model"):
        safety.run_child(segfault, b"", "x.tflite", timeout=60)
    hang = [sys.executable, "-c", "import time; time.sleep(120)"]
    with pytest.raises(ModelError, match=r"did not finish loading this model within 1 s \(it hangs on it\)"):
        safety.run_child(hang, b"", "x.tflite", timeout=1)
    garbage = [sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"]
    with pytest.raises(ModelError, match=r"exit status 3: boom"):
        safety.run_child(garbage, b"", "x.tflite", timeout=60)


def test_a_verification_child_killed_or_never_started_is_one_line():
    oom = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    with pytest.raises(ModelError, match=r"^x\.tflite: the interpreter crashed \(SIGKILL\) \(out of memory\?\) while"):
        safety.run_child(oom, b"", "x.tflite", timeout=60)
    missing = [str(Path("/nonexistent") / "python")]
    with pytest.raises(ModelError, match=r"^x\.tflite: cannot start the model-verification process \(No such file"):
        safety.run_child(missing, b"", "x.tflite", timeout=60)


# --- the sacrificial-child runner itself (shared with the benchmark) --------------------------------------
def _gone(pid: int, within_s: float = 10.0) -> bool:
    """True once `pid` has exited (a zombie waiting for init to reap it counts as exited)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc (Linux)")
def test_a_timed_out_child_takes_its_whole_process_group_down():
    code = ("import subprocess, sys, time\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            "sys.stderr.write('stage: waiting\\n')\n"
            "sys.stderr.write(f'grandchild {g.pid}\\n'); sys.stderr.flush()\n"
            "time.sleep(120)\n")
    start = time.monotonic()
    run = child_process.run_child([sys.executable, "-c", code], b"", timeout_s=5)
    assert time.monotonic() - start < 30
    failure = run.failure
    assert failure is not None and failure.kind == child_process.TIMEOUT and run.reply == {}
    assert failure.seconds == 5 and failure.stage == "waiting" and failure.while_stage == " while waiting"
    grandchild = int(failure.last_line.split()[1])
    assert _gone(grandchild), "the grandchild outlived the timed-out child"


def test_the_reply_is_the_last_json_line_on_stdout():
    data = bytes(range(256)) * 3
    chatty = [sys.executable, "-c",
              "import json, sys; n = len(sys.stdin.buffer.read()); print('INFO: native chatter'); "
              "print(json.dumps({'ok': True, 'n': n})); print('INFO: more chatter'); "
              "sys.stderr.write('stage: done\\n')"]
    run = child_process.run_child(chatty, data, timeout_s=60)
    assert run.failure is None and run.reply == {"ok": True, "n": len(data)}
    for body, status in (("print('{not json'); sys.exit(0)", 0), ("print('[1, 2]')", 0),
                         ("sys.stderr.write('stage: load\\nboom\\n\\n'); sys.exit(3)", 3)):
        run = child_process.run_child([sys.executable, "-c", f"import sys; {body}"], b"", timeout_s=60)
        failure = run.failure
        assert failure is not None and failure.kind == child_process.NO_ANSWER and failure.status == status, body
        assert run.reply == {}
    assert failure.stage == "load" and failure.last_line == "boom" and failure.signal_name == ""


def test_signal_names():
    assert child_process.signal_name(11) == "SIGSEGV" and child_process.signal_name(9) == "SIGKILL"
    assert child_process.signal_name(250) == "signal 250"
    failure = child_process.ChildFailure(child_process.SIGNAL, "python", 1.0, status=-6)
    assert failure.signal_name == "SIGABRT" and not failure.out_of_memory and failure.while_stage == ""


def test_the_verification_timeout_applies_to_real_models(models, monkeypatch):
    monkeypatch.setenv(safety.TIMEOUT_ENV, "0.001")  # no interpreter starts that fast
    with pytest.raises(ModelError, match="did not finish loading"):
        Classifier(models["float"])
    monkeypatch.setenv(safety.TIMEOUT_ENV, "soon")
    from edgevision.errors import UsageError

    with pytest.raises(UsageError, match="EDGEVISION_VERIFY_TIMEOUT must be a positive number"):
        Classifier(models["float"])


def test_the_verdict_is_cached_by_content(models, tmp_path, verdict_cache):
    model = write(tmp_path, "m.tflite", models["int8"].read_bytes())
    start = safety.child_runs()
    first = Classifier(model)
    assert first.verification == "child" and safety.child_runs() == start + 1
    entries = list((verdict_cache / "verified").glob(f"{first.sha256}.*.json"))
    assert len(entries) == 1
    doc = json.loads(entries[0].read_text())
    assert doc["verdict"] == "good" and doc["backend"] == first.backend
    assert doc["backend_version"] == first.backend_version and doc["signature"]["input_dtype"] == "int8"

    second = Classifier(model)  # same bytes: no child
    assert second.verification == "cache" and safety.child_runs() == start + 1
    renamed = write(tmp_path, "copy.tflite", model.read_bytes())
    assert Classifier(renamed).verification == "cache"  # keyed by content, not by name
    assert Classifier(model, trusted=True).verification == "trusted" and safety.child_runs() == start + 1

    entries[0].write_text("{ damaged")  # a damaged entry is verified again, not trusted
    assert Classifier(model).verification == "child" and safety.child_runs() == start + 2
    other = write(tmp_path, "m.tflite", models["uint8"].read_bytes())  # new content at the same path
    assert Classifier(other).verification == "child" and safety.child_runs() == start + 3
    np.testing.assert_allclose(first.scores(_frame()), second.scores(_frame()))


def test_an_unwritable_cache_only_costs_a_child_per_start(models, tmp_path, monkeypatch):
    blocker = write(tmp_path, "not-a-dir", b"")
    monkeypatch.setenv("EDGEVISION_CACHE_DIR", str(blocker))
    start = safety.child_runs()
    assert Classifier(models["float"]).verification == "child"
    assert Classifier(models["float"]).verification == "child"
    assert safety.child_runs() == start + 2


def test_the_child_can_be_run_by_hand(models):
    proc = subprocess.run([sys.executable, "-m", "edgevision.edge_runtime.safety", str(models["rank2"])],
                          capture_output=True, text=True, timeout=120)
    verdict = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and verdict["ok"] is False and "rank 2" in verdict["error"]
    proc = subprocess.run([sys.executable, "-m", "edgevision.edge_runtime.safety", str(models["uint8"])],
                          capture_output=True, text=True, timeout=120)
    (line,) = proc.stdout.strip().splitlines()  # the interpreter's own messages go to stderr
    verdict = json.loads(line)
    assert verdict["ok"] is True and verdict["signature"]["input_shape"] == [1, 32, 32, 3]


def test_cli_reports_a_bad_model_in_one_line(tmp_path, cli):
    bad = write(tmp_path, "broken.tflite", b"\x1c\x00\x00\x00TFL3" + bytes(40))
    image = SHARED / "images" / "cat.bmp"
    if not image.is_file():
        pytest.skip("needs ../shared/images/cat.bmp")
    result = cli("classify", "--model", bad, "--source", image, "--headless", "--max-frames", "1",
                 env={"EDGEVISION_CACHE_DIR": str(tmp_path / "cache")}, timeout=120)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and "XNNPACK" not in line]
    assert lines and lines[-1].startswith("error: ") and "broken.tflite" in lines[-1] and "Traceback" not in result.stderr
