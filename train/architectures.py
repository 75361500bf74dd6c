"""Model definitions (Keras 3 API only, so they build on the TensorFlow, JAX and PyTorch backends).

Both models take the normalised float input described by their PreprocessConfig (normalisation is not
inside the model, so training, conversion and the device share one definition of it) and end in a float32
softmax: probabilities out, which int8 quantises well and every consumer can read without guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from edgevision.edge_runtime.preprocess import MINUS_ONE_TO_ONE, PreprocessConfig
from edgevision.errors import UsageError, first_line

CNN_INPUT = (32, 32)
MOBILENET_SIZES = (96, 224)  # the input sizes MobileNetV2's ImageNet weights are meant for, inclusive


@dataclass(frozen=True)
class CNNConfig:
    """A VGG-style residual-free CNN sized for microcontroller-class budgets (~1.2 M parameters).

    A stem, then three stages of conv -> max-pool -> conv at widths 64/128/256 with batch norm and ReLU, global
    max pooling and one dense layer. Measured on this 2-core CPU: ~430 images/s in training (TF backend),
    i.e. ~105 s per CIFAR-10 epoch alone, so the bundled 35-epoch recipe is about an hour.
    """

    stem_width: int = 32
    widths: Tuple[int, ...] = (64, 128, 256)
    dropout: float = 0.0


def build_cnn(num_classes: int, input_size: Tuple[int, int] = CNN_INPUT, config: CNNConfig = CNNConfig()):
    import keras
    from keras import layers

    def conv_bn_relu(x, width, name):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    inputs = keras.Input(shape=(*input_size, 3), name="image")
    x = conv_bn_relu(inputs, config.stem_width, "stem")
    for i, width in enumerate(config.widths, start=1):
        x = conv_bn_relu(x, width, f"stage{i}a")
        x = layers.MaxPooling2D(name=f"stage{i}_pool")(x)
        x = conv_bn_relu(x, width, f"stage{i}b")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    if config.dropout:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Softmax(dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="edgevision_cnn")


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
