"""`edgevision train cnn|micro|mobilenetv2`: thin click commands over edgevision.train.trainer.train()."""

from __future__ import annotations

import click

from edgevision.errors import UsageError
from edgevision.options import seed_option
# No TensorFlow or Keras behind this import: the defaults below are read from the settings dataclass, the one
# place they are written down.
from edgevision.train.recipe import DEFAULT_MOMENTUM, EMA_EVERY, LR_SCHEDULES, OPTIMIZERS
from edgevision.train.streaming import BUDGET_ENV, CACHE_MODES
from edgevision.train.architectures import CNN_NETS
from edgevision.train.trainer import CUTOUT_FRACTION, DEFAULT_CNN_NET, LABEL_SMOOTHING, WEIGHT_DECAY, TrainSettings


def _common(f):
    options = [
        click.option("--data", default="cifar10", show_default=True,
                     help="'cifar10' (Keras download, cached) or an image folder with one subfolder per class."),
        click.option("--out", "out", required=True, type=click.Path(file_okay=False),
                     help="Run directory: model, labels, preprocessing, reports and checkpoints go here."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs in all (default depends on the model)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per step (default depends on the model)."),
        seed_option(help="Seeds the split, initialisation and augmentation.", default=TrainSettings.seed),
        click.option("--val-split", type=float, default=TrainSettings.val_split, show_default=True,
                     help="Fraction of each class held out for validation (stratified, seeded)."),
        click.option("--val-data", type=click.Path(file_okay=False), default=None,
                     help="A separate validation folder (overrides --val-split)."),
        click.option("--holdout", type=float, default=TrainSettings.holdout, show_default=True,
                     help="Fraction of each class of --data set aside before the split, the same images whatever "
                          "the seed: never trained or validated on; score them with `evaluate --holdout`."),
        click.option("--mixed-precision", is_flag=True, help="float16 on GPUs (bfloat16 on CPUs) for speed."),
        click.option("--learning-rate", type=float, default=None, help="Peak learning rate (default depends on the model)."),
        click.option("--weight-decay", type=float, default=None,
                     help=f"Decoupled weight decay [default: {WEIGHT_DECAY['cnn']} for cnn and micro, "
                          f"{WEIGHT_DECAY['mobilenetv2']} for mobilenetv2]."),
        click.option("--label-smoothing", type=float, default=None,
                     help=f"Label smoothing of the loss [default: {LABEL_SMOOTHING['cnn']} for cnn, "
                          f"{LABEL_SMOOTHING['micro']} for micro, {LABEL_SMOOTHING['mobilenetv2']} for mobilenetv2]."),
        *_augmentation_options(),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
                     help="Optimizer [default: the model's recipe: sgd (Nesterov) for cnn and micro, adamw for mobilenetv2]."),
        click.option("--momentum", type=float, default=None,
                     help=f"Momentum of sgd or rmsprop [default: {DEFAULT_MOMENTUM['sgd']} for sgd, "
                          f"{DEFAULT_MOMENTUM['rmsprop']} for rmsprop]."),
        click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=TrainSettings.lr_schedule,
                     show_default=True,
                     help="Learning rate over each phase: cosine decay, constant, or step (x0.1 at 1/2 and 3/4); "
                          "cnn warms up first with cosine and constant."),
        click.option("--ema", type=float, default=TrainSettings.ema, show_default=True,
                     help="Lookahead: keep a moving average of the weights (this momentum per step) and reset the "
                          f"net to it every {EMA_EVERY} steps, as airbench does; 0 disables."),
        click.option("--offset-lr-scale", type=float, default=TrainSettings.offset_lr_scale, show_default=True,
                     help="sgd: batch norm's offsets learn this many times faster than the weights, as airbench's "
                          "do (64 there)."),
        click.option("--class-weight", default=None, metavar="balanced|FILE",
                     help="Weigh the loss per class: 'balanced' (inverse class frequency) or a JSON file "
                          "{class: weight} (classes it omits weigh 1) [default: every class weighs 1]."),
        click.option("--limit-per-class", type=int, default=None,
                     help="Use at most N images per class (quick experiments and tests)."),
        click.option("--resume", is_flag=True,
                     help="Require a checkpoint to continue from (re-running the same command resumes anyway)."),
        *_scale_options(),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _augmentation_options():
    """What is done to each training image; all but cutout and the shift are off by default."""
    return [
        click.option("--cutout", type=int, default=None,
                     help="Side in pixels of a random square blanked out of each training image; 0 disables "
                          f"[default: 1/{CUTOUT_FRACTION} of the input side: 8 for cnn and micro, 40 for mobilenetv2 at 160 px]."),
        click.option("--translate", type=int, default=None,
                     help="Augmentation: pad-and-crop shift of up to this many pixels each way; 0 disables "
                          "[default: 1/8 of the input side: 4 for cnn and micro, 20 for mobilenetv2 at 160 px]."),
        click.option("--alternate-flip", is_flag=True,
                     help="Augmentation: flip each image every other epoch (a seeded half first) instead of at random."),
        click.option("--rotation", type=float, default=TrainSettings.rotation, show_default=True,
                     help="Augmentation: random rotation up to this many degrees either way; 0 disables."),
        click.option("--zoom", type=float, default=TrainSettings.zoom, show_default=True,
                     help="Augmentation: random zoom by a factor in [1-ZOOM, 1+ZOOM]; 0 disables."),
        click.option("--color-jitter", type=float, default=TrainSettings.color_jitter, show_default=True,
                     help="Augmentation: brightness, contrast and saturation scaled in [1-J, 1+J]; 0 disables."),
        click.option("--random-erasing", type=float, default=TrainSettings.random_erasing, show_default=True,
                     help="Augmentation: probability of replacing a random rectangle with noise; 0 disables."),
    ]


