"""`--e2e SRC`: the camera pipeline end to end, the frame rate a webcam user sees.

Runs the edge runtime's own pipeline (`edge_runtime.pipeline.run_pipeline`, the code `edgevision classify`
runs) over a video file, a stream, a camera index or an image folder, with the overlay drawn as it would be
for a window, and reports frames per second and the time per stage (capture/decode, preprocess, inference,
postprocess, draw). The first frames are warm-up and are left out of the timings.
"""

from __future__ import annotations

from typing import Any, Dict

from edgevision.errors import SourceError

#: Top-k the pipeline computes per frame: what `edgevision classify` shows by default.
E2E_TOP_K = 3


def e2e_task(task: Dict[str, Any]) -> Dict[str, Any]:
    from edgevision.benchmarks import harness
    from edgevision.benchmarks.child import stage
    from edgevision.edge_runtime.classifier import Classifier
    from edgevision.edge_runtime.pipeline import PipelineSettings, run_pipeline

    stage("load")
    clf = Classifier(task["model"], num_threads=task.get("threads"), backend=task.get("backend", "auto"),
                     trusted=bool(task.get("trusted")), labels=task.get("labels"), delegate=task.get("delegate"),
                     arena_size=task.get("arena_size"))
    settings = PipelineSettings(top_k=E2E_TOP_K, draw=True, max_frames=int(task["max_frames"]),
                                warmup_frames=int(task.get("warmup", 1)))
    stage("e2e")
    run = run_pipeline(clf, task["source"], settings)
    with run:
        for _ in run:
            pass
    summary = run.summary
    if summary is None or summary.timed_frames == 0:
        frames = 0 if summary is None else summary.frames
        raise SourceError(
            f"--e2e {task['source']}: only {frames} frame(s), all of them warm-up; give a longer video "
            "(or more images) so that frames can be timed"
        )
    out = summary.as_dict()
    out["drawn"] = summary.drawn
    out["warmup_frames"] = settings.warmup_frames
    out["peak_rss_mb"] = harness.peak_rss_mb()
    return out
