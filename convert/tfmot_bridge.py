"""Rebuild a Keras 3 model in tf_keras (Keras 2), layer by layer, with the same weights.

tensorflow-model-optimization (QAT, pruning, clustering) works only on tf_keras models, while edgevision trains
with Keras 3. The two share the layer semantics and the weight layout of the layers edgevision's models use, so
the functional graph is rebuilt from the model's config (nested models such as keras.applications.MobileNetV2
are flattened into one graph, which tfmot needs: it cannot quantize a model inside a model), each layer is
re-created from the settings that define its computation, and `get_weights()` is copied over. The rebuild is
then checked numerically against the original on a random batch; a mismatch is an error, never a silent
difference.

Layers outside SUPPORTED_LAYERS (Lambda, custom layers, recurrent layers, preprocessing layers...) cannot be
carried over: the error names every one of them.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from edgevision.errors import ConversionError

#: Keras 3 layer class -> the config keys that define its computation (initialisers, regularisers and
#: constraints only matter for training from scratch; the weights are copied).
SUPPORTED_LAYERS: Dict[str, Tuple[str, ...]] = {
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups", "activation", "use_bias"),
    "DepthwiseConv2D": ("kernel_size", "strides", "padding", "depth_multiplier", "data_format", "dilation_rate", "activation", "use_bias"),
    "Dense": ("units", "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "Activation": ("activation",),
    "Softmax": ("axis",),
    "MaxPooling2D": ("pool_size", "strides", "padding", "data_format"),
    "AveragePooling2D": ("pool_size", "strides", "padding", "data_format"),
    "GlobalAveragePooling2D": ("data_format", "keepdims"),
    "GlobalMaxPooling2D": ("data_format", "keepdims"),
    "ZeroPadding2D": ("padding", "data_format"),
    "Add": (),
    "Concatenate": ("axis",),
    "Dropout": ("rate", "noise_shape", "seed"),
    "Flatten": ("data_format",),
    "Reshape": ("target_shape",),
}
#: Activation functions that mean the same in both Keras versions (by name).
SUPPORTED_ACTIVATIONS = ("linear", "relu", "relu6", "softmax", "sigmoid", "tanh", "swish", "silu", "hard_sigmoid", "elu", "selu", "gelu")
MODEL_CLASSES = ("Functional", "Sequential", "Model")
#: Largest difference between the Keras 3 and tf_keras outputs (probabilities) accepted as "the same model".
MAX_REBUILD_DIFFERENCE = 1e-4


class _Rebuild:
    def __init__(self):
        import tf_keras

        self.tfk = tf_keras
        self.names: set = set()
        self.pairs: List[Tuple[Any, Any]] = []  # (keras 3 layer, tf_keras layer) for weight copying

    # --- checking ---------------------------------------------------------------------------------
    def unsupported(self, model) -> List[str]:
        problems = []
        for layer in model.layers:
            cls = type(layer).__name__
            if _is_model(layer):
                problems.extend(self.unsupported(layer))
            elif cls == "InputLayer":
                continue
            elif cls not in SUPPORTED_LAYERS:
                problems.append(f"{layer.name} ({cls})")
            else:
                act = layer.get_config().get("activation")
                if act is not None and (not isinstance(act, str) or act not in SUPPORTED_ACTIVATIONS):
                    problems.append(f"{layer.name} ({cls} with activation {act!r})")
        return problems

    # --- building ---------------------------------------------------------------------------------
    def unique(self, name: str, prefix: str) -> str:
        if name not in self.names:
            self.names.add(name)
            return name
        candidate, i = f"{prefix}_{name}", 1
        while candidate in self.names:
            candidate, i = f"{prefix}_{name}_{i}", i + 1
        self.names.add(candidate)
        return candidate

    def layer(self, layer, prefix: str):
        cls = type(layer).__name__
        config = layer.get_config()
        kwargs = {key: _plain(config[key]) for key in SUPPORTED_LAYERS[cls] if key in config}
        new = getattr(self.tfk.layers, cls)(name=self.unique(layer.name, prefix), **kwargs)
        new.trainable = layer.trainable
        return new

    def call(self, model, inputs: Sequence[Any]) -> List[Any]:
        """Apply `model`'s layers to tf_keras tensors `inputs`; return its output tensors."""
        if type(model).__name__ == "Sequential":
            x = inputs[0]
            for layer in model.layers:
                x = self.apply(layer, [x], model.name)
            return [x]
        config = model.get_config()
        tensors: Dict[tuple, Any] = {}
        for (name, node, index), tensor in zip(_history_list(config["input_layers"]), inputs):
            tensors[(name, node, index)] = tensor
        for layer_config in config["layers"]:
            if layer_config["class_name"] == "InputLayer":
                continue
            layer = model.get_layer(layer_config["name"])
            for node_index, node in enumerate(layer_config.get("inbound_nodes", [])):
                kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if k not in ("training", "mask")}
                if kwargs:
                    raise ConversionError(
                        f"layer {layer.name} is called with arguments {sorted(kwargs)} that the tf_keras rebuild "
                        "cannot carry over; QAT/pruning/clustering need a plain functional model"
                    )
                args = _resolve(node["args"], tensors)
                if len(args) == 1:
                    args = args[0]
                outputs = self.apply(layer, args if isinstance(args, list) else [args], model.name,
                                     keep_list=isinstance(args, list) and type(layer).__name__ in ("Add", "Concatenate"))
                for i, out in enumerate(outputs):
                    tensors[(layer_config["name"], node_index, i)] = out
        return [tensors[key] for key in _history_list(config["output_layers"])]

    def apply(self, layer, inputs: List[Any], prefix: str, keep_list: bool = False) -> List[Any]:
        if _is_model(layer):
            return self.call(layer, inputs)
        if type(layer).__name__ == "InputLayer":
            return inputs
        new = self.layer(layer, prefix)
        out = new(inputs if keep_list else inputs[0])
        self.pairs.append((layer, new))
        return out if isinstance(out, list) else [out]


