"""`edgevision bench`: real models, the real interpreter, real child processes; small --runs to stay fast."""

from __future__ import annotations

import csv
import json
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _bench_helpers import TINY_CLASSES, TINY_SIZE
from conftest import run_cli

LATENCY_KEYS = {"mean", "p50", "p90", "p99", "min", "max", "std"}
RESULT_KEYS = {"model", "threads", "backend", "bytes", "load_ms", "latency_ms", "peak_rss_mb"}
FAST = ["--runs", "25", "--warmup", "3"]


@pytest.fixture(scope="session")
def tiny(tiny_tflite):
    """A real Keras CNN, its real TFLite conversion and labels.txt (built once per session)."""
    return tiny_tflite


@pytest.fixture(scope="session")
def tiny_bench(tiny, tmp_path_factory):
    """One CLI run on the tiny model with every output format, shared by the tests that read them."""
    out = tmp_path_factory.mktemp("bench-out")
    files = {k: out / f"bench.{k}" for k in ("json", "csv", "md", "png")}
    proc = run_cli("bench", tiny["tflite"], "--threads", "1,2", *FAST, "--json", files["json"], "--csv",
                   files["csv"], "--md", files["md"], "--plot", files["png"])
    return proc, files


def _check_result(r: dict, runs: int) -> None:
    assert RESULT_KEYS <= set(r), f"missing keys: {RESULT_KEYS - set(r)}"
    lat = r["latency_ms"]
    assert set(lat) == LATENCY_KEYS
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert lat["std"] >= 0
    assert r["runs"] == runs
    assert r["peak_rss_mb"] > 0 and r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0
    assert r["load_ms"] > 0
    assert r["inferences_per_s"] == pytest.approx(1000 / lat["mean"])
    # The harness measured itself against a bare invoke() loop in the same child. Its value is a benchmark
    # figure (noisy on a busy machine), not something a test can time: only that it was measured.
    assert isinstance(r["harness_overhead"], float) and 0 < r["harness_overhead"] < float("inf")
    assert 0 < r["timer_ns"] < 100_000
    assert r["error"] is None


# --- the harness itself ---------------------------------------------------------------------------
def test_latency_stats_on_known_samples():
    from edgevision.benchmarks.harness import latency_stats

    stats = latency_stats([ms * 1_000_000 for ms in range(1, 101)])  # 1..100 ms
    assert stats.n == 100
    assert stats.min == 1 and stats.max == 100 and stats.mean == pytest.approx(50.5)
    assert stats.p50 == pytest.approx(50.5) and stats.p90 == pytest.approx(90.1) and stats.p99 == pytest.approx(99.01)
    assert stats.std == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert stats.per_second == pytest.approx(1000 / 50.5)


def test_measure_counts_calls_and_excludes_warmup():
    from edgevision.benchmarks.harness import measure

    calls = []
    m = measure(lambda: calls.append(1), runs=23, warmup=4)
    assert len(m.samples_ns) == 23
    assert len(calls) == 4 + 23 + 23  # warm-up, timed loop, and the bare loop it is compared with
    assert sum(1 for _ in m.timed_blocks_ns) == len(m.bare_blocks_ns) == 5  # blocks of 5: 5+5+5+5+3
    assert m.harness_overhead is not None and m.harness_overhead > 0
    calls.clear()
    m = measure(lambda: calls.append(1), runs=7, warmup=0, compare_bare=False)
    assert len(calls) == 7 and m.harness_overhead is None
    calls.clear()
    m = measure(lambda: calls.append(1), runs=10, warmup=0)  # two block pairs: too few for a ratio
    assert len(calls) == 20 and len(m.bare_blocks_ns) == 2 and m.harness_overhead is None


