"""Model definitions (Keras 3 API only, so they build on the TensorFlow, JAX and PyTorch backends).

Both models take the normalised float input described by their PreprocessConfig (normalisation is not
inside the model, so training, conversion and the device share one definition of it) and end in a float32
softmax: probabilities out, which int8 quantises well and every consumer can read without guessing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from edgevision.edge_runtime.preprocess import MINUS_ONE_TO_ONE, PreprocessConfig
from edgevision.errors import UsageError, first_line

CNN_INPUT = (32, 32)
LOGIT_SCALE = "logit_scale"  # name of the CNN's training-time logit multiplier layer
LOGITS = "logits"  # the dense layer that feeds it, and that folding scales
MOBILENET_SIZES = (96, 224)  # the input sizes MobileNetV2's ImageNet weights are meant for, inclusive


@dataclass(frozen=True)
class CNNConfig:
    """A residual CNN in the shape of the fast CIFAR-10 "ResNet-9" (Page, DAWNBench 2018), cut to fit a
    microcontroller-class budget of 1.5 M parameters (ResNet-9 has several times that).

    A stem, then one stage per width: conv -> batch norm -> ReLU -> max-pool, followed in the `residual`
    stages by two more convs whose output is added back. Global max pooling and one dense layer. The convs
    run before each pool at the higher resolution, and the parameter-heavy residual pair of the last stage
    runs at 4x4, so the compute is about that of the plain VGG-style net it replaced.
    Conv -> BN -> ReLU is the order TFLite fuses into one int8 kernel; a residual add is one more int8 op.
    The last width is 224 rather than 256 to stay under 1.5 M parameters.

    How it scores: the README's model notes and the model card (edgevision/models/cifar10-cnn.md), which
    benchmarks/maintainer/reproduce_bundled_models.sh regenerates; its size and that net's score:
    benchmarks/results/findings.md, "Training".
    """

    stem_width: int = 32
    widths: Tuple[int, ...] = (64, 128, 224)
    residual: Tuple[bool, ...] = (True, False, True)
    dropout: float = 0.0
    # A fixed multiplier on the logits while training (ResNet-9's 1/8). Without it the first epoch learned far
    # less, its loss ending above that of guessing (findings.md, "Training"). It only
    # changes how SGD sees the head, so `fold_logit_scale` moves it into the dense layer for the saved model
    # (a Rescaling layer is something tfmot's pruning and QAT cannot wrap). None: no multiplier.
    logit_scale: Optional[float] = 0.125
    # airbench's shape (Jordan, "94 % on CIFAR-10 in 3.29 seconds", 2024), all off in the ResNet-9 shape above:
    whiten: bool = False  # stem: a frozen 2x2 conv that whitens patches (set by `set_whitening` from the data)
    second_conv: Optional[Tuple[bool, ...]] = None  # per stage: one more conv after the pool; None: none
    bn_scale: bool = True  # False: batch norm learns no scale, only a shift (ReLU nets are scale invariant)
    # Keras' 0.99 averages the statistics over ~100 steps: several epochs of a short run, so the validation score
    # lags the weights (findings.md, "Training"); 0.9 follows them within an epoch.
    bn_momentum: float = 0.99
    activation: str = "relu"  # or "gelu", airbench's (TFLite and TFLite Micro have an int8 kernel for each)

    def __post_init__(self):
        if self.second_conv is None:
            object.__setattr__(self, "second_conv", (False,) * len(self.widths))
        if not len(self.residual) == len(self.widths) == len(self.second_conv):
            raise ValueError(f"CNNConfig: one residual and one second_conv flag per width expected, got "
                             f"{self.residual} and {self.second_conv} for {self.widths}")


#: airbench94's net cut to the 1.5 M-parameter budget (its widths 64/256/256 are 2 M): a whitened stem, then
#: per stage conv -> pool -> conv, no residual adds. `edgevision train cnn --net airbench`.
AIRBENCH = CNNConfig(stem_width=24, widths=(64, 224, 208), residual=(False, False, False), whiten=True,
                     second_conv=(True, True, True), bn_scale=False, bn_momentum=0.9)
CNN_NETS = {"resnet9": CNNConfig(), "airbench": AIRBENCH,
            "airbench-gelu": dataclasses.replace(AIRBENCH, activation="gelu")}
WHITEN = "stem_whiten"  # the layer `set_whitening` fills
WHITEN_PATCH = 2


def build_cnn(num_classes: int, input_size: Tuple[int, int] = CNN_INPUT, config: CNNConfig = CNNConfig()):
    import keras
    from keras import layers

    def conv_bn_relu(x, width, name):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(momentum=config.bn_momentum, scale=config.bn_scale, name=f"{name}_bn")(x)
        return activate(x, name)

    def activate(x, name):
        if config.activation == "relu":
            return layers.ReLU(name=f"{name}_relu")(x)
        return layers.Activation(config.activation, name=f"{name}_{config.activation}")(x)

    inputs = keras.Input(shape=(*input_size, 3), name="image")
    if config.whiten:
        # Frozen: its kernel is the data's whitening, not learned; the batch norm after it learns the offsets.
        x = layers.Conv2D(2 * 3 * WHITEN_PATCH**2, WHITEN_PATCH, use_bias=False, trainable=False, name=WHITEN)(inputs)
        x = layers.BatchNormalization(momentum=config.bn_momentum, scale=False, name="stem_bn")(x)
        x = activate(x, "stem")
    else:
        x = conv_bn_relu(inputs, config.stem_width, "stem")
    stages = zip(config.widths, config.residual, config.second_conv)
    for i, (width, residual, second) in enumerate(stages, start=1):
        x = conv_bn_relu(x, width, f"stage{i}")
        x = layers.MaxPooling2D(name=f"stage{i}_pool")(x)
        if second:
            x = conv_bn_relu(x, width, f"stage{i}_conv2")
        if residual:
            branch = conv_bn_relu(x, width, f"stage{i}_res1")
            branch = conv_bn_relu(branch, width, f"stage{i}_res2")
            x = layers.Add(name=f"stage{i}_add")([x, branch])
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    if config.dropout:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    x = layers.Dense(num_classes, name=LOGITS)(x)
    if config.logit_scale is not None:
        x = layers.Rescaling(config.logit_scale, name=LOGIT_SCALE)(x)
    outputs = layers.Softmax(dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="edgevision_cnn")


def whitening_kernel(images: np.ndarray, eps: float = 5e-4) -> np.ndarray:
    """The stem kernel that whitens the 2x2 patches of `images` (normalised floats, NHWC): each eigenvector of
    the patch covariance scaled by 1/sqrt(its eigenvalue), and its negation, so after ReLU both signs pass.
    The first layer then starts where SGD would take many steps to get it (airbench)."""
    k = WHITEN_PATCH
    patches = np.lib.stride_tricks.sliding_window_view(images, (k, k), axis=(1, 2))  # N, H', W', C, k, k
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * images.shape[-1]).astype(np.float64)
    patches -= patches.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(patches.T @ patches / len(patches))
    filters = eigenvectors / np.sqrt(eigenvalues + eps)  # columns: one whitening direction each
    kernel = filters.reshape(k, k, images.shape[-1], -1)
    return np.concatenate([kernel, -kernel], axis=-1).astype(np.float32)


def has_whitened_stem(model) -> bool:
    return WHITEN in {layer.name for layer in model.layers}


def set_whitening(model, images: np.ndarray) -> bool:
    """Fill a whitened stem from `images` (a sample of the normalised training images); False if `model` has none."""
    if not has_whitened_stem(model):
        return False
    model.get_layer(WHITEN).set_weights([whitening_kernel(images)])
    return True


def fold_logit_scale(model):
    """The same function without the logit multiplier: the dense layer that feeds it is scaled instead.

    Works on the graph (a clone that calls past the multiplier), so any CNNConfig folds, not only the default.
    Returns `model` itself when it has no multiplier; never changes `model`. Exact up to float rounding.
    """
    import keras

    if LOGIT_SCALE not in {layer.name for layer in model.layers}:
        return model
    scale = model.get_layer(LOGIT_SCALE).scale

    def call_past_scale(layer, *args, **kwargs):
        return args[0] if layer.name == LOGIT_SCALE else layer(*args, **kwargs)

    # clone_model builds fresh layers of the same names (weights not shared), so the caller's model stays as it was.
    folded = keras.models.clone_model(model, call_function=call_past_scale)
    for layer in folded.layers:
        weights = model.get_layer(layer.name).get_weights()
        if layer.name == LOGITS:
            weights = [w * scale for w in weights]
        layer.set_weights(weights)
    return folded


def mobilenet_preprocess(input_size: int) -> PreprocessConfig:
    """MobileNetV2's ImageNet weights expect RGB scaled to [-1, 1]."""
    mean, std = MINUS_ONE_TO_ONE
    return PreprocessConfig(input_size=(input_size, input_size), color_order="RGB", mean=mean, std=std)


