"""The training loop: phases, checkpoints every epoch, resume after a crash, and the run directory.

Everything here uses the Keras 3 API only (no `tf.*`), so it runs on the TensorFlow, JAX and PyTorch
backends; the GPU is used when the backend sees one.

Crash safety: after every epoch the model (with its optimizer state) is saved atomically to
`checkpoints/epoch-NNN.keras`, then `checkpoints/state.json` is atomically updated to point at it, then
older checkpoints are removed. A kill -9 at any moment leaves a consistent (state, checkpoint) pair, and
re-running the same command continues after the last completed epoch. Batches and augmentation are a pure
function of (seed, epoch, batch), so the resumed run matches an uninterrupted one to within noise.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from edgevision import __version__, atomic
from edgevision.edge_runtime.preprocess import PreprocessConfig, normalize
from edgevision.errors import ModelError, UsageError
from edgevision.train import distributed, streaming
from edgevision.train import run_dir as rd
from edgevision.edge_runtime.datasets import check_holdout
from edgevision.train.architectures import CNN_NETS
from edgevision.train.data import (Augmentation, SplitData, SplitSpec, Teacher, channel_stats, check_augmentation,
                                   count_images, load_split, make_batches)
from edgevision.train.progress import keras_verbose
from edgevision.train.recipe import check_optimizer_choice, class_weights, make_optimizer, momentum_for, schedule

log = logging.getLogger(__name__)

ARCHITECTURES = ("cnn", "mobilenetv2", "micro")
#: The 32x32 nets trained from scratch with one recipe (SGD, warm-up + cosine, a folded logit scale).
SMALL_NETS = ("cnn", "micro")
# Settings that may differ between an interrupted run and its resumption without changing the result.
# Where the images are held and how many devices share the work do not change the batches either (each device
# count cuts at most the last batch of an epoch, see distributed.Cluster.batch_multiple).
_RESUME_IGNORED = {"out", "resume", "verbose", "cache", "memory_budget", "devices", "coordinator", "num_hosts",
                   "host_index"}
#: The shape `train cnn` builds without --net (architectures.CNN_NETS).
DEFAULT_CNN_NET = "resnet9"
#: What "best" means for the checkpoint kept as the run's model.keras (a column of history.csv).
BEST_MONITOR = "val_accuracy"


#: Default cutout: a square a quarter of the input's side, i.e. 8 px on the CNN's 32 px images (the size the fast
#: CIFAR-10 schedules use) and 40 px on MobileNetV2's default 160 px input (the same patch of the upsampled image).
CUTOUT_FRACTION = 4

#: Default decoupled weight decay per architecture (AdamW takes 1/100 of it, see `_compile`). MobileNetV2's is
#: ten times the CNN's: it validated better at 0.05 than at 0.005 (benchmarks/results/findings.md,
#: "Training").
WEIGHT_DECAY = {"cnn": 5e-3, "mobilenetv2": 5e-2, "micro": 5e-3}

#: Default label smoothing per architecture. The residual CNN uses ResNet-9's 0.2; MobileNetV2 keeps the 0.1 its
#: fine-tuning recipe was measured with.
LABEL_SMOOTHING = {"cnn": 0.2, "mobilenetv2": 0.1, "micro": 0.1}


@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines a training run; recorded in run.json."""

    arch: str
    data: str
    out: str
    epochs: int
    batch_size: int
    seed: int = 0
    val_split: float = 0.1
    val_data: Optional[str] = None
    holdout: float = 0.0  # the fixed held-out fraction of each class, left out of training and validation
    mixed_precision: bool = False
    learning_rate: Optional[float] = None  # peak learning rate; None: the architecture's default
    weight_decay: Optional[float] = None  # decoupled; None: WEIGHT_DECAY[arch] (CNN 5e-3 ~ classic 5e-4 L2)
    label_smoothing: Optional[float] = None  # None: LABEL_SMOOTHING[arch]
    warmup_fraction: float = 0.15
    cutout: Optional[int] = None  # side of the cutout square in pixels; None: the architecture's default
    translate: Optional[int] = None  # pad-and-crop shift in pixels; None: an eighth of the input side
    alternate_flip: bool = False  # flip each image every other epoch instead of at random
    limit_per_class: Optional[int] = None
    net: Optional[str] = None  # cnn only: a shape of architectures.CNN_NETS; None: DEFAULT_CNN_NET
    teacher: Optional[str] = None  # a trained model (.tflite, bundled name, run) to distil from; None: labels only
    distill_weight: float = 0.5  # with a teacher: its share of each target, the one-hot label the rest
    # MobileNetV2 only
    input_size: int = 160  # as accurate as 224 px at about half the compute (findings.md, "Training")
    alpha: float = 1.0
    weights: Optional[str] = "imagenet"
    head_epochs: int = 2
    fine_tune_layers: Optional[int] = None  # None: the whole base, which beat its top 100 (findings.md)
    fine_tune_learning_rate: float = 3e-4
    # Knobs beyond the recipes (edgevision.train.recipe); the defaults keep the recipes as they are.
    optimizer: Optional[str] = None  # adam | adamw | sgd | rmsprop; None: the architecture's (cnn sgd, mnv2 adamw)
    momentum: Optional[float] = None  # sgd and rmsprop; None: recipe.DEFAULT_MOMENTUM
    lr_schedule: str = "cosine"  # cosine | constant | step, per phase
    ema: float = 0.0  # lookahead: momentum of the weights' moving average the net is reset to; 0: off
    offset_lr_scale: float = 1.0  # sgd: batch norm offsets' learning rate, as a multiple of the rest's
    class_weight: Optional[str] = None  # "balanced" or a JSON file {class: weight}; None: every class weighs 1
    rotation: float = 0.0  # degrees, random in [-rotation, rotation]
    zoom: float = 0.0  # random scale in [1 - zoom, 1 + zoom]
    color_jitter: float = 0.0  # brightness, contrast and saturation each scaled in [1 - j, 1 + j]
    random_erasing: float = 0.0  # probability of erasing a random rectangle with noise
    # Where the data lives and what trains it (edgevision.train.streaming, .distributed); none of them changes
    # what is trained on, so a resumed run may set them differently.
    cache: str = "auto"  # auto | memory | disk | none
    memory_budget: Optional[str] = None  # e.g. "4G"; None: EDGEVISION_MEMORY_BUDGET, else half the available memory
    devices: Optional[str] = None  # a count per host or "all"; None: every GPU when there are several
    coordinator: Optional[str] = None  # HOST:PORT of host 0, for several hosts (JAX)
    num_hosts: Optional[int] = None
    host_index: Optional[int] = None

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise UsageError(f"unknown architecture {self.arch!r}; expected one of {ARCHITECTURES}")
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")
        for option, pixels in (("--cutout", self.cutout), ("--translate", self.translate)):
            if pixels is not None and pixels < 0:
                raise UsageError(f"{option} must be 0 (off) or a positive number of pixels, got {pixels}")
        if not self.offset_lr_scale > 0:
            raise UsageError(f"--offset-lr-scale must be above 0, got {self.offset_lr_scale}")
        optimizers = sorted({p.optimizer for p in phases_for(self)})
        if self.offset_lr_scale != 1.0 and optimizers != ["sgd"]:
            raise UsageError(f"--offset-lr-scale applies to --optimizer sgd only; {self.arch} would train with "
                             f"{', '.join(optimizers)}")
        if not 0 <= self.ema < 1:
            raise UsageError(f"--ema must be at least 0 (off) and below 1, got {self.ema}")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise UsageError(f"--label-smoothing must be at least 0 and below 1, got {self.label_smoothing}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise UsageError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if self.fine_tune_layers is not None and self.fine_tune_layers < 0:
            raise UsageError(f"--fine-tune-layers must be 0 or more, got {self.fine_tune_layers}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.arch == "mobilenetv2" and not 0 <= self.head_epochs <= self.epochs:
            raise UsageError(f"--head-epochs must be between 0 and --epochs ({self.epochs}), got {self.head_epochs}")
        check_optimizer_choice(self.optimizer, self.momentum, self.weight_decay, self.lr_schedule)
        check_holdout(self.holdout)
        if not 0.0 < self.distill_weight <= 1.0:
            raise UsageError(f"--distill-weight must be above 0 and at most 1, got {self.distill_weight}")
        if self.net is not None and (self.arch != "cnn" or self.net not in CNN_NETS):
            raise UsageError(f"--net {self.net!r}: expected one of {sorted(CNN_NETS)}, and only for `train cnn`")
        check_augmentation(self.rotation, self.zoom, self.color_jitter, self.random_erasing)
        streaming.check_cache_mode(self.cache)
        if self.memory_budget is not None:
            streaming.parse_bytes(self.memory_budget)
        distributed.check_devices_option(self.devices)


@dataclass(frozen=True)
class Phase:
    name: str
    start: int  # global epoch index where this phase starts
    end: int  # exclusive
    learning_rate: float
    optimizer: str  # one of recipe.OPTIMIZERS
    warmup: bool = False  # ramp the learning rate up over settings.warmup_fraction of the phase


@dataclass
class RunResult:
    path: Path
    val_accuracy: float
    epochs_run: int
    resumed_from: int
    seconds: float
    wrote: bool = True  # False on the hosts of a multi-host run other than host 0, which writes the run directory


def cutout_for(settings: TrainSettings, side: int) -> int:
    """Cutout is on by default because both models overfit without it (training accuracy far above validation
    accuracy). With it the CNN validated better, and MobileNetV2's training accuracy came down without costing
    validation accuracy, which left room for the longer runs the shipped recipes use (the figures:
    benchmarks/results/findings.md, "Training"; the shipped models' own: their cards)."""
    if settings.cutout is not None:
        return settings.cutout
    return side // CUTOUT_FRACTION


def weight_decay_for(settings: TrainSettings) -> float:
    return settings.weight_decay if settings.weight_decay is not None else WEIGHT_DECAY[settings.arch]


def label_smoothing_for(settings: TrainSettings) -> float:
    if settings.label_smoothing is not None:
        return settings.label_smoothing
    return LABEL_SMOOTHING[settings.arch]


def phases_for(settings: TrainSettings) -> List[Phase]:
    if settings.arch in SMALL_NETS:
        # SGD with Nesterov momentum and a warm-up + cosine schedule: the standard fast CIFAR recipe.
        lr = settings.learning_rate or 0.1 * settings.batch_size / 128
        return [Phase("train", 0, settings.epochs, lr, settings.optimizer or "sgd", warmup=True)]
    head = settings.head_epochs
    lr = settings.learning_rate or 1e-3
    optimizer = settings.optimizer or "adamw"
    phases = []
    if head:
        phases.append(Phase("head", 0, head, lr, optimizer))
    if settings.epochs > head:
        phases.append(Phase("fine_tune", head, settings.epochs, settings.fine_tune_learning_rate, optimizer))
    return phases


# --- checkpoints -----------------------------------------------------------------------------------
def read_checkpoint_state(out: Path) -> Optional[dict]:
    path = out / rd.CHECKPOINTS / rd.CHECKPOINT_STATE
    if not path.is_file():
        return None
    try:
        state = rd.read_record(path, "checkpoint state")
    except json.JSONDecodeError:
        return None  # cannot happen with atomic writes; start over rather than crash
    if not (out / rd.CHECKPOINTS / state.get("checkpoint", "")).is_file():
        return None
    return state


def _save_checkpoint(out: Path, model, epoch: int, phase: str, history: List[dict], elapsed: float,
                     best: Optional[dict]) -> Optional[dict]:
    """Save this epoch (and, when it beats `best`, a second name for it as the best); returns the best so far.

    The best is a file of its own (`best-epoch-NNN.keras`) because the epoch checkpoints are pruned as the
    run goes on; state.json names both, so a kill -9 between any two steps leaves a pair it can resume from.
    """
    ckpt_dir = out / rd.CHECKPOINTS
    name = f"epoch-{epoch:03d}.keras"
    with atomic.atomic_path(ckpt_dir / name, suffix=".keras") as tmp:
        model.save(tmp)
    score = history[-1].get(BEST_MONITOR) if history else None
    if score is not None and math.isfinite(score) and (best is None or score > best[BEST_MONITOR]):
        best = {"epoch": epoch, BEST_MONITOR: score, "checkpoint": f"{rd.BEST_PREFIX}{name}"}
        _second_name(ckpt_dir / name, ckpt_dir / best["checkpoint"])
    atomic.write_json(
        ckpt_dir / rd.CHECKPOINT_STATE,
        {"epoch": epoch, "phase": phase, "checkpoint": name, "history": history, "elapsed_seconds": elapsed,
         "python_random_state": _python_random_state(), "best": best},
    )
    keep = {name, best["checkpoint"] if best else None}
    for old in [*ckpt_dir.glob("epoch-*.keras"), *ckpt_dir.glob(f"{rd.BEST_PREFIX}epoch-*.keras")]:
        if old.name not in keep:
            old.unlink(missing_ok=True)
    remove_stale_temporaries(out)
    return best


def _second_name(source: Path, target: Path) -> None:
    """`target` becomes a copy of `source`, atomically: a hard link where the file system has them (no
    second model's worth of disk), a copy where it does not."""
    import shutil

    with atomic.atomic_path(target, suffix=".keras") as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


# Keras' fit(shuffle=True) also shuffles the order of a PyDataset's batches each epoch, with Python's global
# `random` (one random.shuffle per epoch, in py_dataset_adapter). Our batches are a pure function of
# (seed, epoch, batch), but their order is not: a resumed process would draw a different order from the
# seed than the uninterrupted one did at that epoch, and the runs drift apart (findings.md, "Training"). So
# the generator's state is saved with every checkpoint and put back just before a resumed fit().
def _python_random_state() -> list:
    import random

    version, internal, gauss_next = random.getstate()
    return [version, list(internal), gauss_next]


def _restore_python_random_state(saved) -> None:
    import random

    if saved:  # checkpoints written before this was recorded resume with the order drawn from the seed
        version, internal, gauss_next = saved
        random.setstate((version, tuple(internal), gauss_next))


def remove_stale_temporaries(out: Path) -> None:
    """Delete temporary files a kill -9 left mid-save (atomic_path's `.<name>.<random>` files): they are
    never read, but a whole model's worth per interrupted save adds up."""
    for folder, pattern in ((out / rd.CHECKPOINTS, ".epoch-*.keras.*"),
                            (out / rd.CHECKPOINTS, f".{rd.BEST_PREFIX}epoch-*.keras.*"),
                            (out, f".{rd.MODEL}.*"), (out, f".{rd.LAST_MODEL}.*")):
        for stale in folder.glob(pattern):
            stale.unlink(missing_ok=True)


def _epoch_callback(out: Path, phase: Phase, history: List[dict], started: float, elapsed_before: float,
                    tracker: dict, writer: bool = True):
    """Checkpoints every epoch; `tracker["best"]` carries the best epoch so far across phases. A process that
    does not write the run directory (`writer` False) only takes part in gathering the weights."""
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if not writer:
                distributed.save_elsewhere(self.model)
                return
            row = {"epoch": epoch + 1, "phase": phase.name}
            row.update({k: float(v) for k, v in (logs or {}).items()})
            lr = self.model.optimizer.learning_rate
            row["learning_rate"] = float(np.asarray(keras.ops.convert_to_numpy(lr)))
            history.append(row)
            elapsed = elapsed_before + time.time() - started
            tracker["best"] = _save_checkpoint(out, self.model, epoch + 1, phase.name, history, elapsed,
                                               tracker["best"])
            from edgevision.train.reports import write_history_csv

            write_history_csv(out / rd.HISTORY, history)

    return EpochCheckpoint()


def _load_checkpoint(path: Path):
    import keras

    from edgevision.train.recipe import custom_objects

    return keras.models.load_model(path, safe_mode=True, custom_objects=custom_objects())


# --- model set-up -----------------------------------------------------------------------------------
def _compile(model, phase: Phase, settings: TrainSettings, steps_per_epoch: int) -> None:
    import keras

    total = max(1, (phase.end - phase.start) * steps_per_epoch)
    warmup = int(total * settings.warmup_fraction) if phase.warmup else 0
    rate = schedule(settings.lr_schedule, phase.learning_rate, total, warmup)
    momentum = momentum_for(phase.optimizer, settings.momentum)
    optimizer = make_optimizer(phase.optimizer, rate, weight_decay_for(settings), momentum, settings.ema,
                               settings.offset_lr_scale)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing_for(settings)),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def _recompile_keeping_state(model, phase: Phase, settings: TrainSettings, steps_per_epoch: int) -> None:
    """Resume mid-phase: the optimizer exactly as `_compile` makes it, with the checkpoint's state.

    A loaded checkpoint's optimizer is rebuilt from get_config(), which does not hold
    `exclude_from_weight_decay`: used as loaded, it decays batch-norm scales and biases after a resume, and
    the resumed run drifts from the uninterrupted one (benchmarks/results/findings.md, "Training"). So
    compile afresh and copy the saved variables (iterations, momenta) into the new optimizer.
    """
    import keras

    saved = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    _compile(model, phase, settings, steps_per_epoch)
    model.optimizer.build(model.trainable_variables)
    fresh = model.optimizer.variables
    if len(fresh) != len(saved) or any(tuple(v.shape) != tuple(s.shape) for v, s in zip(fresh, saved)):
        raise ModelError(
            "the checkpoint's optimizer state does not fit the model; delete the run's checkpoints/ folder to "
            "start this run over"
        )
    for variable, value in zip(fresh, saved):
        variable.assign(value)


def _set_trainable_for_phase(model, phase: Phase, settings: TrainSettings) -> None:
    """MobileNetV2: head phase freezes the base; fine-tuning unfreezes its top layers except batch norm."""
    if settings.arch != "mobilenetv2":
        return
    import keras

    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    if phase.name == "head":
        base.trainable = False
        return
    base.trainable = True
    top = len(base.layers) if settings.fine_tune_layers is None else settings.fine_tune_layers
    cut = max(0, len(base.layers) - top)
    for i, layer in enumerate(base.layers):
        # Frozen BN layers also run in inference mode, keeping ImageNet statistics (small batches would wreck them).
        layer.trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)