def _scale_options():
    """Data larger than memory, several devices, several hosts (edgevision.train.streaming, .distributed)."""
    return [
        click.option("--cache", type=click.Choice(CACHE_MODES), default=TrainSettings.cache, show_default=True,
                     help="Where the prepared images are kept: memory; disk (a cache file in the run directory); "
                          "none (decoded again every epoch); auto: memory when it fits the memory budget, else disk."),
        click.option("--memory-budget", metavar="SIZE", default=None,
                     help=f"Memory the cached images may take, e.g. 4G [default: ${BUDGET_ENV}, else half of the "
                          "memory available]."),
        click.option("--devices", metavar="N|all", default=None,
                     help="Devices per host to train on, data parallel; --batch-size is the global batch "
                          "[default: every GPU when there are several, else one device]."),
        click.option("--coordinator", metavar="HOST:PORT", default=None, envvar="EDGEVISION_COORDINATOR",
                     help="Several hosts (JAX backend): host 0's address, the same on every host."),
        click.option("--num-hosts", type=click.IntRange(min=1), default=None, envvar="EDGEVISION_NUM_HOSTS",
                     help="Several hosts: how many take part."),
        click.option("--host-index", type=click.IntRange(min=0), default=None, envvar="EDGEVISION_HOST_INDEX",
                     help="Several hosts: this one's index, 0 to N-1; host 0 writes the run directory."),
    ]


@click.group()
def train():
    """Train a model into a run directory (needs the train extra: pip install 'edgevision[train]')."""


@train.command("cnn")
@_common
@click.option("--net", type=click.Choice(sorted(CNN_NETS)), default=None,
              help="The network's shape: resnet9 (residual stages), airbench (a whitened stem, two convs per "
                   f"stage) or airbench-gelu (the same with airbench's GELU for ReLU) [default: {DEFAULT_CNN_NET}].")
def cnn(**kwargs):
    """A compact residual CNN for 32x32 images (under 1.5 M parameters), e.g. CIFAR-10.

    The defaults are the bundled model's recipe: 30 epochs at batch 512. How it scored and how long it took:
    the README's model table and the model card (edgevision/models/cifar10-cnn.md).

    \b
    Example:
      edgevision train cnn --data cifar10 --out runs/cnn
    """
    _run("cnn", kwargs, default_epochs=30, default_batch=512)


MICRO_EPOCHS, MICRO_BATCH = 40, 512


@train.command("micro")
@_common
@click.option("--teacher", default=None, metavar="MODEL",
              help="Distil from a trained model of the same classes and input (a .tflite file, a bundled name such "
                   "as cifar10-cnn, or a run directory): each training target mixes in its probabilities.")
@click.option("--distill-weight", type=float, default=TrainSettings.distill_weight, show_default=True,
              help="With --teacher: the teacher's share of each target (the one-hot label has the rest).")