def test_pareto_front():
    from edgevision.benchmarks.report import pareto_front

    # (latency, accuracy): 0 fastest; 2 most accurate; 1 dominated by 3 (faster and more accurate).
    points = [(1.0, 0.80), (5.0, 0.85), (9.0, 0.95), (4.0, 0.90)]
    assert pareto_front(points) == [0, 3, 2]


# --- the command on a real model ------------------------------------------------------------------
def test_bench_json_csv_md_plot(tiny, tiny_bench):
    proc, files = tiny_bench
    assert proc.returncode == 0, proc.stderr
    data = json.loads(files["json"].read_text())
    assert {"machine", "results"} <= set(data)
    machine = data["machine"]
    for key in ("cpu", "cores", "os", "python", "numpy", "interpreters", "edgevision", "hostname"):
        assert machine.get(key), key
    assert "ai-edge-litert" in machine["interpreters"]
    results = data["results"]
    assert [r["threads"] for r in results] == [1, 2]
    for r in results:
        _check_result(r, runs=25)
        assert r["model"] == "tiny.tflite"
        assert r["bytes"] == tiny["tflite"].stat().st_size
        assert r["backend"] == "ai-edge-litert" and r["backend_version"]
        assert r["input"] == {"name": r["input"]["name"], "shape": [1, TINY_SIZE, TINY_SIZE, 3], "dtype": "float32"}
    # The table on stdout, progress on stderr.
    assert "p50 ms" in proc.stdout and "tiny.tflite" in proc.stdout and "cpu:" in proc.stdout
    assert "[1/2]" in proc.stderr and "[2/2]" in proc.stderr
    rows = list(csv.DictReader(files["csv"].open()))
    assert [int(r["threads"]) for r in rows] == [1, 2]
    assert float(rows[0]["latency_ms_p50"]) == pytest.approx(results[0]["latency_ms"]["p50"])
    md = files["md"].read_text()
    assert md.startswith("# ") and machine["cpu"] in md and "| model |" in md and md.count("| tiny.tflite |") == 2
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_to_stdout_keeps_the_table_off_it(tiny):
    proc = run_cli("bench", tiny["tflite"], "--runs", "5", "--warmup", "1", "--json", "-", "--no-overhead-check")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["results"][0]["harness_overhead"] is None and data["results"][0]["runs"] == 5
    assert "p50 ms" in proc.stderr


def test_a_corrupt_model_is_an_error_row_and_the_others_still_run(tiny, tmp_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(tiny["tflite"].read_bytes()[:1500])
    not_a_model = tmp_path / "notes.tflite"
    not_a_model.write_text("this is not a model\n" * 10)
    out = tmp_path / "r.json"
    proc = run_cli("bench", truncated, tiny["tflite"], not_a_model, "--threads", "1,2", "--runs", "5",
                   "--warmup", "1", "--json", out)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 4 measurements failed") and "Traceback" not in proc.stderr
    data = json.loads(out.read_text())  # written although some models failed
    by_model = {}
    for r in data["results"]:
        by_model.setdefault(r["model"], []).append(r)
    assert [r["threads"] for r in by_model["tiny.tflite"]] == [1, 2]
    assert all(r["error"] is None and r["latency_ms"]["p50"] > 0 for r in by_model["tiny.tflite"])
    for name in ("truncated.tflite", "notes.tflite"):
        (row,) = by_model[name]  # the failure is not repeated for the other thread count
        assert row["error"] and row["latency_ms"] is None and row["bytes"] > 0
    assert "error: truncated.tflite" in proc.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--threads", "0"], 2, "--threads must be positive integers"),
        (["--threads", "1,x"], 2, "--threads must be positive integers"),
        (["--runs", "0"], 2, "--runs must be at least 1"),
        (["--warmup", "-1"], 2, "--warmup must be 0 or more"),
        (["--plot", "out.jpg"], 2, "ending in .png"),
        (["--eval", "/nonexistent/folder"], 2, "not a folder"),
        (["--labels", "/nonexistent/labels.txt"], 2, "--labels /nonexistent/labels.txt: no such file"),
        (["--local"], 2, "--local only makes sense with --remote"),
        (["--remote", "pi@device", "--ssh-port", "0"], 2, "--ssh-port must be between 1 and 65535"),
        (["--remote", "-oProxyCommand=x"], 2, "--remote takes user@host or host"),
    ],
)
def test_bad_arguments_are_one_line(tiny, args, code, message):
    proc = run_cli("bench", tiny["tflite"], *args)
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_missing_model_and_no_model(tmp_path):
    proc = run_cli("bench", tmp_path / "missing.tflite")
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: model '{tmp_path / 'missing.tflite'}' does not exist; expected ")
    proc = run_cli("bench")
    assert proc.returncode == 2 and proc.stderr.startswith("error: give at least one MODEL")