def chance_level_warning(accuracy: float, num_classes: int, num_val: int) -> Optional[str]:
    """A run that diverged still ends with "done"; say so. Seen: MobileNetV2 fine-tuned at a peak learning rate
    of 1e-3 collapsed to a constant output (chance accuracy, the loss of guessing) with no error from the
    framework (benchmarks/results/findings.md, "Training")."""
    chance = 1 / num_classes
    # Below ~100 validation images, chance-level accuracy is too noisy to mean anything.
    if num_val < 100 or accuracy > 1.5 * chance:
        return None
    return (
        f"validation accuracy {accuracy:.1%} is about chance ({chance:.1%} for {num_classes} classes): the training "
        "diverged or learned nothing; a lower peak learning rate (--learning-rate, and --fine-tune-learning-rate "
        "for mobilenetv2) usually fixes it"
    )


def _build(settings: TrainSettings, num_classes: int, preprocess: PreprocessConfig):
    from edgevision.train import architectures as arch

    if settings.arch == "cnn":
        return arch.build_cnn(num_classes, preprocess.input_size, CNN_NETS[settings.net or DEFAULT_CNN_NET])
    if settings.arch == "micro":
        return arch.build_micro(num_classes, preprocess.input_size)
    model, _ = arch.build_mobilenetv2(num_classes, settings.input_size, settings.alpha, settings.weights)
    return model


