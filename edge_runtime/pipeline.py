"""The live classification pipeline: frames in, labelled frames out, every stage timed.

    from edgevision.edge_runtime import Classifier
    from edgevision.edge_runtime.pipeline import PipelineSettings, run_pipeline

    clf = Classifier("model.tflite")
    with run_pipeline(clf, "0", PipelineSettings(top_k=3, smooth=5)) as run:
        for result in run:
            print(result.frame, result.label, result.score, result.times.total_ms)
    print(run.summary.fps, run.summary.stages["inference"].p50)

Per frame: capture (waiting for the frame and decoding it), then one `Classifier.classify` call, which
times its own stages: preprocess (resize, colour order, normalise or quantize), inference (`invoke`) and
postprocess (dequantize, softmax if needed, smoothing, top-k); then draw (the overlay; only when
`draw=True`, i.e. when a window or a saved video will show it). Stages are timed with
`time.perf_counter_ns`. `edgevision classify` and `edgevision bench --e2e` both run this code.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgevision.edge_runtime.capture import LiveSettings
from edgevision.edge_runtime.classifier import ClassifyTimings
from edgevision.edge_runtime.overlay import OverlayStats, draw_overlay
from edgevision.edge_runtime.smoothing import ScoreSmoother
from edgevision.edge_runtime.sources import FrameSource, open_source
from edgevision.errors import SourceError, UsageError

NS_PER_MS = 1_000_000
STAGES = ("capture", "preprocess", "inference", "postprocess", "draw", "total")
#: Smoothing of the FPS shown on the overlay (weight of the newest frame): steady, yet follows changes.
FPS_EMA_WEIGHT = 0.1
#: Percentiles are computed over at most this many recent frames, so a camera left running for days
#: does not grow memory without bound; count, mean, min and max cover every frame.
MAX_TIMING_SAMPLES = 100_000


@dataclass(frozen=True)
class PipelineSettings:
    top_k: int = 3
    #: Average the scores over the last N frames (1 = no smoothing).
    smooth: int = 1
    #: Draw the overlay on each frame (needed for a window or a saved video; costs time otherwise).
    draw: bool = False
    #: Stop after this many classified frames (None: until the source ends or `stop` is set).
    max_frames: Optional[int] = None
    #: The first frames pay for interpreter and cache warm-up; they are classified and yielded but left
    #: out of the summary's timings and FPS.
    warmup_frames: int = 1
    live: LiveSettings = field(default_factory=LiveSettings)

    def __post_init__(self):
        if self.top_k < 1:
            raise UsageError(f"top_k must be 1 or more, got {self.top_k!r}")
        if self.smooth < 1:
            raise UsageError(f"smooth must be 1 frame or more, got {self.smooth!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"max_frames must be 1 or more, got {self.max_frames!r}")
        if self.warmup_frames < 0:
            raise UsageError(f"warmup_frames must be 0 or more, got {self.warmup_frames!r}")


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds spent on one frame in each stage."""

    capture_ms: float
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    draw_ms: float
    total_ms: float

    def as_dict(self) -> Dict[str, float]:
        return {stage: getattr(self, f"{stage}_ms") for stage in STAGES}


@dataclass(frozen=True)
class FrameResult:
    #: 0, 1, 2... over the classified frames.
    frame: int
    #: The frame's position in the source (gaps for live sources are dropped frames).
    source_index: int
    #: The image file's name for folder and image sources, else "".
    name: str
    top: Sequence  # Classification(index, label, score), best first
    times: StageTimes
    #: Stale frames dropped so far (live sources only).
    dropped: int
    #: Wall-clock time the result was ready (seconds since the epoch).
    timestamp: float
    #: From the moment the frame was read to the result (live sources: how old the answer is).
    latency_ms: float
    #: The frame, with the overlay drawn on it when drawing is on. Owned by the caller.
    image: np.ndarray = field(repr=False)

    @property
    def label(self) -> str:
        return self.top[0].label if self.top else ""

    @property
    def score(self) -> float:
        return float(self.top[0].score) if self.top else 0.0

    def to_dict(self, source: str = "") -> dict:
        """The JSON line `edgevision classify` prints for this frame."""
        ms = lambda v: round(v, 3)  # noqa: E731  (microsecond resolution is plenty)
        d = {
            "frame": self.frame,
            "label": self.label,
            "score": round(self.score, 6),
            "top": [c.to_dict() for c in self.top],
            "infer_ms": ms(self.times.inference_ms),
            "total_ms": ms(self.times.total_ms),
            "capture_ms": ms(self.times.capture_ms),
            "preprocess_ms": ms(self.times.preprocess_ms),
            "postprocess_ms": ms(self.times.postprocess_ms),
            "draw_ms": ms(self.times.draw_ms),
            "latency_ms": ms(self.latency_ms),
            "source": source,
            "source_frame": self.source_index,
            "dropped": self.dropped,
            "timestamp": round(self.timestamp, 3),
        }
        if self.name:
            d["name"] = self.name
        return d


