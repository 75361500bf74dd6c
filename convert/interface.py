"""Portable input and output: rewrite a converted model so that it takes the raw RGB image as uint8.

MediaPipe Tasks, the TFLite Task Library and integer-only accelerators feed a classifier uint8 pixels
(0-255) or floats normalised with one mean and one std for all channels; none of them feeds int8, and none
applies per-channel statistics. So the deployment file takes the pixels themselves and does its own
normalisation, in its first operators:

- an int8 model gets QUANTIZE (uint8 pixel p -> int8 p - 128, the same scale, so exact) and a 1x1
  DEPTHWISE_CONV_2D whose per-channel int8 weight and int32 bias compute (p - mean_c) / std_c straight into
  the quantization of the original input: integer arithmetic only, as the accelerator wants;
- a float model gets DEQUANTIZE (uint8 -> float32, exact) and the same 1x1 depthwise convolution in float32,
  which is the multiply-add of `preprocess.normalize`.

An int8 model's int8 output becomes uint8 through a final QUANTIZE with the same scale (q + 128: exact), so
its scores keep their meaning. Float outputs stay float32.

The rewrite works on any converted file (no TensorFlow, no retraining), which is also how bundled files made
before it get the portable interface.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from edgevision.convert.flatbuffer import builtin_code
from edgevision.errors import ModelError, UsageError

#: The pixel range a portable file takes, and its quantization (real value = pixel).
PIXEL_MIN, PIXEL_MAX = 0.0, 255.0
# The int8 weight of the normalising convolution: the largest code, so the weight's own rounding is nil
# (each channel gets its own scale, 1 / (std_c * 127)).
_WEIGHT_CODE = 127
# Operator versions as TensorFlow's converter writes them for these type combinations.
_VERSIONS = {"QUANTIZE": 1, "DEQUANTIZE": 1, "DEPTHWISE_CONV_2D_int8": 3, "DEPTHWISE_CONV_2D_float": 1}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def make_portable(model: bytes, mean: Sequence[float], std: Sequence[float]) -> bytes:
    """A copy of `model` whose input is uint8 RGB pixels and whose int8 output is uint8.

    mean, std: the per-channel normalisation (pixel units) the model was trained with; the new first
    operators apply it. ModelError if the model's interface is not one this can rewrite.
    """
    from edgevision.convert.flatbuffer import pack_model, unpack_model

    schema = _schema()
    obj = unpack_model(model)
    if len(obj.subgraphs) != 1:
        raise ModelError(f"a portable interface needs a model with one subgraph, this one has {len(obj.subgraphs)}")
    graph = obj.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError("a portable interface needs a model with one input and one output tensor")
    old_in, old_out = int(graph.inputs[0]), int(graph.outputs[0])
    in_type = graph.tensors[old_in].type
    if in_type not in (schema.TensorType.INT8, schema.TensorType.FLOAT32):
        raise ModelError(f"cannot rewrite the input of this model: it is {_type_name(in_type)}, not int8 or float32 "
                         "(is it portable already?)")
    channels = int(graph.tensors[old_in].shape[-1])
    new_in = _normalising_prefix(obj, graph, old_in, _per_channel(mean, channels), _per_channel(std, channels))
    new_out = _uint8_output(obj, graph, old_out) if graph.tensors[old_out].type == schema.TensorType.INT8 else old_out
    graph.inputs, graph.outputs = np.array([new_in], np.int32), np.array([new_out], np.int32)
    _retarget_signatures(obj, {old_in: new_in, old_out: new_out})
    return pack_model(obj)


def _per_channel(values: Sequence[float], channels: int) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).ravel()
    if out.size == 1:
        out = np.repeat(out, channels)
    if out.size < channels:
        raise UsageError(f"the normalisation has {out.size} values for a {channels}-channel input")
    return out[:channels]


def _type_name(code: int) -> str:
    names = {v: k for k, v in vars(_schema().TensorType).items() if not k.startswith("_")}
    return names.get(code, str(code)).lower()


# --- building blocks ------------------------------------------------------------------------------------
def _opcode(obj, name: str, version: int) -> int:
    """Index of the operator code for builtin `name`, added if the model has none."""
    schema = _schema()
    code = getattr(schema.BuiltinOperator, name)
    for i, oc in enumerate(obj.operatorCodes):
        if builtin_code(oc) == code:
            oc.version = max(oc.version, version)
            return i
    oc = schema.OperatorCodeT()
    # Codes above 127 live in `builtinCode`; the old int8 field then holds the placeholder 127.
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
    obj.operatorCodes.append(oc)
    return len(obj.operatorCodes) - 1


def _buffer(obj, data: bytes = b"") -> int:
    buf = _schema().BufferT()
    if data:
        buf.data = np.frombuffer(data, dtype=np.uint8)
    obj.buffers.append(buf)
    return len(obj.buffers) - 1


def _quant(scale, zero_point, axis: int = 0):
    q = _schema().QuantizationParametersT()
    q.scale = np.asarray(scale, dtype=np.float32).ravel()
    q.zeroPoint = np.asarray(zero_point, dtype=np.int64).ravel()
    q.quantizedDimension = axis
    return q


def _tensor(obj, graph, name: str, like: int, tensor_type: int, quant=None, data: bytes = b"",
            shape=None) -> int:
    """A new tensor shaped like tensor `like` (or `shape`); constant when `data` is given."""
    t = _schema().TensorT()
    src = graph.tensors[like]
    t.name, t.type, t.quantization = name, tensor_type, quant
    t.shape = np.asarray(src.shape if shape is None else shape, dtype=np.int32)
    if shape is None and src.shapeSignature is not None:
        t.shapeSignature = np.asarray(src.shapeSignature, dtype=np.int32)
    t.buffer = _buffer(obj, data)
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def _operator(obj, graph, name: str, version: int, inputs, outputs, options_type: int = 0, options=None):
    op = _schema().OperatorT()
    op.opcodeIndex = _opcode(obj, name, version)
    op.inputs, op.outputs = np.asarray(inputs, np.int32), np.asarray(outputs, np.int32)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _depthwise_options():
    schema = _schema()
    o = schema.DepthwiseConv2DOptionsT()
    o.padding, o.strideW, o.strideH, o.depthMultiplier = schema.Padding.VALID, 1, 1, 1
    o.dilationWFactor = o.dilationHFactor = 1
    o.fusedActivationFunction = schema.ActivationFunctionType.NONE
    return schema.BuiltinOptions.DepthwiseConv2DOptions, o


# --- the rewrite ------------------------------------------------------------------------------------------
def _normalising_prefix(obj, graph, old_in: int, mean: np.ndarray, std: np.ndarray) -> int:
    """Put pixels -> normalised input in front of the graph; returns the new input tensor."""
    schema = _schema()
    integer = graph.tensors[old_in].type == schema.TensorType.INT8
    channels = mean.size
    pixels = _tensor(obj, graph, "image", old_in, schema.TensorType.UINT8, _quant(1.0, 0))
    if integer:
        # uint8 p -> int8 p - 128 at scale 1: the representable range is unchanged, so this is exact.
        shifted = _tensor(obj, graph, "image_int8", old_in, schema.TensorType.INT8, _quant(1.0, -128))
        first = _operator(obj, graph, "QUANTIZE", _VERSIONS["QUANTIZE"], [pixels], [shifted])
        weight, bias = _int8_normalisation(obj, graph, old_in, mean, std)
        version = _VERSIONS["DEPTHWISE_CONV_2D_int8"]
    else:
        shifted = _tensor(obj, graph, "image_float", old_in, schema.TensorType.FLOAT32)
        first = _operator(obj, graph, "DEQUANTIZE", _VERSIONS["DEQUANTIZE"], [pixels], [shifted])
        w, b = (1.0 / std).astype(np.float32), (-mean / std).astype(np.float32)
        weight = _tensor(obj, graph, "normalise_weight", old_in, schema.TensorType.FLOAT32,
                         data=w.tobytes(), shape=[1, 1, 1, channels])
        bias = _tensor(obj, graph, "normalise_bias", old_in, schema.TensorType.FLOAT32,
                       data=b.tobytes(), shape=[channels])
        version = _VERSIONS["DEPTHWISE_CONV_2D_float"]
    options_type, options = _depthwise_options()
    second = _operator(obj, graph, "DEPTHWISE_CONV_2D", version, [shifted, weight, bias], [old_in],
                       options_type, options)
    graph.operators[:0] = [first, second]
    return pixels


def _int8_normalisation(obj, graph, old_in: int, mean: np.ndarray, std: np.ndarray) -> Tuple[int, int]:
    """Per-channel int8 weight and int32 bias of the 1x1 convolution computing (p - mean_c) / std_c.

    With input scale 1, weight w_c = 1/std_c stored as code 127 at scale w_c/127, the accumulator scale is
    w_c/127, so the bias -mean_c/std_c is the integer -127 * mean_c (rounded: 1/254 of a pixel at most).
    """
    schema = _schema()
    channels = mean.size
    w_scale = (1.0 / std) / _WEIGHT_CODE
    codes = np.full((1, 1, 1, channels), _WEIGHT_CODE, dtype=np.int8)
    bias_codes = np.rint(-_WEIGHT_CODE * mean).astype(np.int32)
    weight = _tensor(obj, graph, "normalise_weight", old_in, schema.TensorType.INT8,
                     _quant(w_scale, np.zeros(channels), axis=3), codes.tobytes(), shape=[1, 1, 1, channels])
    bias = _tensor(obj, graph, "normalise_bias", old_in, schema.TensorType.INT32,
                   _quant(w_scale, np.zeros(channels)), bias_codes.tobytes(), shape=[channels])
    return weight, bias


def _uint8_output(obj, graph, old_out: int) -> int:
    """int8 scores -> uint8 with the same scale and the zero point moved by 128 (exact); the new output."""
    schema = _schema()
    q = graph.tensors[old_out].quantization
    scale, zero_point = float(q.scale[0]), int(q.zeroPoint[0])
    scores = _tensor(obj, graph, "scores", old_out, schema.TensorType.UINT8, _quant(scale, zero_point + 128))
    graph.operators.append(_operator(obj, graph, "QUANTIZE", _VERSIONS["QUANTIZE"], [old_out], [scores]))
    return scores


def _retarget_signatures(obj, moved: dict) -> None:
    for signature in obj.signatureDefs or []:
        for t in list(signature.inputs or []) + list(signature.outputs or []):
            t.tensorIndex = moved.get(int(t.tensorIndex), t.tensorIndex)


# --- whole files ----------------------------------------------------------------------------------------
def portable_interface(model: bytes, preprocess):
    """(the portable model, what its input takes: pixels, the normalisation moved into its graph)."""
    from edgevision.edge_runtime.preprocess import PreprocessConfig

    check_portable(preprocess)
    pixels = PreprocessConfig(input_size=preprocess.input_size, color_order="RGB", mean=(0.0,) * 3,
                              std=(1.0,) * 3, resize=preprocess.resize)
    in_graph = {"mean": list(preprocess.mean), "std": list(preprocess.std)}
    return make_portable(model, preprocess.mean, preprocess.std), pixels, in_graph


def check_portable(preprocess) -> None:
    """UsageError unless a model with this preprocessing can take the portable interface (RGB pixels)."""
    if preprocess.color_order != "RGB":
        raise UsageError(f"the uint8 interface takes RGB pixels and this model was trained on {preprocess.color_order}; "
                         "pass --io int8 or --io float32")


# What an old file's document keeps as it is; the rest is rewritten for the new interface.
_KEPT = ("quantization", "optimizations", "source", "metrics", "calibration", "bias_correction", "fine_tune",
         "test_time_augmentation", "output")


def upgrade(data: bytes, name: str, author: str = "", license: str = "") -> bytes:
    """An edgevision file made before the portable interface, rewritten (exactly, without TensorFlow) to take
    uint8 pixels and to carry standard metadata beside its document."""
    from edgevision.convert import metadata_writer, model_ops
    from edgevision.edge_runtime.model_metadata import read_model_metadata

    old = read_model_metadata(data)
    if not old.document or old.input_size is None or not old.labels:
        raise ModelError("only files written by edgevision convert can be upgraded (this one has no edgevision "
                         "metadata with labels and an input size)")
    model, pixels, in_graph = portable_interface(data, old.preprocess(old.input_size))
    kept = {k: v for k, v in old.document.items() if k in _KEPT}
    meta = metadata_writer.model_metadata(
        name, old.labels, pixels, kept.pop("quantization"), optimizations=kept.pop("optimizations", ()),
        io_types=model_ops.io_types(model), source=kept.pop("source", {}), metrics=kept.pop("metrics", {}),
        extra=kept, author=author, license=license, normalization_in_graph=in_graph,
    )
    producer = {**old.document.get("producer", {}), "interface": meta.document["producer"]["edgevision"]}
    return metadata_writer.embed(model, meta.with_document(producer=producer))