def _configure_precision(settings: TrainSettings) -> str:
    import keras

    if not settings.mixed_precision:
        keras.mixed_precision.set_global_policy("float32")
        return "float32"
    # float16 needs a GPU's tensor cores; on CPUs bfloat16 is the mixed type that is fast (AVX-512 BF16/AMX).
    policy = "mixed_float16" if _has_gpu() else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def _has_gpu() -> bool:
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def make_preprocess(settings: TrainSettings, x_train: np.ndarray) -> PreprocessConfig:
    from edgevision.train import architectures as arch

    if settings.arch in SMALL_NETS:
        mean, std = channel_stats(x_train, seed=settings.seed)
        return PreprocessConfig(input_size=arch.CNN_INPUT, color_order="RGB", mean=mean, std=std)
    return arch.mobilenet_preprocess(settings.input_size)


def _preprocess_for_loading(settings: TrainSettings, out: Path) -> PreprocessConfig:
    """Input size and colour order decide how images are cached; mean/std come later from the data."""
    from edgevision.train import architectures as arch

    if (out / rd.PREPROCESS).is_file():
        return PreprocessConfig.load(out / rd.PREPROCESS)
    if settings.arch in SMALL_NETS:
        return PreprocessConfig(input_size=arch.CNN_INPUT)
    arch.check_mobilenet_size(settings.input_size)
    return arch.mobilenet_preprocess(settings.input_size)


