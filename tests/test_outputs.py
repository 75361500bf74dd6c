"""What the commands leave for a person: progress bars on a terminal (and none in a pipe), videos a browser
plays, evaluation folders that never overwrite, the one-line note when no window can open, and pictures that
can be read (curves.png, the Pareto plot, predict's annotated images).

Real subprocesses on a real pseudo-terminal, real OpenCV encoders and decoders, real matplotlib figures; the
model is the bundled CIFAR-10 CNN (no TensorFlow, no ../shared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from _data_helpers import make_image_folder
from conftest import run_cli

CLASSES = ("cat", "dog", "ship")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """cat/, dog/, ship/: 20 small images each (more than one --batch-size 8 step)."""
    root = tmp_path_factory.mktemp("outputs") / "data"
    make_image_folder(root, CLASSES, per_class=20, size=(32, 32))
    return root


def cli_cmd(*args) -> list:
    return [sys.executable, "-m", "edgevision.cli", *map(str, args)]


def run_on_pty(*args, cwd=None):
    """Run the CLI with stderr on a fresh pseudo-terminal (as in a shell); (returncode, stdout, terminal bytes).

    The terminal is left at the size openpty gives it (0x0, as in some containers): the bar must show there too.
    """
    master, slave = os.openpty()
    env = {**os.environ, "EDGEVISION_DEBUG": ""}
    env.pop("EDGEVISION_NO_PROGRESS", None)
    proc = subprocess.Popen(cli_cmd(*args), stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                            cwd=cwd, env=env)
    os.close(slave)
    chunks = []

    def read():
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        reader.join(10)
        os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


# --- progress --------------------------------------------------------------------------------------
def test_evaluate_shows_a_bar_on_a_terminal_and_none_in_a_pipe(data, tmp_path):
    rc, out, terminal = run_on_pty("evaluate", "cifar10-cnn", "--data", data, "--batch-size", "8",
                                   "--out", tmp_path / "tty")
    assert rc == 0, terminal
    assert "evaluate:" in terminal and "/60 [" in terminal and "img/s" in terminal, terminal
    assert "accuracy:" in out and "\r" not in out  # the bar stays on stderr, stdout is the report

    piped = run_cli("evaluate", "cifar10-cnn", "--data", data, "--batch-size", "8", "--out", tmp_path / "pipe",
                    timeout=180)
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr and "evaluate:" not in piped.stderr and "img/s" not in piped.stderr
    assert json.loads((tmp_path / "tty" / "report.json").read_text())["n"] == 60
    assert (tmp_path / "pipe" / "report.json").read_text() == (tmp_path / "tty" / "report.json").read_text()


def test_predict_on_many_files_shows_a_bar_on_a_terminal_only(data):
    files = sorted((data / "cat").iterdir())
    rc, out, terminal = run_on_pty("predict", "cifar10-cnn", data / "cat", "--batch-size", "4", "--json")
    assert rc == 0, terminal
    assert "predict:" in terminal and "/20 [" in terminal, terminal
    chunked = json.loads(out)
    assert [p["image"] for p in chunked] == [str(f) for f in files]  # every file, in order, once

    piped = run_cli("predict", "cifar10-cnn", data / "cat", "--json", timeout=120)  # one step of 64
    assert piped.returncode == 0 and "predict:" not in piped.stderr and "\r" not in piped.stderr
    assert json.loads(piped.stdout) == chunked  # predicting 4 at a time changes no result


def test_progress_is_off_for_non_terminals_and_on_request():
    import io

    from edgevision.edge_runtime.progress import Progress, wants_bar

    stream = io.StringIO()
    with Progress("x", stream=stream) as progress:
        progress(1, 2)
        progress(2, 2)
        assert not progress.shown
    assert stream.getvalue() == ""
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert wants_bar(tty)
            os.environ["EDGEVISION_NO_PROGRESS"] = "1"
            try:
                assert not wants_bar(tty)
            finally:
                del os.environ["EDGEVISION_NO_PROGRESS"]
    finally:
        os.close(slave)
        os.close(master)


# --- videos that open anywhere ------------------------------------------------------------------------
def _frames(n: int):
    from _camera_helpers import gradient_frames

    return gradient_frames(n, width=160, height=120)


def test_webm_is_vp9_and_reads_back_frame_for_frame(tmp_path):
    import cv2

    from _camera_helpers import read_video
    from edgevision.edge_runtime.recording import VideoSink

    target = tmp_path / "clip.webm"
    with VideoSink(target, fps=10) as sink:
        for frame in _frames(9):
            sink.write(frame)
    assert sink.codec in ("VP90", "VP80") and sink.browser_playable
    assert target.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a real WebM/Matroska file
    assert read_video(target) == (9, (160, 120), 10.0)
    capture = cv2.VideoCapture(str(target))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    capture.release()
    assert fourcc == sink.codec
    with VideoSink(tmp_path / "one.webm", fps=10) as single:  # the written-file check seeks to the last frame
        single.write(_frames(1)[0])
    assert read_video(tmp_path / "one.webm")[0] == 1


def test_mp4_says_when_it_will_not_play_in_a_browser(tmp_path):
    from _camera_helpers import read_video
    from edgevision.edge_runtime.recording import VideoSink

    target = tmp_path / "clip.mp4"
    with VideoSink(target, fps=10) as sink:
        for frame in _frames(5):
            sink.write(frame)
    assert sink.codec in ("avc1", "mp4v")
    assert sink.browser_playable == (sink.codec == "avc1")
    assert read_video(target)[0] == 5


def test_classify_saves_webm_without_encoder_noise(tmp_path):
    import cv2

    from _camera_helpers import read_video

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, frame in enumerate(_frames(3)):
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    out = tmp_path / "annotated.webm"
    result = run_cli("classify", "-m", "cifar10-cnn", "-s", folder, "--headless", "--save", out, timeout=180)
    assert result.returncode == 0, result.stderr
    assert read_video(out)[:2] == (3, (160, 120))
    assert "(VP90)" in result.stderr or "(VP80)" in result.stderr
    assert "not supported" not in result.stderr and "FFMPEG" not in result.stderr  # probing codecs is silent
    assert "may not play in a web browser" not in result.stderr
    refused = run_cli("classify", "-m", "cifar10-cnn", "-s", folder, "--save", tmp_path / "x.flv", timeout=60)
    assert refused.returncode == 2 and ".webm" in refused.stderr and "Traceback" not in refused.stderr


# --- evaluation folders that never overwrite -------------------------------------------------------------
def test_evaluate_numbers_its_run_folders(data, tmp_path):
    first = run_cli("evaluate", "cifar10-cnn", "--data", data, cwd=tmp_path, timeout=180)
    assert first.returncode == 0, first.stderr
    runs = tmp_path / "runs" / "evaluate"
    report = (runs / "cifar10-cnn" / "report.json").read_text()
    (data / "ship" / "00.jpg").rename(data / "ship" / "moved.tmp")  # the second run scores one image fewer
    try:
        second = run_cli("evaluate", "cifar10-cnn", "--data", data, cwd=tmp_path, timeout=180)
    finally:
        (data / "ship" / "moved.tmp").rename(data / "ship" / "00.jpg")
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in runs.iterdir()) == ["cifar10-cnn", "cifar10-cnn2"]
    assert (runs / "cifar10-cnn" / "report.json").read_text() == report  # the first run is untouched
    assert json.loads((runs / "cifar10-cnn2" / "report.json").read_text())["n"] == 59
    assert str(Path("runs", "evaluate", "cifar10-cnn2")) in second.stdout


def test_evaluate_out_refuses_to_replace_an_evaluation_unless_asked(data, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # a folder with other files is fine: nothing is overwritten
    assert run_cli("evaluate", "cifar10-cnn", "--data", data, "--out", out, timeout=180).returncode == 0
    before = (out / "report.json").read_bytes()
    (out / "report.json").write_text("{}")
    refused = run_cli("evaluate", "cifar10-cnn", "--data", data, "--out", out, timeout=180)
    assert refused.returncode == 2, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--exist-ok" in lines[0] and "report.json" in lines[0], refused.stderr
    assert (out / "report.json").read_text() == "{}"
    replaced = run_cli("evaluate", "cifar10-cnn", "--data", data, "--out", out, "--exist-ok", timeout=180)
    assert replaced.returncode == 0, replaced.stderr
    assert (out / "report.json").read_bytes() == before and (out / "notes.txt").read_text() == "mine"


def test_new_run_folder_counts_past_existing_ones(tmp_path):
    from edgevision.edge_runtime.inference_cli import new_run_folder

    made = [new_run_folder(tmp_path / "runs", "m") for _ in range(3)]
    assert [p.name for p in made] == ["m", "m2", "m3"] and all(p.is_dir() for p in made)


# --- the window that never opens ------------------------------------------------------------------------
def test_classify_says_in_one_line_why_no_window_opens(tmp_path):
    import cv2

    from edgevision.edge_runtime.display import opencv_has_gui

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), _frames(1)[0])
    env = {"DISPLAY": ":0" if not opencv_has_gui() else "", "WAYLAND_DISPLAY": ""}
    shown = run_cli("classify", "-m", "cifar10-cnn", "-s", folder, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    notes = [line for line in shown.stderr.splitlines() if line.startswith("note: no window")]
    assert len(notes) == 1, shown.stderr
    if opencv_has_gui():
        assert "no display" in notes[0]
    else:  # the edge install: a display is there, this OpenCV cannot use it
        assert "pip install opencv-python" in notes[0] and "headless" in notes[0]
    assert json.loads(shown.stdout.splitlines()[0])["frame"] == 0  # and it carries on headless
    quiet = run_cli("classify", "-m", "cifar10-cnn", "-s", folder, "--headless", env=env, timeout=120)
    assert quiet.returncode == 0 and "no window" not in quiet.stderr


# --- pictures that can be read ---------------------------------------------------------------------------
@pytest.fixture
def plt():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_curves_of_one_epoch_show_points_on_whole_epoch_ticks(plt, tmp_path):
    from edgevision.train.reports import curves_figure, plot_curves

    one = [{"epoch": 1, "phase": "train", "loss": 1.9, "accuracy": 0.31, "val_loss": 2.1, "val_accuracy": 0.16}]
    fig = curves_figure(plt, one)
    for ax in fig.axes:
        lines = [line for line in ax.get_lines() if line.get_label() in ("train", "validation")]
        assert len(lines) == 2 and all(line.get_marker() not in ("None", "", None) for line in lines)
        lo, hi = ax.get_xlim()
        assert lo < 1 < hi and list(ax.get_xticks()) == [1]
    assert plot_curves(tmp_path / "curves.png", one).read_bytes()[:4] == b"\x89PNG"


def test_curves_ticks_are_whole_epochs_and_the_best_is_marked(plt):
    from edgevision.train.reports import curves_figure

    history = [{"epoch": e, "phase": "head" if e < 3 else "fine_tune", "loss": 2.0 / e, "accuracy": 0.2 * e,
                "val_loss": 2.2 / e, "val_accuracy": v} for e, v in zip((1, 2, 3), (0.1, 0.16, 0.12))]
    fig = curves_figure(plt, history)
    fig.canvas.draw()
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert any("fine_tune from epoch 3" == line.get_label() for line in ax.get_lines())
    best = [line for line in fig.axes[1].get_lines() if line.get_label().startswith("best validation")]
    assert len(best) == 1 and list(best[0].get_xdata()) == [2] and "epoch 2" in best[0].get_label()


def _crowded_report():
    """Twelve variants of one model at two thread counts, several nearly on top of each other."""
    rows = []
    for i, name in enumerate(["float32", "float16", "dynamic", "int8", "int8-qat", "int16x8", "int8-pruned50",
                              "float32-pruned50", "int8-flip-tta", "int8-pruned50-clustered16", "fp16-b", "int4"]):
        for threads in (1, 2):
            p50 = (0.2 + 0.01 * (i % 4)) / threads
            rows.append({"model": f"cifar10-cnn-{name}.tflite", "threads": threads, "accuracy": 0.91 + 0.0004 * (i % 3),
                         "bytes": 300_000 + 100_000 * i, "latency_ms": {"p50": p50}})
    return {"results": rows}


def test_pareto_labels_do_not_overlap(plt, tmp_path):
    from edgevision.benchmarks.report import plot_figure, write_plot

    report = _crowded_report()
    fig = plot_figure(plt, report["results"])
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    texts = [t for t in ax.texts]
    assert sorted(t.get_text() for t in texts) == sorted({r["model"][len("cifar10-cnn-"):-len(".tflite")]
                                                          for r in report["results"]})  # once each, short
    boxes = [t.get_window_extent(renderer) for t in texts]
    overlapping = [(texts[i].get_text(), texts[j].get_text()) for i in range(len(boxes))
                   for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
    assert overlapping == []
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(box.overlaps(legend) for box in boxes)
    assert write_plot(report, tmp_path / "p.png") is None and (tmp_path / "p.png").stat().st_size > 0


def test_annotated_small_images_are_enlarged_sharply(data, tmp_path):
    import cv2

    from edgevision.edge_runtime.classifier import Classification
    from edgevision.edge_runtime.images import read_image
    from edgevision.edge_runtime.inference import ANNOTATE_MIN_SIDE, Prediction, annotate

    src = data / "cat" / "01.png"
    small = read_image(src)
    top = [Classification(index=3, label="cat", score=0.9)]
    saved = annotate(Prediction(str(src), top), tmp_path / "a")
    big = cv2.imread(str(saved))
    factor = big.shape[0] // small.shape[0]
    assert min(big.shape[:2]) >= ANNOTATE_MIN_SIDE and big.shape[:2] == (32 * factor, 32 * factor)
    corner = big[-8 * factor:, -8 * factor:]  # far from the label panel: exact copies of the source pixels
    assert np.array_equal(corner, np.repeat(np.repeat(small[-8:, -8:], factor, 0), factor, 1))
    large = np.zeros((400, 600, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "large.png"), large)
    kept = cv2.imread(str(annotate(Prediction(str(tmp_path / "large.png"), top), tmp_path / "a")))
    assert kept.shape == (400, 600, 3)