def test_keras_model_without_compare_tf_is_refused(tiny):
    proc = run_cli("bench", tiny["keras"])
    assert proc.returncode == 2 and "--compare-tf" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_python_api_runs_a_plan_without_the_cli(tiny):
    from edgevision.benchmarks.runner import BenchPlan, BenchSettings, resolve_models, run_plan

    settings = BenchSettings(threads=(1,), runs=4, warmup=1, compare_bare=False)
    lines = []
    report = run_plan(BenchPlan(tuple(resolve_models([str(tiny["tflite"])])), settings), progress=lines.append)
    (row,) = report.results
    assert row["model"] == "tiny.tflite" and row["runs"] == 4 and row["error"] is None and not report.errors
    assert row["latency_ms"]["p50"] > 0 and row["harness_overhead"] is None
    assert report.settings["runs"] == 4 and set(report.machines) == {row["device"]}
    assert len(lines) == 1 and lines[0].startswith("[1/1] tiny.tflite threads=1: p50 ")


# --- crashes and hangs in the child ---------------------------------------------------------------
def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the child's Python that really crashes or hangs (a real process)."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -c '{body}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_a_segfaulting_child_becomes_an_error(tmp_path):
    from edgevision.benchmarks.runner import run_child

    crash = _fake_python(tmp_path, 'import sys, ctypes; sys.stderr.write("stage: load\\n"); ctypes.string_at(0)')
    outcome = run_child({"kind": "bench"}, timeout_s=60, python=crash)
    assert not outcome.ok
    assert outcome.error.startswith("the interpreter crashed (SIGSEGV) while load")


def test_a_hanging_child_is_stopped(tmp_path):
    from edgevision.benchmarks.runner import run_child

    hang = _fake_python(tmp_path, 'import sys, time; sys.stderr.write("stage: invoke\\n"); sys.stderr.flush(); time.sleep(60)')
    outcome = run_child({"kind": "bench"}, timeout_s=2, python=hang)
    assert not outcome.ok and outcome.error.startswith("timed out after 2 s while invoke")


def test_a_child_without_an_answer_or_a_start_is_one_line(tmp_path):
    from edgevision.benchmarks.runner import run_child

    quits = _fake_python(tmp_path, 'import sys; sys.stderr.write("stage: load\\nValueError: no model\\n"); sys.exit(3)')
    outcome = run_child({"kind": "bench"}, timeout_s=60, python=quits)
    assert not outcome.ok
    assert outcome.error == ("the benchmark process exited with status 3 while load without an answer: "
                             "ValueError: no model")
    missing = str(tmp_path / "no-such-python")
    outcome = run_child({"kind": "bench"}, timeout_s=60, python=missing)
    assert not outcome.ok
    assert outcome.error == f"cannot start the benchmark process {missing}: No such file or directory"


def test_an_unknown_task_is_answered_not_crashed():
    from edgevision.benchmarks.runner import run_child

    outcome = run_child({"kind": "teleport"}, timeout_s=60)
    assert not outcome.ok and outcome.error.startswith("ValueError: unknown task kind 'teleport'")