def _check_resumable(out: Path, settings: TrainSettings) -> None:
    run_json = out / rd.RUN
    if not run_json.is_file():
        return
    recorded = json.loads(run_json.read_text()).get("settings", {})
    # A run recorded before a knob existed trained with its default: that is no difference.
    recorded = {**_knob_defaults(), **recorded}
    mine = {k: v for k, v in dataclasses.asdict(settings).items() if k not in _RESUME_IGNORED}
    theirs = {k: v for k, v in recorded.items() if k not in _RESUME_IGNORED}
    # epochs count too: the learning-rate schedule is laid out over the whole run.
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        details = ", ".join(f"{k}: {theirs.get(k)!r} -> {mine.get(k)!r}" for k in diff)
        raise UsageError(
            f"{out} holds a run with other settings ({details}); use a new --out, or the same settings to resume"
        )


def _knob_defaults() -> dict:
    return {f.name: f.default for f in dataclasses.fields(TrainSettings) if f.default is not dataclasses.MISSING}


# --- the run -----------------------------------------------------------------------------------------
@dataclass
class RunPlan:
    """What a run (or its resumption) is made of, settled before the first epoch."""

    settings: TrainSettings
    out: Path
    state: Optional[dict]  # the last checkpoint's state.json; None: a fresh start
    split: SplitData
    preprocess: PreprocessConfig
    record: dict  # run.json, completed with the results at the end
    class_weight: Optional[dict] = None  # {class index: loss weight} for fit(); None: unweighted
    cluster: distributed.Cluster = distributed.Cluster()  # this process among the devices and hosts training
    cache_dir: Optional[Path] = None  # the disk cache of the images (cache "disk"), removed when the run completes

    @property
    def resumed_from(self) -> int:
        return self.state["epoch"] if self.state else 0

    @property
    def elapsed_before(self) -> float:
        return self.state.get("elapsed_seconds", 0.0) if self.state else 0.0


