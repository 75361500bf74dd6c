"""Per-channel fake quantization of DepthwiseConv2D kernels for tfmot QAT.

Why: tfmot 0.8's default 8-bit registry gives DepthwiseConv2D the Conv2D weight quantizer, which is per-axis on
the kernel's LAST axis. For Conv2D that is the output channels; a depthwise kernel is (h, w, in_channels,
depth_multiplier), so the last axis is the depth multiplier (1 in MobileNetV2) and the whole kernel shares ONE
range. TFLite's int8 converter quantizes depthwise kernels per output channel (in_channels x depth_multiplier),
so the QAT graph simulated a much coarser model than the one that ships (what that cost on MobileNetV2:
benchmarks/results/findings.md).

The fix keeps tfmot's layout transforms (which fold Conv/DepthwiseConv + BatchNorm + ReLU so that no fake-quant
sits between them, as in the TFLite graph) and only swaps the registry's DepthwiseConv2D config, through a
QuantizeScheme wrapper. quantize_annotate_layer(depthwise, quantize_config=...) does not work here: tfmot's
batch-norm folding transforms skip any layer that carries a custom QuantizeConfig, and quantize_apply then
refuses the unfolded BatchNormalization ("Layer expanded_conv_depthwise_BN ... is not supported"). Wrapping the
scheme also works for the prune- and cluster-preserving schemes, which leave DepthwiseConv2D on the default config.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

quant = tfmot.quantization.keras


class DepthwiseKernelQuantizer(quant.quantizers.LastValueQuantizer):
    """Symmetric int8 fake-quant of a (h, w, in, multiplier) depthwise kernel with one range per output channel.

    tf's per-channel fake-quant works on the last axis only, so the kernel is viewed as (1, h, w, in * multiplier),
    which is exactly TFLite's depthwise filter layout, quantized there and reshaped back.
    """

    def __init__(self):
        super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

    def build(self, tensor_shape, name, layer):
        channels = int(tensor_shape[-2]) * int(tensor_shape[-1])
        return {
            f"{key}_var": layer.add_weight(f"{name}_{key}", shape=(channels,), trainable=False,
                                           initializer=tf_keras.initializers.Constant(value))
            for key, value in (("min", -6.0), ("max", 6.0))
        }

    def __call__(self, inputs, training, weights, **kwargs):
        h, w, c, m = inputs.shape
        flat = tf.reshape(inputs, (1, h, w, c * m))
        return tf.reshape(super().__call__(flat, training, weights, **kwargs), (h, w, c, m))

    def get_config(self):
        return {}


class DepthwiseQuantizeConfig(quant.QuantizeConfig):
    """tfmot's default DepthwiseConv2D config (kernel + activation quantized) with a per-channel kernel quantizer."""

    def __init__(self):
        self.weight_quantizer = DepthwiseKernelQuantizer()
        # The same activation quantizer as tfmot's default: 8-bit asymmetric, moving-average range, per tensor.
        self.activation_quantizer = quant.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)

    def get_weights_and_quantizers(self, layer):
        return [(layer.depthwise_kernel, self.weight_quantizer)]

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, self.activation_quantizer)]

    def set_quantize_weights(self, layer, quantize_weights):
        (layer.depthwise_kernel,) = quantize_weights

    def set_quantize_activations(self, layer, quantize_activations):
        (layer.activation,) = quantize_activations

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class _DepthwisePerChannelRegistry(quant.QuantizeRegistry):
    """Delegates to a scheme's registry, except for DepthwiseConv2D kernels."""

    def __init__(self, base):
        self._base = base

    def supports(self, layer):
        return self._base.supports(layer)

    def get_quantize_config(self, layer):
        # tfmot's prune- and cluster-preserving registries leave DepthwiseConv2D on the default config too.
        if type(layer) is tf_keras.layers.DepthwiseConv2D:
            return DepthwiseQuantizeConfig()
        return self._base.get_quantize_config(layer)


class DepthwisePerChannelScheme(quant.QuantizeScheme):
    """`base` scheme (tfmot's default 8-bit one unless given) with per-channel depthwise kernels."""

    def __init__(self, base=None):
        self._base = base or quant.default_8bit.Default8BitQuantizeScheme()

    def get_layout_transformer(self):
        return self._base.get_layout_transformer()

    def get_quantize_registry(self):
        return _DepthwisePerChannelRegistry(self._base.get_quantize_registry())


#: Custom objects for tfmot.quantization.keras.quantize_scope, so that models using them can be (de)serialized.
CUSTOM_OBJECTS = {
    "DepthwiseKernelQuantizer": DepthwiseKernelQuantizer,
    "DepthwiseQuantizeConfig": DepthwiseQuantizeConfig,
}


def quantize_apply(model, scheme=None):
    """tfmot's quantize_model/quantize_apply for a tf_keras model, with per-channel depthwise kernels."""
    with quant.quantize_scope(CUSTOM_OBJECTS):
        return quant.quantize_apply(quant.quantize_annotate_model(model), DepthwisePerChannelScheme(scheme))
