"""What a converted model is made of: its operators, their tensor types, and float ops left in integer models.

Read from the flatbuffer with the generated schema (no interpreter needed), so the report shows exactly what
the device will run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from edgevision.convert.flatbuffer import enum_names
from edgevision.convert.options import FULL_INTEGER

#: Ops whose job is to cross the float/integer boundary: float tensors around them are expected.
BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")
FLOAT_TYPES = ("float32", "float16", "float64")


@dataclass(frozen=True)
class OpSummary:
    op: str
    count: int
    input_types: Tuple[str, ...]
    output_types: Tuple[str, ...]
    float_in_integer_model: bool = False

    def to_dict(self) -> dict:
        return {
            "op": self.op,
            "count": self.count,
            "input_types": list(self.input_types),
            "output_types": list(self.output_types),
            "float": self.float_in_integer_model,
        }


def model_ops(model: bytes, quant: str) -> List[OpSummary]:
    """Operators of every subgraph, grouped by (op, input types, output types), in order of first use."""
    from ai_edge_litert import schema_py_generated as schema

    ops_names = enum_names(schema.BuiltinOperator)
    type_names = {k: v.lower() for k, v in enum_names(schema.TensorType).items()}
    m = schema.Model.GetRootAs(bytearray(model), 0)
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())  # the schema split the field at 127
        name = ops_names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            custom = oc.CustomCode()
            name = f"CUSTOM:{custom.decode() if custom else '?'}"
        codes.append(name)
    groups: Dict[tuple, int] = {}
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)

        def types(indices) -> Tuple[str, ...]:
            return tuple(sorted({type_names.get(sg.Tensors(int(t)).Type(), "?") for t in indices if t >= 0}))

        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            key = (codes[op.OpcodeIndex()], types(op.InputsAsNumpy() if op.InputsLength() else []),
                   types(op.OutputsAsNumpy() if op.OutputsLength() else []))
            groups[key] = groups.get(key, 0) + 1
    out = []
    for (name, ins, outs), count in groups.items():
        flagged = quant in FULL_INTEGER and name not in BOUNDARY_OPS and any(t in FLOAT_TYPES for t in ins + outs)
        out.append(OpSummary(name, count, ins, outs, flagged))
    return out


def float_ops(ops: List[OpSummary]) -> List[str]:
    """Names of ops left computing in float in a full-integer model (worth a warning: slow on NPUs/MCUs)."""
    return sorted({o.op for o in ops if o.float_in_integer_model})


def io_types(model: bytes) -> Tuple[str, str]:
    """(input type, output type) of the model's first input and output."""
    from ai_edge_litert import schema_py_generated as schema

    type_names = {k: v.lower() for k, v in enum_names(schema.TensorType).items()}
    m = schema.Model.GetRootAs(bytearray(model), 0)
    sg = m.Subgraphs(0)
    return (type_names.get(sg.Tensors(int(sg.Inputs(0))).Type(), "?"),
            type_names.get(sg.Tensors(int(sg.Outputs(0))).Type(), "?"))


#: Ops whose second input is a weight kernel: where pruning's zeros live in the file.
KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def weight_sparsity(model: bytes) -> float:
    """Fraction of zeros in the conv/depthwise/dense kernels stored in the file (0 for none).

    Read from the file itself rather than from the Keras model: that is what the device downloads, after
    batch-norm folding, quantization and any tfmot wrapper have had their say.
    """
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    ops_names = enum_names(schema.BuiltinOperator)
    sizes = {schema.TensorType.FLOAT32: 4, schema.TensorType.FLOAT16: 2, schema.TensorType.INT8: 1}
    m = schema.Model.GetRootAs(bytearray(model), 0)
    zeros = total = 0
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            code = m.OperatorCodes(op.OpcodeIndex())
            if ops_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode())) not in KERNEL_OPS or op.InputsLength() < 2:
                continue
            tensor = sg.Tensors(op.Inputs(1))
            data = m.Buffers(tensor.Buffer()).DataAsNumpy() if tensor.Buffer() < m.BuffersLength() else 0
            if isinstance(data, int) or tensor.Type() not in sizes:
                continue  # a computed (e.g. dequantized) kernel: counted where it is stored
            values = np.frombuffer(data.tobytes(), dtype={4: np.float32, 2: np.float16, 1: np.int8}[sizes[tensor.Type()]])
            zeros += int(np.count_nonzero(values == 0))
            total += values.size
    return zeros / total if total else 0.0