def train(settings: TrainSettings, echo: Callable[[str], None] = log.info, verbose="auto") -> RunResult:
    """Train (or resume) a run into `settings.out`; returns where it is and how it did.

    Shaped as plan, run, report: `plan_run` settles the data and writes what a resume needs, `run_phases`
    trains what is left of each phase, `finish_run` writes the model and its reports from the results.
    """
    distributed.start_hosts(settings.coordinator, settings.num_hosts, settings.host_index)
    plan = plan_run(settings, echo)
    started = time.time()
    history = list(plan.state["history"]) if plan.state else []
    model = run_phases(plan, history, started, echo, keras_verbose(verbose))
    if not plan.cluster.writer:  # host 0 writes the model and the reports
        _remove_scratch_cache(plan)
        return RunResult(plan.out, math.nan, settings.epochs - plan.resumed_from, plan.resumed_from,
                         time.time() - started, wrote=False)
    return finish_run(plan, model, history, started, echo)


def _remove_scratch_cache(plan: RunPlan) -> None:
    if plan.cache_dir is not None:
        import shutil

        shutil.rmtree(plan.cache_dir, ignore_errors=True)


def plan_run(settings: TrainSettings, echo: Callable[[str], None]) -> RunPlan:
    """Check the run may (re)start, load its data, and write labels, preprocessing and run.json."""
    import keras

    out = Path(settings.out)
    _check_resumable(out, settings)
    state = read_checkpoint_state(out)
    keras.utils.set_random_seed(settings.seed)
    policy = _configure_precision(settings)
    cluster = distributed.plan_devices(settings.devices, settings.batch_size)
    distributed.check_same_start(cluster, state["epoch"] if state else 0)
    cache_dir = out / streaming.CACHE_DIR if cluster.writer else distributed.scratch_cache_dir()
    split, cache = _load_data(settings, out, echo, cache_dir)
    preprocess = PreprocessConfig.load(out / rd.PREPROCESS) if state else make_preprocess(settings, split.x_train)
    weights = class_weights(settings.class_weight, split.classes, split.y_train)
    record = _run_record(settings, policy, split)
    record["class_weight"] = {c: weights[i] for i, c in enumerate(split.classes)} if weights else None
    record["data_path"] = cache
    record["devices"] = {"count": cluster.devices, "hosts": cluster.process_count, "global_batch": settings.batch_size}
    if cluster.devices > 1:
        echo(f"devices: {cluster.devices} on {cluster.process_count} host(s), global batch {settings.batch_size}")
    if cluster.writer:
        out.mkdir(parents=True, exist_ok=True)
        preprocess.save(out / rd.PREPROCESS)
        atomic.write_text(out / rd.LABELS, "\n".join(split.classes) + "\n")
        atomic.write_json(out / rd.RUN, record)
    return RunPlan(settings, out, state, split, preprocess, record, weights, cluster,
                   cache_dir if cache != "memory" else None)