@dataclass(frozen=True)
class StageSummary:
    n: int
    mean: float
    p50: float
    p90: float
    min: float
    max: float

    def as_dict(self) -> Dict[str, float]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class PipelineSummary:
    source: str
    live: bool
    #: Frames classified (warm-up included).
    frames: int
    #: Frames in the timing statistics (warm-up excluded).
    timed_frames: int
    seconds: float
    #: Classified frames per second after warm-up, including the caller's own time per frame (display,
    #: writing video): the rate a user sees.
    fps: float
    dropped: int
    skipped: Tuple[Tuple[str, str], ...]
    reconnects: int
    #: "end" (source finished), "max_frames", "stopped" (stop event) or "lost" (live source gave up).
    stop_reason: str
    stages: Dict[str, StageSummary]
    #: Whether the overlay was drawn (the draw stage is 0 otherwise).
    drawn: bool = False
    events: Tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "live": self.live,
            "frames": self.frames,
            "timed_frames": self.timed_frames,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 3),
            "dropped": self.dropped,
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
            "reconnects": self.reconnects,
            "stop_reason": self.stop_reason,
            "drawn": self.drawn,
            "stages_ms": {k: v.as_dict() for k, v in self.stages.items()},
        }


class _StageRecorder:
    def __init__(self):
        self.count = 0
        self.total = 0.0
        self.lo = float("inf")
        self.hi = 0.0
        self.samples: Deque[float] = deque(maxlen=MAX_TIMING_SAMPLES)

    def add(self, ms: float) -> None:
        self.count += 1
        self.total += ms
        self.lo = min(self.lo, ms)
        self.hi = max(self.hi, ms)
        self.samples.append(ms)

    def summary(self) -> StageSummary:
        if not self.count:
            return StageSummary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        p50, p90 = np.percentile(np.fromiter(self.samples, dtype=np.float64), [50, 90])
        return StageSummary(self.count, self.total / self.count, float(p50), float(p90), self.lo, self.hi)


class PipelineRun:
    """One run over one source. Iterate it for FrameResults; `summary` is ready once iteration ends.

    Stops when the source ends, after `settings.max_frames`, or when `stop` is set (from a signal
    handler or another thread). A live source that is lost for good raises SourceError from the
    iteration, after the summary has been filled in.
    """

    def __init__(
        self,
        classifier,
        source,
        settings: PipelineSettings = PipelineSettings(),
        stop: Optional[threading.Event] = None,
        on_event: Optional[Callable[[str], None]] = None,
    ):
        self.classifier = classifier
        self.settings = settings
        self.stop = stop if stop is not None else threading.Event()
        self._on_event = on_event
        self._source_arg = source
        self.source: Optional[FrameSource] = source if isinstance(source, FrameSource) else None
        self._owns_source = self.source is None
        self.summary: Optional[PipelineSummary] = None
        self._recorders = {stage: _StageRecorder() for stage in STAGES}
        self._started = False
        self._gen = None
        self._dropped = 0

    # --- lifecycle ----------------------------------------------------------------------------------
    def open(self) -> "PipelineRun":
        if self.source is None:
            self.source = open_source(self._source_arg, self.settings.live, self._on_event)
        return self

    def close(self) -> None:
        """End the run: finishes the summary (also after an early `break`) and releases the source."""
        if self._gen is not None:
            self._gen.close()
        self._release_source()

    def _release_source(self) -> None:
        if self.source is not None and self._owns_source:
            self.source.close()

    def __enter__(self) -> "PipelineRun":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        if self._started:
            raise UsageError("a PipelineRun can be iterated once; call run_pipeline again for another pass")
        self._started = True
        self.open()
        self._gen = self._run()
        return self._gen

    # --- the loop -----------------------------------------------------------------------------------
    def _run(self):
        settings, source = self.settings, self.source
        # Smoothing needs every frame's probabilities; without it classify ranks the raw outputs (its fast path).
        self._adjust = ScoreSmoother(settings.smooth).update if settings.smooth > 1 else None
        self._timings = ClassifyTimings()
        self._fps_ema: Optional[float] = None
        self._last_done: Optional[int] = None
        self._timed_from: Optional[int] = None  # clock when the first timed (post-warm-up) frame began
        clock = time.perf_counter_ns
        frames = 0
        reason = "end"
        self._dropped = 0
        run_start = clock()
        try:
            while True:
                if settings.max_frames is not None and frames >= settings.max_frames:
                    reason = "max_frames"
                    break
                if self.stop.is_set():
                    reason = "stopped"
                    break
                t0 = clock()
                try:
                    frame = source.read(stop=self.stop)
                except SourceError:
                    reason = "lost"
                    raise
                t1 = clock()
                if frame is None:
                    reason = "stopped" if self.stop.is_set() else "end"
                    break
                result = self._classify_frame(frame, frames, t0, t1)
                frames += 1
                yield result
        finally:
            end = clock()
            self.summary = self._summarize(frames, reason, run_start, self._timed_from, end)
            self._release_source()

    def _classify_frame(self, frame, index: int, t0: int, t1: int) -> FrameResult:
        """Classify (and draw) one frame read between clock times t0 and t1; record its stage times."""
        settings, source, timings, clock = self.settings, self.source, self._timings, time.perf_counter_ns
        top = self.classifier.classify(frame.image, settings.top_k, "BGR", timings=timings,
                                       adjust_scores=self._adjust)
        t4 = clock()
        if settings.draw:
            stats = OverlayStats(fps=self._fps_ema, infer_ms=timings.invoke_ms, dropped=source.dropped)
            draw_overlay(frame.image, top, stats)
        t5 = clock()
        times = StageTimes(
            capture_ms=(t1 - t0) / NS_PER_MS,
            preprocess_ms=timings.prepare_ms,
            inference_ms=timings.invoke_ms,
            # The rest of the classify call, so that the stages add up to the total exactly.
            postprocess_ms=(t4 - t1 - timings.prepare_ns - timings.invoke_ns) / NS_PER_MS,
            draw_ms=(t5 - t4) / NS_PER_MS,
            total_ms=(t5 - t0) / NS_PER_MS,
        )
        if index >= settings.warmup_frames:
            if self._timed_from is None:
                self._timed_from = t0
            for stage, value in times.as_dict().items():
                self._recorders[stage].add(value)
        # The loop's real rate, caller's time included (display, video writing).
        if self._last_done is not None and t5 > self._last_done:
            rate = NS_PER_MS * 1000 / (t5 - self._last_done)
            ema = self._fps_ema
            self._fps_ema = rate if ema is None else (1 - FPS_EMA_WEIGHT) * ema + FPS_EMA_WEIGHT * rate
        self._last_done = t5
        # Frames that arrive after the last one we classify were not dropped for being stale.
        self._dropped = source.dropped
        return FrameResult(
            frame=index,
            source_index=frame.index,
            name=frame.name,
            top=top,
            times=times,
            dropped=self._dropped,
            timestamp=time.time(),
            latency_ms=(t5 - frame.captured_ns) / NS_PER_MS,
            image=frame.image,
        )

    def _summarize(self, frames: int, reason: str, run_start: int, timed_from, end: int) -> PipelineSummary:
        source = self.source
        timed = self._recorders["total"].count
        span_ns = end - (timed_from if timed_from is not None else run_start)
        fps = timed / (span_ns / 1e9) if timed and span_ns > 0 else 0.0
        return PipelineSummary(
            source=source.description if source is not None else str(self._source_arg),
            live=bool(source is not None and source.live),
            frames=frames,
            timed_frames=timed,
            seconds=(end - run_start) / 1e9,
            fps=fps,
            dropped=self._dropped,
            skipped=tuple(source.skipped) if source is not None else (),
            reconnects=getattr(source, "reconnects", 0),
            stop_reason=reason,
            stages={stage: rec.summary() for stage, rec in self._recorders.items()},
            drawn=self.settings.draw,
            events=tuple(source.events) if source is not None else (),
        )