def check_mobilenet_size(input_size: int) -> None:
    lo, hi = MOBILENET_SIZES
    if not lo <= input_size <= hi:
        raise UsageError(f"--input-size must be between {lo} and {hi} for MobileNetV2, got {input_size}")


def build_mobilenetv2(
    num_classes: int,
    input_size: int,
    alpha: float = 1.0,
    weights: Optional[str] = "imagenet",
    dropout: float = 0.2,
):
    """MobileNetV2 backbone + a new classification head. Returns (model, base) so phases can freeze the base."""
    import keras
    from keras import layers

    check_mobilenet_size(input_size)
    from edgevision.train.weights import resolve_mobilenet_weights

    from edgevision.train.weights import load_weights_file, offline_weights_message

    keras_weights, weights_file = resolve_mobilenet_weights(weights, alpha, input_size)
    try:
        base = keras.applications.MobileNetV2(
            input_shape=(input_size, input_size, 3), alpha=alpha, include_top=False, weights=keras_weights
        )
    except Exception as e:  # the download failed after all (proxy, truncated file): same two ways out
        if keras_weights != "imagenet":
            raise
        raise UsageError(offline_weights_message(alpha, input_size, f"Keras could not get them ({first_line(e)})")) from e
    if weights_file:
        load_weights_file(base, weights_file)
    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    x = base(inputs, training=False)  # keeps batch-norm statistics frozen during fine-tuning
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Softmax(dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="edgevision_mobilenetv2"), base


