"""QAT, pruning and clustering with tensorflow-model-optimization, alone or combined.

Order, as tfmot's collaborative-optimisation guide does it: prune (magnitude, polynomial schedule) -> strip ->
cluster (sparsity-preserving when pruned) -> strip -> QAT (pruning-/cluster-preserving when either ran) .
Each step fine-tunes briefly with a small learning rate; the result is a tf_keras model ready for
TFLiteConverter.from_keras_model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np

from edgevision.convert.options import Optimizations
from edgevision.errors import ConversionError, first_line

#: Pruning ramps the sparsity up over this fraction of the fine-tuning steps, leaving the rest to recover.
PRUNE_RAMP_FRACTION = 0.7
#: How many times the pruning mask is updated during the ramp (tfmot's default of every 100 steps never
#: fires on a short fine-tune of a small dataset).
PRUNE_UPDATES = 10
#: Layers whose kernels pruning and clustering change (tfmot also skips biases and batch-norm parameters).
KERNEL_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")
#: Forward passes that re-estimate batch-norm statistics after pruning/clustering: with momentum 0.99 the
#: moving averages forget the old weights' statistics to within e^-2 in about 200 batches.
BN_RECALIBRATION_BATCHES = 200
BN_RECALIBRATION_MAX_PASSES = 50  # on a tiny dataset, stop after this many passes over it
# tfmot's activation ranges start at [-6, 6] and follow an exponential moving average with decay 0.999, so after
# n training steps they have moved only 1 - 0.999**n of the way to the real ranges: a short QAT run keeps ranges
# far too narrow. seed_activation_ranges() starts them from the float model's activations, and below this many
# steps that matters (what it cost and bought: benchmarks/results/findings.md).
QAT_MIN_STEPS = 2000
RANGE_SEED_IMAGES = 256  # images whose float activations seed QAT's ranges


class NormalizedImages:
    """uint8 images that read as the normalised float32 model input, one batch at a time.

    A float32 copy of a whole fine-tuning set is 4x its uint8 pixels, and Keras' fit on a numpy array copied
    it again: QAT of MobileNetV2 on 15,000 images at 160 px (1.2 GB of uint8) was OOM-killed at 19.4 GB.
    """

    def __init__(self, pixels: np.ndarray, preprocess):
        self.pixels, self.preprocess = pixels, preprocess

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index) -> np.ndarray:
        from edgevision.edge_runtime.preprocess import normalize

        return normalize(self.pixels[index], self.preprocess)


def _batches(x, y: np.ndarray, batch_size: int, seed: int):
    """A tf_keras Sequence of shuffled (inputs, labels) batches; a new seeded order every epoch."""
    import tf_keras

    class Batches(tf_keras.utils.Sequence):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.order = self._order()

        def _order(self):
            return np.random.default_rng([seed, self.epoch]).permutation(len(x))

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, i):
            idx = np.sort(self.order[i * batch_size : (i + 1) * batch_size])  # sorted: sequential reads
            return x[idx], y[idx]

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._order()

    return Batches()


@dataclass
class Optimized:
    model: object  # tf_keras model, ready for conversion
    sources: dict = field(default_factory=dict)  # {tf_keras layer name: Keras 3 layer} (weights_copied_back)
    notes: List[str] = field(default_factory=list)
    history: dict = field(default_factory=dict)


def optimize(keras_model, x, y: np.ndarray, opts: Optimizations,
             progress: Optional[Callable[[str], None]] = None) -> Optimized:
    """Apply opts (prune / cluster / QAT) to a Keras 3 model fine-tuning on normalised inputs x, labels y.

    x is a float32 array or a NormalizedImages (the same values, made batch by batch)."""
    import tf_keras

    from edgevision.convert.tfmot_bridge import rebuild_in_tf_keras

    say = progress or (lambda message: None)
    tf_keras.utils.set_random_seed(opts.seed)
    model, sources = rebuild_in_tf_keras(keras_model)
    result = Optimized(model, sources)
    if opts.prune is not None:
        say(f"pruning to {opts.prune:.0%} sparsity over {opts.fine_tune_epochs} epoch(s)")
        model = _prune(model, x, y, opts, result)
        result.notes.append(f"pruned: kernel sparsity {kernel_sparsity(model):.1%} (asked {opts.prune:.0%})")
    if opts.cluster is not None:
        say(f"clustering weights into {opts.cluster} clusters per layer over {opts.fine_tune_epochs} epoch(s)")
        model = _cluster(model, x, y, opts, result, preserve_sparsity=opts.prune is not None)
        result.notes.append(clustering_note(model, opts.cluster))
    if opts.qat:
        say(f"quantization-aware training for {opts.qat_epochs} epoch(s)")
        model = _qat(model, x, y, opts, result)
    result.model = model
    return result


def recalibrate_batch_norm(model, x: np.ndarray, batch_size: int) -> int:
    """Re-estimate batch-norm moving statistics for the current weights; returns the batches used.

    Pruning and clustering change the weights in the last steps of a short fine-tune, too late for the
    moving averages (momentum 0.9-0.99) to follow, and freezing batch norm instead leaves the network unable
    to absorb the change (benchmarks/results/findings.md). So after each such step the
    statistics are recomputed with forward passes in training mode, no weight update.
    """
    if not any(type(layer).__name__ == "BatchNormalization" for layer in model.layers):
        return 0
    steps = max(1, math.ceil(len(x) / batch_size))
    batches = 0
    order = np.random.default_rng(0).permutation(len(x))
    while batches < BN_RECALIBRATION_BATCHES:
        for start in range(0, len(x), batch_size):
            model(x[order[start : start + batch_size]], training=True)
            batches += 1
            if batches >= BN_RECALIBRATION_BATCHES or batches >= steps * BN_RECALIBRATION_MAX_PASSES:
                return batches
    return batches


def _fit(model, x, y, epochs: int, opts: Optimizations, history: dict, key: str, callbacks=(),
         learning_rate: Optional[float] = None) -> None:
    import tf_keras

    from edgevision.train.progress import keras_verbose

    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate or opts.learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(),  # the models end in a softmax
        metrics=["accuracy"],
    )
    try:
        # The fine-tunes take minutes on real data: the bar on a terminal, one line per epoch in a pipe or log.
        h = model.fit(_batches(x, y, opts.batch_size, opts.seed), epochs=epochs, verbose=keras_verbose(),
                      callbacks=list(callbacks))
    except Exception as e:  # tfmot/tf_keras raise ValueError/TypeError deep inside for unsupported graphs
        raise ConversionError(f"{key} fine-tuning failed: {type(e).__name__}: {first_line(e, 300)}") from e
    history[key] = {k: [float(v) for v in vals] for k, vals in h.history.items()}


def _steps(n: int, opts: Optimizations, epochs: int) -> int:
    return max(1, math.ceil(n / opts.batch_size)) * epochs


def _prune(model, x, y, opts, result):
    import tensorflow_model_optimization as tfmot

    sparsity = tfmot.sparsity.keras
    total = _steps(len(x), opts, opts.fine_tune_epochs)
    frequency = max(1, int(total * PRUNE_RAMP_FRACTION) // PRUNE_UPDATES)
    end_step = max(frequency, (int(total * PRUNE_RAMP_FRACTION) // frequency) * frequency)
    if end_step >= total:  # too few steps for a ramp: prune at once and fine-tune what is left
        schedule = sparsity.ConstantSparsity(opts.prune, begin_step=0, frequency=1)
    else:
        schedule = sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=opts.prune, begin_step=0,
                                            end_step=end_step, frequency=frequency)
    try:
        pruned = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
    except Exception as e:
        raise ConversionError(f"tfmot cannot prune this model: {first_line(e, 300)}") from e
    _fit(pruned, x, y, opts.fine_tune_epochs, opts, result.history, "prune", [sparsity.UpdatePruningStep()])
    model = sparsity.strip_pruning(pruned)
    recalibrate_batch_norm(model, x, opts.batch_size)
    return model


def _cluster(model, x, y, opts, result, preserve_sparsity: bool):
    import tensorflow_model_optimization as tfmot

    clustering = tfmot.clustering.keras
    try:
        clustered = clustering.cluster_weights(
            model,
            number_of_clusters=opts.cluster,
            cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
            preserve_sparsity=preserve_sparsity,
        )
    except Exception as e:
        raise ConversionError(f"tfmot cannot cluster this model: {first_line(e, 300)}") from e
    _fit(clustered, x, y, opts.fine_tune_epochs, opts, result.history, "cluster")
    model = clustering.strip_clustering(clustered)
    recalibrate_batch_norm(model, x, opts.batch_size)
    return model


def _qat(model, x, y, opts, result):
    import tensorflow_model_optimization as tfmot

    from edgevision.convert import qat_configs

    # qat_configs.quantize_apply is tfmot's quantize_apply with DepthwiseConv2D kernels fake-quantized per channel,
    # as TFLite quantizes them; tfmot's own config is per tensor for them and wrecked MobileNetV2 (see qat_configs).
    scheme = None  # tfmot's default 8-bit scheme
    if opts.cluster is not None:
        scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=opts.prune is not None)
    elif opts.prune is not None:
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    try:
        qat_model = qat_configs.quantize_apply(model, scheme)
    except Exception as e:
        raise ConversionError(f"tfmot cannot make this model quantization-aware: {first_line(e, 300)}") from e
    seed_activation_ranges(qat_model, model, x, opts.batch_size)
    seed_weight_ranges(qat_model)
    _fit(qat_model, x, y, opts.qat_epochs, opts, result.history, "qat", learning_rate=opts.qat_learning_rate)
    steps = _steps(len(x), opts, opts.qat_epochs)
    if steps < QAT_MIN_STEPS:
        result.notes.append(
            f"QAT ran only {steps} steps (enough for MobileNetV2 from bias-corrected weights, 0.3 points short without): "
            f"give it at least {QAT_MIN_STEPS} steps (more --qat-epochs, more --train-samples or a smaller "
            "--batch-size) and compare it with the post-training int8 model"
        )
    if opts.cluster is not None:
        with tfmot.quantization.keras.quantize_scope(qat_configs.CUSTOM_OBJECTS):
            qat_model = tfmot.experimental.combine.strip_clustering_cqat(qat_model)
    return qat_model


def float_activation_ranges(model, x: np.ndarray, batch_size: int) -> dict:
    """{layer name: (mean batch min, mean batch max)} of every single-output layer of a tf_keras model.

    The mean of per-batch extremes is what tfmot's moving averages converge to, so seeding with it starts
    QAT where a long run would have brought the ranges anyway.
    """
    import tf_keras

    # A fresh clone: models that come back from tfmot's strip_pruning can have layer outputs that are not
    # connected to their `inputs`, and a probe needs one consistent graph.
    clone = tf_keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    layers = [layer for layer in clone.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
    probe = tf_keras.Model(clone.inputs, [layer.output for layer in layers])
    mins, maxs = [], []
    n = min(len(x), RANGE_SEED_IMAGES)
    for start in range(0, n, batch_size):
        outs = probe(x[start : start + batch_size], training=False)
        mins.append([float(np.min(o)) for o in outs])
        maxs.append([float(np.max(o)) for o in outs])
    lo, hi = np.mean(mins, axis=0), np.mean(maxs, axis=0)
    ranges = {layer.name: (float(a), float(b)) for layer, a, b in zip(layers, lo, hi)}
    ranges[""] = (float(np.min(x[:n])), float(np.max(x[:n])))  # the model input
    return ranges


def seed_activation_ranges(qat_model, float_model, x: np.ndarray, batch_size: int) -> int:
    """Set QAT's activation ranges from the float model's activations before fine-tuning; returns how many.

    tfmot starts every activation range at [-6, 6] and moves it 0.1 % per step (see QAT_MIN_STEPS), which
    clipped MobileNetV2's residual sums (46-92 wide) for the whole of a short QAT run. The quantizer variables
    are reached through tfmot 0.8's wrapper attributes; a layer without them is left at tfmot's default.
    """
    ranges = float_activation_ranges(float_model, x, batch_size)
    seeded = 0

    def assign(variables, key):
        nonlocal seeded
        if variables and key in ranges and "min_var" in variables and "max_var" in variables:
            lo, hi = ranges[key]
            lo, hi = min(lo, 0.0), max(hi, 0.0)  # a quantization range always holds zero
            variables["min_var"].assign(np.full(variables["min_var"].shape, lo, np.float32))
            variables["max_var"].assign(np.full(variables["max_var"].shape, hi, np.float32))
            seeded += 1

    for layer in qat_model.layers:
        inner = getattr(layer, "layer", None)
        if inner is None:  # the QuantizeLayer at the input
            assign(getattr(layer, "quantizer_vars", None), "")
            continue
        assign(getattr(layer, "_output_quantizer_vars", None), inner.name)
        for activation in getattr(layer, "_quantize_activations", []):
            assign(getattr(activation, "_post_activation_vars", None), inner.name)
    return seeded


def seed_weight_ranges(qat_model) -> int:
    """Set each weight quantizer's range from its kernel, as QAT's first training step would; returns how many.

    tfmot creates them at [-6, 6] and sets them only in training, so until then the QAT graph run for inference
    (a range check, an evaluation before fine-tuning) rounds kernels far more coarsely than the int8 file will.
    Calling a quantizer in training mode is how tfmot's wrapper updates them.
    """
    import tensorflow as tf

    seeded = 0
    for layer in qat_model.layers:
        for weight, quantizer, variables in getattr(layer, "_weight_vars", None) or []:
            if variables and "min_var" in variables:
                quantizer(tf.convert_to_tensor(weight), training=True, weights=variables)
                seeded += 1
    return seeded


def named_kernels(model) -> List[tuple]:
    """(layer name, class, kernel) of the conv, depthwise and dense layers, found through any wrappers."""
    out = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # QuantizeWrapper keeps the original layer
        if type(inner).__name__ in KERNEL_LAYERS:
            weights = inner.get_weights()
            if weights:
                out.append((inner.name, type(inner).__name__, np.asarray(weights[0])))
    return out


def kernels(model) -> List[np.ndarray]:
    return [k for _, _, k in named_kernels(model)]


def clustering_note(model, clusters: int) -> str:
    """Say which kernels ended up with at most `clusters` distinct values, and which tfmot left alone."""
    named = named_kernels(model)
    left = [f"{name} ({cls})" for name, cls, k in named if len(np.unique(k)) > clusters]
    note = (f"clustered: {len(named) - len(left)} of {len(named)} kernels have at most {clusters} distinct values "
            "(per output channel in the .tflite file, where batch norm is folded into the kernels)")
    if left:
        note += f"; tfmot does not cluster {', '.join(left[:5])}" + (" ..." if len(left) > 5 else "")
    return note


def kernel_sparsity(model) -> float:
    ks = kernels(model)
    total = sum(k.size for k in ks)
    return float(sum(int(np.sum(k == 0)) for k in ks) / total) if total else 0.0


def max_unique_weights(model) -> int:
    ks = kernels(model)
    return max((len(np.unique(k)) for k in ks), default=0)
