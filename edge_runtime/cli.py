"""`edgevision classify`: classify a camera, a network stream, a video, an image or a folder, live.

A thin layer over `edgevision.edge_runtime.pipeline`: it picks the outputs (a window, JSON lines, a saved
video), handles Ctrl-C, and prints the summary. Only click and the standard library are imported at the top,
so `edgevision --help` stays fast; nothing here ever imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import click

from edgevision.bundled import DEFAULT_MODEL
from edgevision.options import (MODEL_HELP, arena_option, backend_option, delegate_option, labels_option,
                                model_argument, model_option, pick_model, threads_option, top_k_option,
                                trusted_option)
#: Output rate of a saved video when the source has none of its own (images, folders): a slideshow.
STILLS_FPS = 2.0
#: Exit status after Ctrl-C / SIGTERM, as a shell reports a process ended by that signal (128 + signal).
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


@click.command("classify")
@model_argument(required=False)
@model_option(help=f"The model, as the positional MODEL: {MODEL_HELP} The default knows 1000 ImageNet classes; "
                   f"cifar10-cnn and cifar10-mobilenetv2 know CIFAR-10's ten.  [default: {DEFAULT_MODEL}]")
@click.option("--source", "-s", required=True, metavar="SRC",
              help="Camera index (0), video file, stream URL (http://host/stream.mjpg, rtsp://...), image file "
                   "or folder of images.")
@labels_option()
@top_k_option(help="Labels reported per frame.")
@threads_option()
@backend_option()
@delegate_option()
@arena_option()
@trusted_option()
@click.option("--headless", is_flag=True,
              help="No window: one JSON line per frame on stdout. The default where there is no display.")
@click.option("--json", "as_json", is_flag=True, help="Also print one JSON line per frame when a window is shown.")
@click.option("--save", type=click.Path(dir_okay=False, writable=True), default=None, metavar="OUT.webm",
              help="Write the annotated frames to this video file (complete even after Ctrl-C); the type comes "
                   "from the extension. .webm (VP9) plays in browsers and everywhere else; .mp4 is H.264 where this "
                   "OpenCV has it, else mp4v, which desktop players read but browsers may not; also .avi, .mkv.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after this many frames.")
@click.option("--smooth", type=click.IntRange(min=1), default=1, show_default=True,
              help="Average the scores over the last N frames, so the label does not flicker.")
@click.option("--stall-timeout", type=click.FloatRange(min=0.1), default=2.0, show_default=True, metavar="SECONDS",
              help="Live sources: reconnect when no frame has come for this long.")
@click.option("--reconnect", type=click.IntRange(min=0), default=4, show_default=True, metavar="N",
              help="Live sources: reconnection attempts (0.5 s, 1 s, 2 s... apart) before giving up.")
def classify(model, model_option, source, labels, top_k, threads, backend, delegate, arena_size, trusted, headless,
             as_json, save, max_frames, smooth, stall_timeout, reconnect):
    """Classify every frame of a camera, stream, video, image or folder with MODEL (or --model).

    With a display, a window shows the top label, confidence, FPS and inference time (press q to quit).
    Without one (or with --headless), each frame is one JSON line on stdout:

    \b
      {"frame": 0, "label": "Egyptian cat", "score": 0.84, "top": [...], "infer_ms": 3.1, "total_ms": 4.0, ...}

    Live sources always classify the newest frame: when the model is slower than the camera, stale frames
    are dropped (and counted) rather than queued. Files and folders are classified frame by frame.
    A summary (frames per second, time per stage) is printed on stderr at the end.

    \b
    Examples:
      edgevision classify cifar10-cnn --source 0             (or --model cifar10-cnn)
      edgevision classify -m model.tflite -s http://192.168.1.20:8080/stream.mjpg --smooth 5
      edgevision classify -m model.tflite -s clip.mp4 --headless --save annotated.webm
      edgevision classify -m model.tflite -s photos/ --top-k 3 > results.jsonl
    """
    from edgevision.edge_runtime.capture import LiveSettings
    from edgevision.edge_runtime.model_ref import tflite_ref
    from edgevision.edge_runtime.pipeline import PipelineSettings
    from edgevision.edge_runtime.sources import parse_source

    model = pick_model(model, model_option, DEFAULT_MODEL)
    spec = parse_source(source)  # a missing file or an unusable --save fails before the model is loaded
    if save is not None:
        from pathlib import Path

        from edgevision.edge_runtime.recording import check_video_target
        check_video_target(Path(save))
    model_path = tflite_ref(model, "classify").model_file
    live = LiveSettings(stall_timeout_s=stall_timeout, reconnect_attempts=reconnect)

    from edgevision.edge_runtime.display import display_available, why_no_window

    show = not headless and display_available()
    no_window = None if show or headless else why_no_window()
    settings = PipelineSettings(top_k=top_k, smooth=smooth, draw=show or save is not None, max_frames=max_frames,
                                live=live)
    _quiet_opencv()
    from edgevision.edge_runtime import Classifier
    from edgevision.edge_runtime.sources import open_source

    # The source first: a camera that cannot be opened is reported at once, before the model is loaded.
    with _StopOnSignal() as signals:
        source = open_source(spec, live, on_event=_warn)
        if no_window:  # after the source opened: a source that fails says only its own error
            click.echo(f"note: {no_window}; one JSON line per frame on stdout instead", err=True)
        try:
            classifier = Classifier(model_path, num_threads=threads, backend=backend, labels=labels, trusted=trusted,
                                    delegate=delegate, arena_size=arena_size)
            _run(classifier, source, settings, signals, show=show, print_json=as_json or not show, save=save)
        finally:
            source.close()  # releases the camera, also after Ctrl-C
    if signals.signum is not None:
        click.echo("interrupted: stopped cleanly", err=True)
        raise click.exceptions.Exit(SIGNAL_EXIT[signals.signum])


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _quiet_opencv() -> None:
    """OpenCV's own warnings ("can't open camera by index") would repeat our one-line errors."""
    import cv2

    if not os.environ.get("EDGEVISION_DEBUG"):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