def _load_data(settings: TrainSettings, out: Path, echo: Callable[[str], None], cache_dir: Path):
    """(the split, the data path it took: memory, disk or none; see edgevision.train.streaming)."""
    started = time.time()
    preprocess = _preprocess_for_loading(settings, out)
    spec = SplitSpec(settings.data, settings.val_data, settings.val_split, settings.seed, settings.limit_per_class,
                     settings.holdout)
    cache = _choose_cache(settings, spec, preprocess, cache_dir, echo)
    if cache == "memory":
        split = load_split(settings.data, preprocess, settings.val_split, settings.seed, settings.val_data,
                           settings.limit_per_class, settings.holdout)
    else:
        split = streaming.streamed_split(spec, preprocess, cache, cache_dir)
    for warning in split.skipped:
        echo(f"warning: {warning}")
    held = f" (a fixed {settings.holdout:g} of each class held out)" if settings.holdout else ""
    echo(
        f"data: {len(split.x_train)} training and {len(split.x_val)} validation images{held}, "
        f"{len(split.classes)} classes, loaded in {time.time() - started:.1f}s"
    )
    return split, cache


def _choose_cache(settings: TrainSettings, spec: SplitSpec, preprocess: PreprocessConfig, cache_dir: Path,
                  echo: Callable[[str], None]) -> str:
    """memory, disk or none: as asked, or (auto) by whether the cached images fit the memory budget."""
    if settings.cache != "auto":
        return settings.cache
    n_train, n_val = count_images(spec)
    side = tuple(preprocess.input_size)
    needed = streaming.memory_needed(n_train, n_val, side, augmentation_for(settings, side[0]).pad)
    budget = streaming.memory_budget(settings.memory_budget)
    on_disk = streaming.memory_needed(n_train, n_val, side, 0)
    cache = streaming.choose_cache("auto", needed, budget, streaming.free_disk(cache_dir), on_disk)
    if cache != "memory":
        echo(f"data: the images need {needed / 2**20:.0f} MiB in memory, over the budget of {budget / 2**20:.0f} MiB: "
             f"{'reading them from a cache file in ' + str(cache_dir) if cache == 'disk' else 'decoding them per batch'}")
    return cache


def augmentation_for(settings: TrainSettings, side: int) -> Augmentation:
    """Flips, an eighth of the side as pad-and-crop (or --translate), and cutout: the recipe for images `side`
    pixels square; plus the optional knobs (off by default)."""
    pad = side // 8 if settings.translate is None else settings.translate
    return Augmentation(flip=True, alternate_flip=settings.alternate_flip, pad=pad, cutout=cutout_for(settings, side),
                        rotation=settings.rotation, zoom=settings.zoom, color_jitter=settings.color_jitter,
                        random_erasing=settings.random_erasing)


def _run_record(settings: TrainSettings, policy: str, split: SplitData) -> dict:
    """run.json while training: the settings as typed, what their defaults resolved to, and the split's record."""
    import keras

    return {
        "edgevision": __version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "machine": platform.platform(),
        "precision_policy": policy,
        "settings": dataclasses.asdict(settings),
        "augmentation": dataclasses.asdict(augmentation_for(settings, split.x_train.shape[1])),
        "weight_decay": weight_decay_for(settings),
        "label_smoothing": label_smoothing_for(settings),
        "optimizer": {p.name: {"name": p.optimizer, "momentum": momentum_for(p.optimizer, settings.momentum),
                               "learning_rate_schedule": settings.lr_schedule, "peak_learning_rate": p.learning_rate,
                               "warmup": p.warmup, "ema": settings.ema,
                               "offset_lr_scale": settings.offset_lr_scale} for p in phases_for(settings)},
        "data_source": split.source,  # the one record of the split: what conversion redraws it from
        "num_train": int(len(split.x_train)),
        "num_val": int(len(split.x_val)),
        "status": "training",
    }