# --- accuracy -------------------------------------------------------------------------------------
def _labelled_folder(root: Path) -> Path:
    import cv2

    rng = np.random.default_rng(1)
    for i, name in enumerate(TINY_CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for j in range(3):
            image = rng.integers(0, 256, size=(40 + 7 * j, 48, 3), dtype=np.uint8)
            image[..., i] = 255  # some class signal, so predictions differ between images
            cv2.imwrite(str(folder / f"{j}.png"), image)
    (root / TINY_CLASSES[0] / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "unknown-class").mkdir()
    cv2.imwrite(str(root / "unknown-class" / "x.png"), np.zeros((8, 8, 3), np.uint8))
    return root


def test_eval_accuracy_matches_the_classifier(tiny, tmp_path):
    from edgevision.edge_runtime import Classifier, read_image

    data_dir = _labelled_folder(tmp_path / "eval")
    out = tmp_path / "r.json"
    proc = run_cli("bench", tiny["tflite"], "--runs", "3", "--warmup", "1", "--eval", data_dir, "--json", out,
                   "--trusted", "--plot", tmp_path / "p.png")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["results"]
    clf = Classifier(tiny["tflite"], trusted=True)
    correct = total = 0
    for name in TINY_CLASSES:
        for path in sorted((data_dir / name).glob("*.png")):
            total += 1
            correct += clf.classify(read_image(path), top_k=1)[0].label == name
    assert 0.0 <= row["accuracy"] <= 1.0
    assert row["accuracy"] == pytest.approx(correct / total)
    assert row["eval"]["images"] == total == 9 and row["eval"]["skipped_images"] == 1
    assert row["eval"]["skipped_classes"] == ["unknown-class"]
    assert "top-1" in proc.stdout and "unknown-class" in proc.stdout
    assert (tmp_path / "p.png").stat().st_size > 1000


@pytest.mark.shared
def test_reference_model_eval_and_e2e(reference_model, imagenet_labels, cat_image, grace_hopper_image,
                                      camera_frame, tmp_path):
    import cv2
    import shutil

    data_dir = tmp_path / "eval"
    (data_dir / "Egyptian_cat").mkdir(parents=True)
    (data_dir / "military uniform").mkdir()
    shutil.copy(cat_image, data_dir / "Egyptian_cat")
    shutil.copy(grace_hopper_image, data_dir / "military uniform")
    clip = tmp_path / "clip.avi"
    frame = cv2.imread(str(camera_frame))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (frame.shape[1], frame.shape[0]))
    for _ in range(12):
        writer.write(frame)
    writer.release()
    out = tmp_path / "r.json"
    proc = run_cli("bench", reference_model, "--runs", "15", "--warmup", "2", "--labels", imagenet_labels,
                   "--eval", data_dir, "--e2e", clip, "--json", out)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["results"]
    _check_result(row, runs=15)
    assert row["input"]["shape"] == [1, 224, 224, 3] and row["input"]["dtype"] == "uint8"
    assert row["accuracy"] == 1.0 and row["eval"]["images"] == 2  # Egyptian cat, military uniform
    e2e = row["e2e"]
    assert e2e["frames"] == 12 and e2e["timed_frames"] == 12 - e2e["warmup_frames"] and e2e["fps"] > 0
    stages = e2e["stages_ms"]
    assert {"capture", "preprocess", "inference", "postprocess", "draw", "total"} <= set(stages)
    assert stages["inference"]["mean"] > 0 and stages["draw"]["mean"] > 0
    assert stages["total"]["mean"] >= stages["inference"]["mean"]
    assert "frames/s" in proc.stdout