def run_pipeline(
    classifier,
    source,
    settings: PipelineSettings = PipelineSettings(),
    stop: Optional[threading.Event] = None,
    on_event: Optional[Callable[[str], None]] = None,
) -> PipelineRun:
    """Classify every frame of `source` (a FrameSource, or anything `open_source` accepts).

    `classifier` is an `edgevision.edge_runtime.Classifier` (anything with its `classify(image, k,
    color_order, timings=, adjust_scores=)`). Returns a PipelineRun: iterate it for FrameResults, then read `.summary`.
    The source is opened on the first iteration (or on `open()`/`with`), so errors such as a camera that
    cannot be opened surface there as SourceError.
    """
    return PipelineRun(classifier, source, settings, stop=stop, on_event=on_event)


def format_summary(summary: PipelineSummary) -> List[str]:
    """Human-readable lines for the end of a run (the CLI prints them on stderr)."""
    # A rate needs timed frames: a single image is all warm-up, and "0.0 FPS" would be a false figure.
    rate = (
        f": {summary.fps:.1f} FPS"
        + (f" (after {summary.frames - summary.timed_frames} warm-up)" if summary.frames > summary.timed_frames else "")
        if summary.timed_frames
        else ""
    )
    lines = [
        f"classified {summary.frames} frame{'s' if summary.frames != 1 else ''} from {summary.source} "
        f"in {summary.seconds:.2f} s{rate}"
    ]
    if summary.timed_frames:
        cells = []
        for stage in STAGES:
            s = summary.stages[stage]
            if stage == "draw" and not summary.drawn:
                continue
            cells.append(f"{stage} {s.p50:.2f}")
        lines.append("median ms per frame: " + ", ".join(cells) + f" (p90 total {summary.stages['total'].p90:.2f})")
    if summary.live:
        lines.append(f"dropped {summary.dropped} stale frame{'s' if summary.dropped != 1 else ''} (live source: "
                     f"always the newest frame is classified); reconnects {summary.reconnects}")
    if summary.skipped:
        names = ", ".join(n for n, _ in summary.skipped[:5]) + (" ..." if len(summary.skipped) > 5 else "")
        lines.append(f"skipped {len(summary.skipped)} unreadable image{'s' if len(summary.skipped) != 1 else ''}: {names}")
    return lines