def micro(**kwargs):
    """A residual CNN for microcontrollers (32x32 images, about 128 K parameters): its int8 file fits in
    160 KiB of flash and runs in TensorFlow Lite Micro within a 256 KiB arena.

    The defaults are the bundled cifar10-micro's recipe: 40 epochs at batch 512, the cnn's schedule with
    label smoothing 0.1. How it scored: the model card (edgevision/models/cifar10-micro.md).

    \b
    Example:
      edgevision train micro --data cifar10 --out runs/micro
      edgevision convert runs/micro --quant int8 --out micro.tflite
    """
    _run("micro", kwargs, default_epochs=MICRO_EPOCHS, default_batch=MICRO_BATCH)


@train.command("mobilenetv2")
@_common
@click.option("--weights", default=TrainSettings.weights, show_default=True,
              help="imagenet (Keras download and cache), none (random init) or a weights file path.")
@click.option("--input-size", type=int, default=TrainSettings.input_size, show_default=True,
              help="Square input size, 96 to 224 (on CIFAR-10, 224 px was no more accurate than 160 in a 12-epoch "
                   "comparison, at twice the compute).")
@click.option("--alpha", type=float, default=TrainSettings.alpha, show_default=True, help="Width multiplier (ImageNet weights: 0.35-1.4).")
@click.option("--head-epochs", type=int, default=None,
              help=f"Epochs training only the new head [default: {TrainSettings.head_epochs}, or --epochs if that is smaller].")
@click.option("--fine-tune-layers", type=int, default=None,
              help="Top layers of the base unfrozen in the fine-tuning phase; batch norm stays frozen "
                   "[default: all of them].")
@click.option("--fine-tune-learning-rate", type=float, default=TrainSettings.fine_tune_learning_rate, show_default=True)
def mobilenetv2(**kwargs):
    """MobileNetV2 transfer learning: a new head on the frozen base, then fine-tuning of its top layers.

    The defaults are the bundled model's recipe: 160 px, 2 head + 22 fine-tuning epochs at batch 64. How six
    seeds of it scored: the README's model table and the model card (edgevision/models/cifar10-mobilenetv2.md).

    \b
    Example:
      edgevision train mobilenetv2 --data cifar10 --out runs/mnv2
    """
    _run("mobilenetv2", kwargs, default_epochs=24, default_batch=64)


def _run(arch: str, kwargs: dict, default_epochs: int, default_batch: int) -> None:
    from edgevision.native_log import quiet_native_stderr

    # TensorFlow's native start-up lines (oneDNN, CUDA probing) would bury our one-line messages; the
    # lines that are not known noise are replayed afterwards.
    with quiet_native_stderr():
        result, epochs = _train(arch, kwargs, default_epochs, default_batch)
    if not result.wrote:
        click.echo(f"done: {epochs} epochs; host 0 wrote the run directory")
        return
    click.echo(
        f"done: validation accuracy {result.val_accuracy * 100:.2f}% after {epochs} epochs "
        f"({result.seconds / 60:.1f} min); run directory {result.path}"
    )


def _train(arch: str, kwargs: dict, default_epochs: int, default_batch: int):
    from pathlib import Path

    from edgevision.errors import require

    require("keras", "train", "training")
    from edgevision.train.trainer import read_checkpoint_state, train as run_training

    resume = kwargs.pop("resume")
    # None means "not given" (click refuses 0 and negatives), so `or` would turn a typo into the default.
    kwargs["epochs"] = default_epochs if kwargs["epochs"] is None else kwargs["epochs"]
    kwargs["batch_size"] = default_batch if kwargs["batch_size"] is None else kwargs["batch_size"]
    if arch == "mobilenetv2" and kwargs.get("head_epochs") is None:
        # `--epochs 1` should just work: the head phase then takes the one epoch there is.
        kwargs["head_epochs"] = min(TrainSettings.head_epochs, kwargs["epochs"])
    if resume and read_checkpoint_state(Path(kwargs["out"])) is None:
        raise UsageError(f"--resume: {kwargs['out']} has no checkpoint to continue from")
    settings = TrainSettings(arch=arch, **kwargs)
    return run_training(settings, echo=lambda msg: click.echo(msg, err=True)), settings.epochs