def run_phases(plan: RunPlan, history: List[dict], started: float, echo: Callable[[str], None], verbose):
    """Train every phase that is not done yet, checkpointing each epoch; returns the trained model."""
    settings, state, out = plan.settings, plan.state, plan.out
    batches = _train_and_val_batches(plan)
    done = plan.resumed_from
    if state:
        echo(f"resuming after epoch {done} (phase {state['phase']}) from {out / rd.CHECKPOINTS / state['checkpoint']}")
    model = None
    tracker = {"best": state.get("best") if state else None}
    with distributed.distribution_scope(plan.cluster, settings.devices):
        if state:
            model = _load_checkpoint(out / rd.CHECKPOINTS / state["checkpoint"])
        for phase in phases_for(settings):
            if done >= phase.end:
                continue
            if model is None:
                model = _build(settings, len(plan.split.classes), plan.preprocess)
                _fit_to_data(model, plan)
            callback = _epoch_callback(out, phase, history, started, plan.elapsed_before, tracker, plan.cluster.writer)
            _fit_phase(model, phase, plan, state, done, batches, callback, echo, verbose)
            done = phase.end
            state = None  # later phases start fresh (new trainable set, new optimizer)
        if model is None:  # everything was already done: only the final outputs may be missing
            ckpt = read_checkpoint_state(out)
            model = _load_checkpoint(out / rd.CHECKPOINTS / ckpt["checkpoint"])
    return _off_the_devices(plan, model)


WHITENING_SAMPLE = 5000  # images: the 12x12 patch covariance is settled long before