MICRO_MODEL_NAME = "edgevision_micro"


@dataclass(frozen=True)
class MicroConfig:
    """The CNN's ResNet-9 shape cut to a microcontroller: about 128 K parameters, so the int8 file stays under
    160 KiB of flash, and activations small enough for a 256 KiB TFLite Micro arena.

    Parameters, not compute, are the budget on a microcontroller's flash, and they sit in the wide late layers:
    so the early stages stay plain convolutions (cheap in weights at 16-64 channels), and the last stage's
    residual pair, which would cost more than the rest of the net as plain 3x3 convs, is depthwise separable.
    Every operator (conv, depthwise conv, add, max-pool, reduce-max, fully connected, softmax) is one TFLite
    Micro has, and the net takes one image per invoke.
    """

    stem_width: int = 16
    widths: Tuple[int, ...] = (32, 64, 104)
    residual: Tuple[bool, ...] = (True, False, True)
    separable: Tuple[bool, ...] = (False, False, True)  # the residual pair's convs, per stage
    logit_scale: Optional[float] = 0.125  # as CNNConfig's; folded into the dense layer when saved

    def __post_init__(self):
        if not len(self.widths) == len(self.residual) == len(self.separable):
            raise ValueError(f"MicroConfig: one residual and one separable flag per width expected, got "
                             f"{self.residual} and {self.separable} for {self.widths}")


def build_micro(num_classes: int, input_size: Tuple[int, int] = CNN_INPUT, config: MicroConfig = MicroConfig()):
    import keras
    from keras import layers

    def conv_bn_relu(x, width, name, separable=False):
        conv = layers.SeparableConv2D if separable else layers.Conv2D
        x = conv(width, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    inputs = keras.Input(shape=(*input_size, 3), name="image")
    x = conv_bn_relu(inputs, config.stem_width, "stem")
    stages = zip(config.widths, config.residual, config.separable)
    for i, (width, residual, separable) in enumerate(stages, start=1):
        x = conv_bn_relu(x, width, f"stage{i}")
        x = layers.MaxPooling2D(name=f"stage{i}_pool")(x)
        if residual:
            branch = conv_bn_relu(x, width, f"stage{i}_res1", separable)
            branch = conv_bn_relu(branch, width, f"stage{i}_res2", separable)
            x = layers.Add(name=f"stage{i}_add")([x, branch])
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    x = layers.Dense(num_classes, name=LOGITS)(x)
    if config.logit_scale is not None:
        x = layers.Rescaling(config.logit_scale, name=LOGIT_SCALE)(x)
    outputs = layers.Softmax(dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=MICRO_MODEL_NAME)
