"""The camera side of the edge runtime, through its Python API: sources, the capture thread, the pipeline.

Real parts only: video files written by OpenCV, an MJPEG-over-HTTP camera served on 127.0.0.1
(tests/_mjpeg_server.py), the real LiteRT interpreter. Every wait is bounded.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from _camera_helpers import gradient_frames, read_video, write_video
from _mjpeg_server import MJPEGServer, jpeg_frames, wait_until
from edgevision.edge_runtime.capture import LiveSettings
from edgevision.edge_runtime.overlay import OverlayStats, draw_overlay
from edgevision.edge_runtime.pipeline import STAGES, PipelineSettings, format_summary, run_pipeline
from edgevision.edge_runtime.recording import VideoSink
from edgevision.edge_runtime.smoothing import ScoreSmoother
from edgevision.edge_runtime.sources import open_source, parse_source
from edgevision.errors import DataError, SourceError, UsageError

# Quick live settings so the stream tests take seconds: stall noticed after 1 s, backoff 0.2, 0.4, 0.8 s.
FAST_LIVE = LiveSettings(stall_timeout_s=1.0, open_timeout_s=2.0, reconnect_attempts=3, backoff_initial_s=0.2)


@pytest.fixture(scope="module")
def reference_classifier(reference_model, imagenet_labels):
    from edgevision.edge_runtime import Classifier

    return Classifier(reference_model, labels=imagenet_labels, num_threads=1)


@pytest.fixture(scope="module")
def tiny_classifier(tiny_tflite):
    from edgevision.edge_runtime import Classifier

    return Classifier(tiny_tflite["tflite"], num_threads=1, trusted=True)


@pytest.fixture
def server():
    """A 320x240 MJPEG camera at 50 FPS; always closed, whatever the test did to it."""
    srv = MJPEGServer(jpeg_frames(gradient_frames(20)), fps=50, max_seconds=30).start()
    yield srv
    srv.close()


# --- sources --------------------------------------------------------------------------------------
def test_parse_source_tells_each_kind_apart(tmp_path):
    video = write_video(tmp_path / "clip.avi", gradient_frames(2))
    image = tmp_path / "still.png"
    import cv2

    cv2.imwrite(str(image), gradient_frames(1)[0])
    assert parse_source("0") == parse_source(0)
    assert parse_source("2").kind == "camera" and parse_source("2").target == 2
    assert parse_source("/dev/video1").kind == "camera"
    assert parse_source("http://127.0.0.1:8080/stream.mjpg").kind == "stream"
    assert parse_source("rtsp://user:pw@cam/live").live
    assert parse_source(tmp_path).kind == "folder"
    assert parse_source(video).kind == "video"
    assert parse_source(image).kind == "image"
    with pytest.raises(SourceError, match="does not exist; expected a camera index"):
        parse_source(tmp_path / "missing.mp4")


def test_camera_that_cannot_be_opened_is_a_source_error():
    with pytest.raises(SourceError, match="cannot open camera 97") as err:
        open_source("97")
    assert err.value.exit_code == 2


def test_garbage_video_and_empty_folder_are_clear_errors(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(SourceError, match="cannot read the video file"):
        open_source(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="has no image files"):
        open_source(empty)


def test_stream_url_password_is_not_shown(tmp_path):
    with pytest.raises(SourceError) as err:
        open_source("http://admin:secret@127.0.0.1:9/stream.mjpg", LiveSettings(open_timeout_s=1.0))
    assert "secret" not in str(err.value) and "admin:***@" in str(err.value)


def test_backoff_grows_and_is_capped():
    settings = LiveSettings(reconnect_attempts=6, backoff_initial_s=0.5, backoff_factor=2, backoff_max_s=4)
    assert settings.backoff_delays() == [0.5, 1, 2, 4, 4, 4]
    with pytest.raises(UsageError):
        LiveSettings(stall_timeout_s=0)


# --- smoothing and overlay ------------------------------------------------------------------------
def test_smoother_is_the_mean_of_the_last_n_frames():
    rng = np.random.default_rng(0)
    rows = rng.random((23, 7)).astype(np.float32)
    smoother = ScoreSmoother(5)
    for i, row in enumerate(rows):
        got = smoother.update(row)
        want = rows[max(0, i - 4) : i + 1].mean(axis=0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert ScoreSmoother(1).update(rows[0]) is not None and np.array_equal(ScoreSmoother(1).update(rows[3]), rows[3])
    with pytest.raises(UsageError):
        ScoreSmoother(0)


@pytest.mark.parametrize("size", [(96, 128), (480, 640), (2160, 3840)])
def test_overlay_is_drawn_in_a_corner_panel_at_any_frame_size(size):
    from collections import namedtuple

    Item = namedtuple("Item", "label score")
    h, w = size
    frame = np.full((h, w, 3), 127, np.uint8)
    before = frame.copy()
    draw_overlay(frame, [Item("Egyptian cat", 0.82), Item("tabby, tabby cat", 0.1)], OverlayStats(fps=29.7, infer_ms=3.2))
    changed = np.argwhere((frame != before).any(axis=2))
    assert len(changed) > 0, "nothing was drawn"
    (y0, x0), (y1, x1) = changed.min(axis=0), changed.max(axis=0)
    assert y0 == 0 and x0 == 0, "the panel starts in the top-left corner"
    if h >= 480:  # big enough for the panel to leave most of the picture alone
        assert y1 < h * 0.5 and x1 < w * 0.6
        # Text size follows the frame: the panel covers a similar share of a 480p and a 4K frame.
        assert 0.1 < (y1 + 1) / h < 0.4


def test_overlay_survives_non_ascii_labels_and_empty_results():
    frame = np.zeros((240, 320, 3), np.uint8)
    from collections import namedtuple

    Item = namedtuple("Item", "label score")
    draw_overlay(frame, [Item("café crème", 0.5)], OverlayStats())
    assert frame.any()
    blank = np.zeros((240, 320, 3), np.uint8)
    draw_overlay(blank, [], OverlayStats())
    assert not blank.any()


# --- files: every frame, in order, nothing dropped -------------------------------------------------
@pytest.mark.shared
def test_video_file_is_classified_frame_by_frame(tmp_path, reference_classifier, cat_image, grace_hopper_image):
    from edgevision.edge_runtime import read_image

    cat, grace = read_image(cat_image), read_image(grace_hopper_image)
    size = (cat.shape[1], cat.shape[0])
    import cv2

    frames = [cat if i % 2 == 0 else cv2.resize(grace, size) for i in range(8)]
    video = write_video(tmp_path / "alternating.avi", frames, fps=10)

    with run_pipeline(reference_classifier, video, PipelineSettings(top_k=2, draw=True)) as run:
        results = list(run)

    assert [r.source_index for r in results] == list(range(8))
    assert [r.label for r in results] == ["Egyptian cat", "military uniform"] * 4
    assert all(r.dropped == 0 for r in results)
    for r in results:
        t = r.times
        parts = t.capture_ms + t.preprocess_ms + t.inference_ms + t.postprocess_ms + t.draw_ms
        assert min(parts, t.inference_ms, t.draw_ms) > 0
        assert t.total_ms == pytest.approx(parts, rel=1e-6, abs=1e-6)
        assert len(r.top) == 2 and r.top[0].score >= r.top[1].score
    summary = run.summary
    assert (summary.frames, summary.timed_frames, summary.dropped, summary.stop_reason) == (8, 7, 0, "end")
    assert set(summary.stages) == set(STAGES) and summary.fps > 0
    assert summary.stages["inference"].p50 <= summary.stages["total"].p50
    assert "classified 8 frames" in format_summary(summary)[0]


@pytest.mark.shared
def test_smoothing_steadies_a_flickering_label(tmp_path, reference_classifier, cat_image, grace_hopper_image):
    """Frames alternate cat / uniform; averaged over 6 frames, the label stops flipping every frame."""
    from edgevision.edge_runtime import read_image
    import cv2

    cat = read_image(cat_image)
    grace = cv2.resize(read_image(grace_hopper_image), (cat.shape[1], cat.shape[0]))
    video = write_video(tmp_path / "flicker.avi", [cat if i % 2 == 0 else grace for i in range(12)])

    def labels(smooth):
        with run_pipeline(reference_classifier, video, PipelineSettings(smooth=smooth)) as run:
            return [r.label for r in run]

    raw, smoothed = labels(1), labels(6)
    flips = lambda seq: sum(a != b for a, b in zip(seq, seq[1:]))  # noqa: E731
    assert flips(raw) == 11
    assert flips(smoothed[6:]) == 0


def test_max_frames_and_early_stop(tmp_path, tiny_classifier):
    video = write_video(tmp_path / "clip.avi", gradient_frames(20))
    with run_pipeline(tiny_classifier, video, PipelineSettings(max_frames=5)) as run:
        assert len(list(run)) == 5
    assert run.summary.stop_reason == "max_frames"

    stop = threading.Event()
    with run_pipeline(tiny_classifier, video, PipelineSettings(), stop=stop) as run:
        seen = 0
        for _ in run:
            seen += 1
            if seen == 3:
                stop.set()
    assert seen == 3 and run.summary.stop_reason == "stopped"

    with run_pipeline(tiny_classifier, video, PipelineSettings()) as run:
        for _ in run:
            break  # leaving early still fills in the summary and releases the file
    assert run.summary is not None and run.summary.frames == 1


# --- live sources: newest frame only, watchdog, reconnection ---------------------------------------
def test_slow_consumer_of_a_live_stream_drops_stale_frames_but_a_file_drops_none(tmp_path, server, tiny_classifier):
    consumer_delay = 0.06  # a model that takes 60 ms, on a 50 FPS camera

    with run_pipeline(tiny_classifier, server.url, PipelineSettings(max_frames=12, live=FAST_LIVE)) as run:
        live = []
        for result in run:
            live.append(result)
            time.sleep(consumer_delay)
    assert run.summary.dropped > 0 and live[-1].dropped == run.summary.dropped
    gaps = [b.source_index - a.source_index for a, b in zip(live, live[1:])]
    assert max(gaps) > 1, f"expected skipped (stale) frames, got consecutive indices {gaps}"
    # Never lagging: each answer is about a frame read moments ago, not one queued seconds ago.
    assert np.median([r.latency_ms for r in live[1:]]) < 3 * consumer_delay * 1000

    video = write_video(tmp_path / "clip.avi", gradient_frames(12))
    with run_pipeline(tiny_classifier, video, PipelineSettings()) as run:
        files = []
        for result in run:
            files.append(result)
            time.sleep(consumer_delay)
    assert run.summary.dropped == 0
    assert [r.source_index for r in files] == list(range(12))


def test_watchdog_notices_a_stalled_stream_and_reconnects(server, tiny_classifier):
    events = []
    stalled_at = {}

    def on_event(message):
        events.append((time.monotonic(), message))

    with run_pipeline(tiny_classifier, server.url, PipelineSettings(live=FAST_LIVE), on_event=on_event) as run:
        for result in run:
            if result.frame == 5:
                server.stall()  # connection stays open, nothing more is sent
                stalled_at["t"] = time.monotonic()
                # Bring the camera back once the watchdog has given up on the stuck connection.
                threading.Thread(
                    target=lambda: wait_until(lambda: any("no frame" in m for _, m in events), 6) and server.resume(),
                    daemon=True,
                ).start()
            if result.frame == 15:
                break
    stall_events = [(t, m) for t, m in events if "no frame for 1 s" in m]
    assert stall_events, f"the watchdog never reported the stall: {events}"
    noticed_after = stall_events[0][0] - stalled_at["t"]
    assert noticed_after < FAST_LIVE.stall_timeout_s + 1.0, f"stall noticed only after {noticed_after:.2f} s"
    assert any("reconnected" in m for _, m in events)
    assert run.summary.reconnects >= 1 and run.summary.frames == 16


def test_dropped_connection_is_reopened(server, tiny_classifier):
    events = []
    with run_pipeline(tiny_classifier, server.url, PipelineSettings(max_frames=20, live=FAST_LIVE),
                      on_event=events.append) as run:
        for result in run:
            if result.frame == 4:
                server.drop()  # a camera reboot: the connection closes, new ones work
    assert run.summary.frames == 20 and run.summary.reconnects == 1
    assert any("reconnecting in 0.2 s (attempt 1 of 3)" in m for m in events), events
    assert server.connections >= 2


def test_lost_stream_ends_with_a_source_error_after_backoff(server, tiny_classifier):
    events = []
    with run_pipeline(tiny_classifier, server.url, PipelineSettings(live=FAST_LIVE),
                      on_event=lambda m: events.append((time.monotonic(), m))) as run:
        with pytest.raises(SourceError, match="3 reconnection attempts") as err:
            for result in run:
                if result.frame == 3:
                    server.kill()
    assert "lost the live source" in str(err.value)
    attempts = [t for t, m in events if "reconnecting in" in m]
    assert len(attempts) == 3
    # The waits grow: 0.2 s, 0.4 s, 0.8 s between attempts (each attempt is refused at once).
    waits = np.diff(attempts)
    assert waits[1] > waits[0] * 1.5 and 0.15 < waits[0] < 1.0
    # Frames already read when the camera went away are still classified; then it ends.
    assert run.summary.stop_reason == "lost" and 4 <= run.summary.frames <= 6


# --- recording ------------------------------------------------------------------------------------
def test_video_sink_measures_a_live_rate_and_finishes_atomically(tmp_path):
    target = tmp_path / "out.mp4"
    sink = VideoSink(target)  # no rate given: measured from the first frames, as for a live source
    for frame in gradient_frames(40):
        sink.write(frame)
        assert not target.exists(), "the file must appear only once complete"
        time.sleep(0.02)
    assert sink.close() == target
    frames, size, fps = read_video(target)
    assert (frames, size) == (40, (320, 240))
    assert 15 < fps < 60  # ~40-50 FPS paced by the sleep above, whatever the machine's load
    assert not list(tmp_path.glob(".out.mp4.*")), "no temporary file is left behind"


def test_video_sink_refuses_unusable_targets_before_any_frame(tmp_path):
    with pytest.raises(UsageError, match="unknown video file type '.txt'"):
        VideoSink(tmp_path / "out.txt")
    with pytest.raises(UsageError, match="is a directory"):
        VideoSink(tmp_path)


def test_video_sink_without_frames_writes_nothing(tmp_path):
    sink = VideoSink(tmp_path / "none.mp4", fps=10)
    assert sink.close() is None
    assert list(tmp_path.iterdir()) == []


# --- display detection ----------------------------------------------------------------------------
def test_no_window_without_a_display_or_without_opencv_gui(monkeypatch):
    """opencv-python-headless has no GUI backend: classify must fall back to headless, not crash in imshow."""
    import sys

    from edgevision.edge_runtime.display import display_available, opencv_has_gui

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):
        assert display_available() is False
    monkeypatch.setenv("DISPLAY", ":0")
    assert display_available() == opencv_has_gui()
    if not opencv_has_gui():  # the headless build really cannot show a window
        import cv2

        with pytest.raises(cv2.error):
            cv2.imshow("edgevision-test", np.zeros((8, 8, 3), np.uint8))