def _fit_to_data(model, plan: RunPlan) -> None:
    """Layers set from the training images rather than learned (a whitened stem); a fresh model only."""
    from edgevision.train.architectures import has_whitened_stem, set_whitening

    if not has_whitened_stem(model):  # the sample would be read (from disk, when streamed) for nothing
        return
    x = plan.split.x_train
    step = max(1, len(x) // WHITENING_SAMPLE)  # every class, whatever order the images come in
    set_whitening(model, normalize(x[::step][:WHITENING_SAMPLE], plan.preprocess))


def _off_the_devices(plan: RunPlan, model):
    """After data-parallel training on JAX, host 0 scores and saves a copy of the last checkpoint on one device
    (the trained variables span every device and host; the other hosts are done)."""
    if plan.cluster.backend != "jax" or plan.cluster.devices <= 1:
        return model
    distributed.end_distribution(plan.cluster)
    if not plan.cluster.writer:
        return None
    ckpt = read_checkpoint_state(plan.out)
    return _load_checkpoint(plan.out / rd.CHECKPOINTS / ckpt["checkpoint"])


def _train_and_val_batches(plan: RunPlan):
    s, split, pre, cluster = plan.settings, plan.split, plan.preprocess, plan.cluster
    num_classes, side = len(split.classes), split.x_train.shape[1]
    spread = {"shard": (cluster.process_index, cluster.process_count), "multiple": cluster.batch_multiple}
    train = make_batches(split.x_train, split.y_train, pre, s.batch_size, s.seed, augmentation_for(s, side), True,
                         num_classes, **spread, teacher=make_teacher(s, split.classes, pre))
    val_batch = -(-max(256, s.batch_size) // cluster.batch_multiple) * cluster.batch_multiple
    val = make_batches(split.x_val, split.y_val, pre, val_batch, s.seed, None, False, num_classes, **spread)
    return train, val


def make_teacher(settings: TrainSettings, classes, preprocess: PreprocessConfig) -> Optional[Teacher]:
    """The distillation teacher of `--teacher`: it must name the same classes, in order, and read the student's
    pixels as they are (same input size and colour order)."""
    if not settings.teacher:
        return None
    from edgevision.edge_runtime.evaluation import predict_arrays
    from edgevision.edge_runtime.inference import load_predictor

    predictor = load_predictor(settings.teacher)
    if list(predictor.labels) != list(classes):
        raise UsageError(f"--teacher {settings.teacher} has labels {list(predictor.labels)[:5]}..., the data's classes "
                         f"are {list(classes)[:5]}...: a teacher must be trained on the same classes, in order")
    theirs, mine = predictor.preprocess, preprocess
    if tuple(theirs.input_size) != tuple(mine.input_size) or theirs.color_order != mine.color_order:
        raise UsageError(f"--teacher {settings.teacher} reads {theirs.color_order} {tuple(theirs.input_size)} pixels, "
                         f"the student {mine.color_order} {tuple(mine.input_size)}: pick a teacher of the same input")
    return Teacher(lambda pixels: predict_arrays(predictor, pixels, batch_size=len(pixels) or 1),
                   settings.distill_weight)


def _fit_phase(model, phase: Phase, plan: RunPlan, state: Optional[dict], done: int, batches, callback,
               echo: Callable[[str], None], verbose) -> None:
    """One phase, from its first epoch or, resuming inside it, from the checkpoint's optimizer state."""
    settings, (train_batches, val_batches) = plan.settings, batches
    if state and state["phase"] == phase.name and done > phase.start:
        _recompile_keeping_state(model, phase, settings, len(train_batches))
    else:
        _set_trainable_for_phase(model, phase, settings)
        _compile(model, phase, settings, len(train_batches))
    first = max(done, phase.start)
    echo(f"phase {phase.name}: epochs {first + 1}..{phase.end}, {phase.optimizer}, {settings.lr_schedule} schedule, "
         f"peak learning rate {phase.learning_rate:g}")
    train_batches.set_epoch(first)
    callbacks = [callback] + ([_restore_at_train_begin(state.get("python_random_state"))] if state else [])
    model.fit(train_batches, validation_data=val_batches, epochs=phase.end, initial_epoch=first,
              callbacks=callbacks, verbose=verbose, class_weight=plan.class_weight)


def _restore_at_train_begin(saved):
    """Put the checkpoint's random state back once fit() has started, not before: fit() first draws one batch
    to build the metrics, which shuffles the batch order once more (the uninterrupted run made that draw
    before its first epoch, long before the state was saved)."""
    import keras

    class RestoreRandomState(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            _restore_python_random_state(saved)

    return RestoreRandomState()


def _save_best_and_last(plan: RunPlan, last, echo: Callable[[str], None]):
    """Write model.keras (the best epoch by validation accuracy) and last.keras (the last epoch); returns the
    best model and run.json's record of which is which. A run whose validation accuracy never came out a
    number keeps the last epoch as model.keras, and says so."""
    out = plan.out
    state = read_checkpoint_state(out) or {}
    best, last_epoch = state.get("best"), state.get("epoch", plan.settings.epochs)
    model = last
    if best and best["epoch"] != last_epoch:
        model = _load_checkpoint(out / rd.CHECKPOINTS / best["checkpoint"])
    for name, which in ((rd.LAST_MODEL, last), (rd.MODEL, model)):
        if plan.settings.arch in SMALL_NETS:
            from edgevision.train.architectures import fold_logit_scale

            which = fold_logit_scale(which)  # checkpoints keep it (resuming trains on); the saved models need not
        which = _loadable_anywhere(which)
        with atomic.atomic_path(out / name, suffix=".keras") as tmp:
            which.save(tmp)
        if name == rd.MODEL:
            model = which
    chosen = "best" if best else "last"
    best_epoch = best["epoch"] if best else last_epoch
    echo(f"{rd.MODEL}: epoch {best_epoch} ({'best ' + BEST_MONITOR if best else 'last epoch'}); "
         f"{rd.LAST_MODEL}: epoch {last_epoch}")
    record = {rd.MODEL: chosen, rd.LAST_MODEL: "last", "monitor": BEST_MONITOR, "best_epoch": best_epoch,
              "last_epoch": last_epoch, "best_" + BEST_MONITOR: best[BEST_MONITOR] if best else None}
    return model, record


def _loadable_anywhere(model):
    """`model`, or an uncompiled copy of it when it was compiled with edgevision's own optimizer: a saved model
    keeps its compile config, and plain Keras could not load that one without edgevision's custom_objects."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or type(optimizer).__module__.startswith("keras"):
        return model
    bare = type(model).from_config(model.get_config())
    bare.set_weights(model.get_weights())
    return bare


def finish_run(plan: RunPlan, model, history: List[dict], started: float, echo: Callable[[str], None]) -> RunResult:
    """Save the final model, score it on the validation split, and complete run.json with the results."""
    from edgevision.convert.keras_predictor import KerasPredictor
    from edgevision.train.reports import plot_curves, write_classification_reports, write_history_csv

    settings, split, out = plan.settings, plan.split, plan.out
    model, plan.record["checkpoint"] = _save_best_and_last(plan, model, echo)
    # Scored by the engine behind `edgevision evaluate`, with its probability and top-1 rules.
    validation = KerasPredictor(model, list(split.classes), plan.preprocess, batch_size=256)
    probs = _predict_all(validation, split.x_val)
    total_seconds = plan.elapsed_before + time.time() - started
    report = write_classification_reports(
        out, split.y_val, probs, split.classes, extra={"eval_set": "validation split", "model": rd.MODEL}
    )
    write_history_csv(out / rd.HISTORY, history)
    plot_curves(out / rd.CURVES, history)
    warning = chance_level_warning(report["accuracy"], len(split.classes), len(split.y_val))
    if warning:
        echo(f"warning: {warning}")
    plan.record.update(
        status="complete",
        val_accuracy=report["accuracy"],
        train_seconds=round(total_seconds, 1),
        epochs_completed=settings.epochs,
        parameters=int(model.count_params()),
    )
    atomic.write_json(out / rd.RUN, plan.record)
    streaming.remove_cache(out)
    return RunResult(out, report["accuracy"], settings.epochs - plan.resumed_from, plan.resumed_from, total_seconds)


def _predict_all(predictor, x) -> np.ndarray:
    """Probabilities of every image of `x`, an array or a streamed source (read a chunk at a time; chunks are
    a multiple of the predictor's batch, so the model sees the same batches either way)."""
    from edgevision.edge_runtime.evaluation import predict_arrays

    if isinstance(x, np.ndarray):
        return predict_arrays(predictor, x, batch_size=len(x) or 1)
    step = 4 * predictor.batch_size
    return np.concatenate([predict_arrays(predictor, x[s : s + step], batch_size=step) for s in range(0, len(x), step)])