def _is_model(layer) -> bool:
    return type(layer).__name__ in MODEL_CLASSES or hasattr(layer, "layers") and hasattr(layer, "get_layer")


def _history_list(spec) -> List[tuple]:
    """Keras writes one input as [name, node, index] and several as [[name, node, index], ...]."""
    if spec and isinstance(spec[0], str):
        return [tuple(spec)]
    return [tuple(s) for s in spec]


def _resolve(value, tensors):
    """Replace the serialised Keras tensors in a node's args with the rebuilt tf_keras tensors."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        name, node, index = value["config"]["keras_history"]
        return tensors[(name, node, index)]
    if isinstance(value, (list, tuple)):
        return [_resolve(v, tensors) for v in value]
    return value


def _plain(value):
    """Keras 3 writes tuples as lists in configs; tf_keras wants tuples for shapes and paddings."""
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value


def to_tf_keras(model, check: bool = True):
    """A tf_keras functional model computing the same function as the Keras 3 `model`, with its weights."""
    return rebuild_in_tf_keras(model, check)[0]


def rebuild_in_tf_keras(model, check: bool = True) -> Tuple[Any, Dict[str, Any]]:
    """(to_tf_keras(model), {tf_keras layer name: the Keras 3 layer it was built from}).

    The map is by name because tfmot's strip_pruning / strip_clustering return new layer objects under the
    same names; weights_copied_back uses it to carry fine-tuned weights home."""
    rebuild = _Rebuild()
    problems = rebuild.unsupported(model)
    if problems:
        shown = ", ".join(problems[:8]) + (f" and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise ConversionError(
            f"QAT, pruning and clustering need tensorflow-model-optimization, which works on tf_keras models, and "
            f"these layers cannot be rebuilt in tf_keras: {shown}; supported layers: {', '.join(SUPPORTED_LAYERS)}. "
            "Post-training quantization (no --qat-epochs/--prune/--cluster) works for this model"
        )
    if len(model.inputs) != 1:
        raise ConversionError("the tf_keras rebuild supports models with one input")
    shape = tuple(model.inputs[0].shape[1:])
    inputs = rebuild.tfk.Input(shape=shape, name=rebuild.unique(_input_name(model), "input"))
    outputs = rebuild.call(model, [inputs])
    new = rebuild.tfk.Model(inputs, outputs[0] if len(outputs) == 1 else outputs, name=model.name)
    for old, fresh in rebuild.pairs:
        _copy_weights(old, fresh)
    if check:
        check_same_function(model, new)
    return new, {fresh.name: old for old, fresh in rebuild.pairs}


@contextlib.contextmanager
def weights_copied_back(tf_model, sources: Dict[str, Any]) -> Iterator[None]:
    """For the duration of the block, the Keras 3 layers in `sources` hold the weights of their namesakes in
    `tf_model` (a rebuilt model after pruning or clustering); their own weights are put back afterwards."""
    layers = {layer.name: layer for layer in tf_model.layers}
    missing = sorted(set(sources) - set(layers))
    if missing:
        raise ConversionError(f"the fine-tuned tf_keras model lost layers {missing[:5]}; cannot carry its weights "
                              "back to the Keras model")
    saved = [(old, old.get_weights()) for old in sources.values()]
    try:
        for name, old in sources.items():
            _copy_weights(layers[name], old)
        yield
    finally:
        for old, weights in saved:
            old.set_weights(weights)


def _input_name(model) -> str:
    history = getattr(model.inputs[0], "_keras_history", None)
    return history[0].name if history else "input"


def _copy_weights(old, new) -> None:
    weights = old.get_weights()
    expected = [tuple(w.shape) for w in new.get_weights()]
    if [tuple(w.shape) for w in weights] != expected:
        raise ConversionError(
            f"layer {old.name} ({type(old).__name__}): its weights {[tuple(w.shape) for w in weights]} do not fit "
            f"the other Keras version's layer {new.name} {expected}; this layer cannot be carried over"
        )
    new.set_weights(weights)


def check_same_function(original, rebuilt, samples: int = 2, seed: int = 0) -> float:
    """Max |difference| of the two models' outputs on a random batch; ConversionError above the tolerance."""
    shape = (samples,) + tuple(original.inputs[0].shape[1:])
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    a = np.asarray(original(x, training=False))
    b = np.asarray(rebuilt(x, training=False))
    diff = float(np.max(np.abs(a - b)))
    if not diff <= MAX_REBUILD_DIFFERENCE:
        raise ConversionError(
            f"the tf_keras rebuild of the model does not compute the same outputs (max difference {diff:.2e}); "
            "QAT, pruning and clustering cannot be applied to this model"
        )
    return diff
