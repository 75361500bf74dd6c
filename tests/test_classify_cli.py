"""`edgevision classify` end to end, in a subprocess, as a user runs it.

Real video files written by OpenCV, real image folders with broken files, a real MJPEG-over-HTTP camera on
127.0.0.1 that the test kills mid-stream, a real SIGINT. Every subprocess has a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap

import pytest

from _camera_helpers import LiveCLI, gradient_frames, read_video, write_video
from _mjpeg_server import MJPEGServer, jpeg_frames
from conftest import run_cli

FRAME_KEYS = {"frame", "label", "score", "top", "infer_ms", "total_ms", "capture_ms", "preprocess_ms",
              "postprocess_ms", "draw_ms", "source", "dropped", "timestamp"}
HEAVY_MODULES = ("tensorflow", "keras", "tf_keras", "tensorflow_model_optimization")


def json_lines(stdout: str):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def error_lines(stderr: str):
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture
def server():
    srv = MJPEGServer(jpeg_frames(gradient_frames(20)), fps=30, max_seconds=60).start()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def cat_frames(cat_image, grace_hopper_image):
    """Six 640x480 frames: cat, uniform, cat, uniform..."""
    import cv2

    from edgevision.edge_runtime import read_image

    cat = cv2.resize(read_image(cat_image), (640, 480))
    grace = cv2.resize(read_image(grace_hopper_image), (640, 480))
    return [cat if i % 2 == 0 else grace for i in range(6)]


def test_help_describes_sources_and_outputs():
    result = run_cli("classify", "--help", timeout=60)
    assert result.returncode == 0
    for option in ("--source", "--model", "--headless", "--json", "--save", "--smooth", "--max-frames", "--trusted"):
        assert option in result.stdout
    assert "stream.mjpg" in result.stdout


# --- files ----------------------------------------------------------------------------------------
@pytest.mark.shared
def test_video_file_headless_json_lines_and_saved_video(tmp_path, reference_model, imagenet_labels, cat_frames):
    video = write_video(tmp_path / "clip.avi", cat_frames, fps=15)
    out = tmp_path / "annotated.mp4"
    result = run_cli("classify", "--model", reference_model, "--labels", imagenet_labels, "--source", video,
                     "--top-k", "2", "--save", out, timeout=120)
    assert result.returncode == 0, result.stderr

    lines = json_lines(result.stdout)
    assert [d["frame"] for d in lines] == list(range(6))
    assert FRAME_KEYS <= set(lines[0])
    assert [d["label"] for d in lines] == ["Egyptian cat", "military uniform"] * 3
    assert all(len(d["top"]) == 2 and d["top"][0]["label"] == d["label"] for d in lines)
    assert all(d["dropped"] == 0 and d["infer_ms"] > 0 and d["total_ms"] >= d["infer_ms"] for d in lines)
    assert "classified 6 frames" in result.stderr and "median ms per frame" in result.stderr

    frames, size, fps = read_video(out)
    assert (frames, size, fps) == (6, (640, 480), 15.0)  # every frame, original size and rate
    assert not list(tmp_path.glob(".annotated.mp4.*"))


@pytest.mark.shared
def test_folder_skips_and_counts_unreadable_images(tmp_path, reference_model, imagenet_labels, cat_frames):
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_cat.png"), cat_frames[0])
    (folder / "b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG")
    cv2.imwrite(str(folder / "c_uniform.jpg"), cat_frames[1])
    png = (folder / "a_cat.png").read_bytes()
    (folder / "d_truncated.png").write_bytes(png[:200])
    (folder / "notes.txt").write_text("not an image, not counted")

    result = run_cli("classify", "-m", reference_model, "--labels", imagenet_labels, "-s", folder, "--headless",
                     timeout=120)
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stdout)
    assert [(d["name"], d["label"]) for d in lines] == [("a_cat.png", "Egyptian cat"), ("c_uniform.jpg", "military uniform")]
    assert "skipped 2 unreadable images: b_broken.jpg, d_truncated.png" in result.stderr


@pytest.mark.shared
def test_single_image(reference_model, imagenet_labels, cat_image):
    result = run_cli("classify", "-m", reference_model, "--labels", imagenet_labels, "-s", cat_image,
                     "--top-k", "5", timeout=120)
    assert result.returncode == 0, result.stderr
    (line,) = json_lines(result.stdout)
    assert line["label"] == "Egyptian cat" and len(line["top"]) == 5 and line["name"] == "cat.bmp"


# --- errors: one line, the right exit status --------------------------------------------------------
def test_camera_that_cannot_be_opened_exits_2_with_one_line(tiny_tflite):
    result = run_cli("classify", "-m", tiny_tflite["tflite"], "-s", "99", timeout=60)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [error_lines(result.stderr)[0]]
    assert result.stderr.startswith("error: cannot open camera 99:")
    assert result.stdout == ""


def test_bad_source_and_options_are_usage_errors(tmp_path, tiny_tflite):
    result = run_cli("classify", "-m", tiny_tflite["tflite"], "-s", tmp_path / "nope.mp4", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [f"error: source '{tmp_path / 'nope.mp4'}' does not exist; expected a camera "
                                          "index (0), a video file, a stream URL (http://host/stream.mjpg, rtsp://...), "
                                          "an image file or a folder of images"]
    result = run_cli("classify", "-m", tiny_tflite["tflite"], "-s", "0", "--smooth", "0", timeout=60)
    assert result.returncode == 2 and "--smooth" in result.stderr and "Traceback" not in result.stderr
    garbage = tmp_path / "clip.mp4"
    garbage.write_bytes(os.urandom(2048))
    result = run_cli("classify", "-m", tiny_tflite["tflite"], "-s", garbage, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("error: cannot read the video file")


def test_reader_leaving_the_pipe_early_is_not_an_error(tmp_path, tiny_tflite):
    """`edgevision classify ... | head -1`: exit 0, summary on stderr, no BrokenPipeError noise."""
    import subprocess

    from _camera_helpers import classify_cmd, cli_env

    video = write_video(tmp_path / "long.avi", gradient_frames(600))
    proc = subprocess.Popen(classify_cmd("-m", tiny_tflite["tflite"], "-s", video), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        first = json.loads(proc.stdout.readline())
        proc.stdout.close()  # like `head -1`
        stderr = proc.stderr.read()
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert first["frame"] == 0
    assert rc == 0, stderr
    assert "Broken pipe" not in stderr and "Traceback" not in stderr
    classified = int(re.search(r"classified (\d+) frames", stderr).group(1))
    assert classified < 600, "the run should have stopped when its reader left"


# --- live streams ---------------------------------------------------------------------------------
def test_stream_killed_mid_way_reconnects_with_backoff_then_ends_cleanly(tmp_path, server, tiny_tflite):
    out = tmp_path / "live.mp4"
    cli = LiveCLI("-m", tiny_tflite["tflite"], "-s", server.url, "--stall-timeout", "1", "--reconnect", "3",
                  "--save", out)
    try:
        assert cli.wait_for_frames(10, timeout=60), cli.stderr
        server.kill()  # the camera is gone: connections refused from now on
        rc = cli.finish(timeout=60)
    finally:
        cli.kill()
    assert rc == 2, cli.stderr
    assert "Traceback" not in cli.stderr
    for attempt, delay in ((1, "0.5"), (2, "1"), (3, "2")):
        assert f"reconnecting in {delay} s (attempt {attempt} of 3)" in cli.stderr, cli.stderr
    assert error_lines(cli.stderr)[-1].startswith("error: lost the live source http://127.0.0.1")
    assert f"classified {len(cli.lines)} frames" in cli.stderr
    # The annotated video of what was seen before the loss is complete and playable.
    frames, size, _ = read_video(out)
    assert frames == len(cli.lines) >= 10 and size == (320, 240)


def test_ctrl_c_releases_the_stream_and_finishes_the_video(tmp_path, server, tiny_tflite):
    out = tmp_path / "interrupted.mp4"
    cli = LiveCLI("-m", tiny_tflite["tflite"], "-s", server.url, "--save", out, "--smooth", "3")
    try:
        assert cli.wait_for_frames(8, timeout=60), cli.stderr
        cli.proc.send_signal(signal.SIGINT)
        rc = cli.finish(timeout=30)
    finally:
        cli.kill()
    assert rc == 130, cli.stderr
    assert "interrupted: stopped cleanly" in cli.stderr and "Traceback" not in cli.stderr
    frames, size, fps = read_video(out)
    assert frames == len(cli.lines) >= 8 and size == (320, 240) and fps > 0
    assert not list(tmp_path.glob(".interrupted.mp4.*"))


# --- no TensorFlow on the device --------------------------------------------------------------------
SITECUSTOMIZE = textwrap.dedent(
    """
    import atexit, json, os, sys

    def _report():
        with open(os.environ["EDGEVISION_MODULES_REPORT"], "w") as f:
            json.dump(sorted(sys.modules), f)

    atexit.register(_report)
    """
)


def test_classify_loads_no_tensorflow_or_keras(tmp_path, tiny_tflite):
    """A real classify run, with a sitecustomize that writes sys.modules as the interpreter exits."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    report = tmp_path / "modules.json"
    video = write_video(tmp_path / "clip.avi", gradient_frames(4))
    env = {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
           "EDGEVISION_MODULES_REPORT": str(report)}
    result = run_cli("classify", "-m", tiny_tflite["tflite"], "-s", video, "--save", tmp_path / "o.mp4",
                     "--smooth", "2", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(json_lines(result.stdout)) == 4
    modules = set(json.loads(report.read_text()))
    # The report is real: the runtime's own modules are there...
    assert {"cv2", "numpy", "edgevision.edge_runtime.pipeline", "edgevision.edge_runtime.classifier"} <= modules
    assert any(m.startswith("ai_edge_litert") or m.startswith("tflite_runtime") for m in modules)
    # ...and nothing heavy is.
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY_MODULES)
    assert heavy == [], f"edgevision classify imported {heavy[:5]}"