class _StopOnSignal:
    """First Ctrl-C (or SIGTERM) asks the pipeline to stop after the current frame, so the camera is
    released and the video finished; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.stop = threading.Event()
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNAL_EXIT:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        self.stop.set()

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _run(classifier, source, settings, signals: _StopOnSignal, show: bool, print_json: bool, save) -> None:
    from edgevision.edge_runtime.pipeline import format_summary, run_pipeline
    from edgevision.edge_runtime.recording import VideoSink
    from edgevision.errors import SourceError

    window = sink = lost = saved = None
    run = run_pipeline(classifier, source, settings, stop=signals.stop)
    try:
        if show:
            from edgevision.edge_runtime.display import Window

            window = Window(f"edgevision - {source.description}")
        if save is not None:
            fps = source.nominal_fps if source.spec.kind == "video" else None
            sink = VideoSink(save, fps=fps or (STILLS_FPS if not source.live else None))
        stills = source.spec.kind in ("image", "folder")
        out = sys.stdout
        try:
            for result in run:
                if print_json:
                    out.write(json.dumps(result.to_dict(source.description), ensure_ascii=False) + "\n")
                    out.flush()
                if sink is not None:
                    sink.write(result.image)
                # Stills stay on screen until a key is pressed; live frames are refreshed as they come.
                if window is not None and not window.show(result.image, wait_ms=0 if stills else 1):
                    break
        except SourceError as e:  # a live source lost for good: finish everything, then report it
            lost = e
        except BrokenPipeError:
            # `edgevision classify ... | head -5`: the reader has what it wanted. Stop like `q`, and point
            # stdout at /dev/null so that the interpreter's last flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        run.close()
        saved = sink.close() if sink is not None else None
        if window is not None:
            window.close()
    if run.summary is not None:
        for line in format_summary(run.summary):
            click.echo(line, err=True)
    if saved is not None:
        click.echo(f"saved {sink.frames} annotated frames at {sink.fps:.1f} FPS to {saved} ({sink.codec})", err=True)
        if not sink.browser_playable:
            click.echo(f"note: {sink.codec} video may not play in a web browser; save as .webm for one that does",
                       err=True)
    elif save is not None:
        click.echo(f"no frame was classified, so {save} was not written", err=True)
    if lost is not None:
        raise lost