# --- TensorFlow stays out ---------------------------------------------------------------------------
def test_bench_child_imports_no_tensorflow(tiny):
    code = (
        "import io, json, sys\n"
        "from edgevision.benchmarks import child, cli, runner, report, remote, evaluate, e2e\n"
        f"sys.stdin = io.StringIO(json.dumps({{'kind': 'bench', 'model': {str(tiny['tflite'])!r}, 'threads': 1,"
        " 'runs': 3, 'warmup': 1}))\n"
        "child.main()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "sys.stderr.write('HEAVY=' + json.dumps(heavy) + '\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
    assert "HEAVY=[]" in proc.stderr


@pytest.mark.slow
def test_compare_tf_times_keras_beside_the_tflite(tiny):
    proc = run_cli("bench", tiny["tflite"], "--runs", "5", "--warmup", "1", "--compare-tf", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["results"]
    assert [r["backend"] for r in rows] == ["ai-edge-litert", "keras.predict", "keras.call"]
    for r in rows[1:]:
        assert r["model"] == "tiny.tflite (Keras)" and r["path"] == str(tiny["keras"].resolve())
        assert r["backend_version"].startswith("tensorflow ")
        assert r["latency_ms"]["p50"] > 0 and r["runs"] == 5 and r["peak_rss_mb"] > 0


def test_compare_tf_refuses_a_keras_model_that_carries_code(tmp_path):
    """--compare-tf loads the Keras model: it goes through the same Lambda check as convert and predict."""
    import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Lambda(lambda x: x * 2.0),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "lambda.keras")
    proc = run_cli("bench", tmp_path / "lambda.keras", "--runs", "2", "--warmup", "0", "--compare-tf", "--json", "-")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = json.loads(proc.stdout)["results"]
    assert rows and all("Lambda layer" in (r["error"] or "") for r in rows), [r["error"] for r in rows]


def test_peak_memory_is_the_childs_own_not_the_parents(tiny):
    """ru_maxrss survives exec, so a child of a big parent used to report the parent's peak."""
    import tensorflow  # noqa: F401  (makes this pytest process big, as a parent that imported TF/OpenCV is)

    from edgevision.benchmarks.harness import current_rss_mb
    from edgevision.benchmarks.runner import run_child

    parent = current_rss_mb()
    outcome = run_child({"kind": "bench", "model": str(tiny["tflite"]), "threads": 1, "runs": 3, "warmup": 1},
                        timeout_s=120)
    assert outcome.ok, outcome.error
    child_peak = outcome.result["peak_rss_mb"]
    assert parent > 200, parent  # TensorFlow is in this process
    assert 0 < child_peak < parent / 2, (child_peak, parent)


# --- the published suites ---------------------------------------------------------------------------
def test_suite_runner_writes_markdown_and_says_what_is_missing(tiny, tmp_path):
    import shutil

    suite = tmp_path / "variants"
    suite.mkdir()
    shutil.copy(tiny["tflite"], suite / "tiny-float32.tflite")
    shutil.copy(tiny["labels"], suite / "labels.txt")
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "edgevision.benchmarks.run", "--no-bundled", "--suite", f"tiny={suite}",
         "--suite", f"absent={tmp_path / 'nothing'}", "--out", out, "--runs", "5", "--warmup", "1",
         "--threads", "1", "--e2e-frames", "8"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "suite absent: 0 model(s)" in proc.stderr and "does not exist" in proc.stderr
    md = (out / "tiny.md").read_text()
    assert md.startswith("# edgevision benchmark: tiny") and "- cpu: " in md and "- os: " in md
    assert "| tiny-float32.tflite | 1 |" in md
    assert "no edgevision metadata" in md  # it says what it cannot check
    assert "frames/s" in md and "e2e-clip" not in md.split("Notes:")[0]
    data = json.loads((out / "tiny.json").read_text())
    (row,) = data["results"]
    assert row["e2e"]["frames"] == 8 and row["runs"] == 5
    assert (out / "tiny.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "absent.md").exists()


def test_suite_runner_with_nothing_to_run_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgevision.benchmarks.run", "--no-bundled", "--suite",
                           f"x={tmp_path}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no models to benchmark")
