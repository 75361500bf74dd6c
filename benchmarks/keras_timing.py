"""`--compare-tf`: the same model through TensorFlow, to show what the conversion bought.

Runs in a child process of its own (TensorFlow's memory and threads must not touch the TFLite numbers) and
is the only part of benchmarks/ that imports TensorFlow. Two numbers, because users meet both: Keras
`predict()` (what most tutorials call, with its per-call data-pipeline overhead) and a direct
`model(x, training=False)` call (the fastest plain Keras path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from edgevision.errors import ModelError, require


def _load_keras(path: Path):
    """Through the loader predict and convert use: it refuses code-carrying layers before Keras runs them."""
    require("keras", "train", "--compare-tf (timing the Keras model)")
    from edgevision.convert.loading import load_keras

    return load_keras(path)


def time_keras(task: Dict[str, Any]) -> Dict[str, Any]:
    import numpy as np

    from edgevision.benchmarks import harness
    from edgevision.benchmarks.child import stage

    tf = require("tensorflow", "train", "--compare-tf (timing the Keras model)")
    threads = int(task["threads"])
    # Same thread budget as the interpreter it is compared with; must be set before TensorFlow runs an op.
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    path = Path(task["model"])
    stage("load")
    t0 = harness.time.perf_counter_ns()
    model = _load_keras(path)
    load_ms = (harness.time.perf_counter_ns() - t0) / harness.NS_PER_MS
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ModelError(f"{path.name}: expected one image input (batch, height, width, channels), got {shape}")
    x = np.random.default_rng(0).uniform(-1.0, 1.0, size=(1,) + tuple(int(d) for d in shape[1:]))
    x = x.astype(np.float32)

    variants = []
    stage("predict")
    m = harness.measure(lambda: model.predict(x, verbose=0), task["runs"], task["warmup"], compare_bare=False)
    variants.append(_variant("keras.predict", m, task))
    stage("call")
    m = harness.measure(lambda: model(x, training=False), task["runs"], task["warmup"], compare_bare=False)
    variants.append(_variant("keras.call", m, task))
    common = {
        "backend_version": f"tensorflow {tf.__version__}",
        "bytes": path.stat().st_size,
        "load_ms": load_ms,
        "peak_rss_mb": harness.peak_rss_mb(),
        "input": {"name": model.inputs[0].name, "shape": [1, *map(int, shape[1:])], "dtype": "float32"},
        "quantization": "keras float32",
    }
    return {"common": common, "variants": variants}


def _variant(name: str, m, task: Dict[str, Any]) -> Dict[str, Any]:
    from edgevision.benchmarks import harness

    stats = harness.latency_stats(m.samples_ns)
    return {
        "backend": name,
        "latency_ms": stats.to_dict(),
        "inferences_per_s": stats.per_second,
        "runs": stats.n,
        "warmup": task["warmup"],
    }
