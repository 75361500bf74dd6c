"""Training knobs beyond the architectures' recipes: optimizer, learning-rate schedule, class weights.

Every default here reproduces the recipe the bundled models were trained with (SGD with Nesterov momentum and
a warm-up + cosine schedule for the CNN, AdamW with cosine decay for MobileNetV2, unweighted classes), so a
run that names none of them trains exactly as before. Keras 3 API only (any backend).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from edgevision.errors import DataError, UsageError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LR_SCHEDULES = ("cosine", "constant", "step")
#: The share of --weight-decay each optimizer applies. Keras' decoupled decay is scaled by the learning rate,
#: and the adaptive optimizers run at about 1/100 of SGD's, hence their 0.01 (today's AdamW factor). Plain
#: Adam has none: that is what distinguishes it from AdamW.
DECAY_SCALE = {"sgd": 1.0, "adamw": 0.01, "rmsprop": 0.01, "adam": 0.0}
#: Momentum when --momentum is not given: SGD's classic 0.9 (the CNN recipe), RMSprop's Keras default.
DEFAULT_MOMENTUM = {"sgd": 0.9, "rmsprop": 0.0}
#: The step schedule: the learning rate drops tenfold at these fractions of a phase (the classic ResNet steps).
STEP_BOUNDARIES = (0.5, 0.75)
STEP_FACTOR = 0.1
BALANCED = "balanced"
#: With --ema, the net is set to the weights' moving average every this many steps: lookahead (Zhang et al.
#: 2019) as airbench uses it, where the average smooths out SGD's noise late in a short, high-rate run.
EMA_EVERY = 5
#: The variables --offset-lr-scale speeds up: batch norm's learned offsets.
OFFSETS = ("beta",)


def check_optimizer_choice(optimizer: Optional[str], momentum: Optional[float], weight_decay: Optional[float],
                           lr_schedule: str) -> None:
    """UsageError for a combination that would be silently ignored or cannot train."""
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    if lr_schedule not in LR_SCHEDULES:
        raise UsageError(f"unknown learning-rate schedule {lr_schedule!r}; expected one of {', '.join(LR_SCHEDULES)}")
    if momentum is not None:
        if not 0 <= momentum < 1:
            raise UsageError(f"--momentum must be at least 0 and below 1, got {momentum}")
        if optimizer not in DEFAULT_MOMENTUM:
            raise UsageError("--momentum applies to --optimizer sgd or rmsprop only")
    if optimizer == "adam" and weight_decay:
        raise UsageError("--optimizer adam has no weight decay; use --optimizer adamw for decoupled weight decay")


def momentum_for(optimizer: str, momentum: Optional[float]) -> Optional[float]:
    if optimizer not in DEFAULT_MOMENTUM:
        return None
    return DEFAULT_MOMENTUM[optimizer] if momentum is None else momentum


def schedule(kind: str, peak: float, total_steps: int, warmup_steps: int):
    """The learning rate per step of one phase. Warm-up (a linear ramp from 0) comes with cosine and constant;
    the step schedule starts at its peak, as its recipe does."""
    import keras

    total = max(1, total_steps)
    if kind == "step":
        bounds = [max(1, int(total * f)) for f in STEP_BOUNDARIES]
        values = [peak * STEP_FACTOR ** i for i in range(len(bounds) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)
    warmup = min(warmup_steps, total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else peak,
        decay_steps=total - warmup,
        alpha=1.0 if kind == "constant" else 0.0,  # alpha 1: the cosine ends where it starts, i.e. constant
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(name: str, learning_rate, weight_decay: float, momentum: Optional[float], ema: float = 0.0,
                   offset_lr_scale: float = 1.0):
    """The Keras optimizer `name` with decoupled weight decay (DECAY_SCALE of `weight_decay`), batch-norm
    scales/offsets and biases excluded from it (decaying them only hurts); with `ema`, lookahead (EMA_EVERY);
    with `offset_lr_scale` (sgd), batch norm's offsets step that many times faster than the rest.

    Keras keeps the average among the optimizer's variables, so checkpoints carry it and a resumed run goes on
    with it; fit() ends by setting the net to it."""
    import keras

    decay = weight_decay * DECAY_SCALE[name] or None
    common = dict(use_ema=True, ema_momentum=ema, ema_overwrite_frequency=EMA_EVERY) if ema else {}
    if name == "sgd":
        sgd, scaled = keras.optimizers.SGD, {}
        if offset_lr_scale != 1.0:
            sgd, scaled = offset_scaled_sgd(), {"offset_lr_scale": offset_lr_scale}
        optimizer = sgd(learning_rate, momentum=momentum, nesterov=momentum > 0, weight_decay=decay, **scaled, **common)
    elif name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(learning_rate, momentum=momentum, weight_decay=decay, **common)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=decay or 0.0, **common)
    else:
        optimizer = keras.optimizers.Adam(learning_rate, **common)
    if decay:
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


@functools.cache
def offset_scaled_sgd():
    """Keras' SGD, with the learning rate of batch norm's offsets multiplied by `offset_lr_scale` (airbench's
    bias scaler). The convs before a batch norm are scale invariant: weight decay keeps their norm small, and
    that makes their effective rate large, while an offset's is the rate itself; so in a short run the
    offsets lag unless they step faster. Made on first use, so that importing this module does not import
    Keras; registered, so that a checkpoint compiled with it loads (`custom_objects`)."""
    import keras

    @keras.saving.register_keras_serializable(package="edgevision")
    class OffsetScaledSGD(keras.optimizers.SGD):
        def __init__(self, *args, offset_lr_scale: float = 1.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.offset_lr_scale = offset_lr_scale

        def build(self, var_list):
            super().build(var_list)
            # By key, as the backends pass update_step their own variable (TensorFlow: a tf.Variable "beta:0").
            self._offset_keys = {self._var_key(v) for v in var_list if v.name in OFFSETS}

        def update_step(self, gradient, variable, learning_rate):
            if self._var_key(variable) in self._offset_keys:  # decided once, when the step is traced
                learning_rate = learning_rate * self.offset_lr_scale
            super().update_step(gradient, variable, learning_rate)

        def get_config(self):
            return {**super().get_config(), "offset_lr_scale": self.offset_lr_scale}

    return OffsetScaledSGD


def custom_objects() -> dict:
    """What keras.models.load_model needs to load a training checkpoint of any recipe here."""
    cls = offset_scaled_sgd()
    return {cls.__name__: cls}


# --- class weights -------------------------------------------------------------------------------------
def class_weights(spec: Optional[str], classes: Sequence[str], y_train: np.ndarray) -> Optional[Dict[int, float]]:
    """{class index: loss weight} for Keras' fit, or None (every class weighs 1).

    "balanced" weighs each class by n / (k * n_class), so every class contributes the same total to the loss
    (the usual definition, e.g. scikit-learn's); anything else is a JSON file {class name: weight}, where
    classes it does not name weigh 1.
    """
    if spec is None:
        return None
    if spec == BALANCED:
        counts = np.bincount(y_train, minlength=len(classes)).astype(np.float64)
        if (counts == 0).any():
            empty = [classes[i] for i in np.flatnonzero(counts == 0)]
            raise DataError(f"--class-weight balanced: class(es) {', '.join(empty)} have no training images")
        return {i: float(len(y_train) / (len(classes) * c)) for i, c in enumerate(counts)}
    return _weights_from_file(Path(spec), classes)


def _weights_from_file(path: Path, classes: Sequence[str]) -> Dict[int, float]:
    if not path.is_file():
        raise UsageError(f"--class-weight: expected 'balanced' or a JSON file {{class: weight}}; {path} is not a file")
    try:
        given = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--class-weight: {path} is not valid JSON: {e}") from e
    if not isinstance(given, dict):
        raise UsageError(f"--class-weight: {path} must hold one object {{class name: weight}}")
    unknown = sorted(set(given) - set(classes))
    if unknown:
        raise UsageError(f"--class-weight: {path} names unknown class(es) {', '.join(unknown)}; "
                         f"the classes are {', '.join(classes)}")
    weights = {}
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise UsageError(f"--class-weight: the weight of {name!r} in {path} must be a number >= 0, got {value!r}")
        weights[name] = float(value)
    if not any(weights.get(c, 1.0) > 0 for c in classes):
        raise UsageError(f"--class-weight: {path} weighs every class 0; nothing would be learned")
    return {i: weights.get(c, 1.0) for i, c in enumerate(classes)}
