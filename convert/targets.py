"""Device targets for `convert --target`: what TFLite Micro and the Edge TPU compiler accept, checked in the file.

A target narrows what `convert` may produce (full-integer int8, one image per invoke, no test-time batch) and
then checks the converted file against the target's rules before anything is written: its operators, the
types of its tensors, its shapes. Each rule becomes a `Finding`; a file that breaks one is refused with one
line naming what broke and what to do.

The rules are read from the flatbuffer itself (no interpreter, no TensorFlow). TFLite Micro's own interpreter,
where it is installed, then loads and runs the file and measures its arena (convert/micro_arena.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgevision.convert.flatbuffer import builtin_code, enum_names, unpack_model
from edgevision.errors import ConversionError, UsageError

MICRO, EDGETPU = "micro", "edgetpu"
TARGETS: Tuple[str, ...] = (MICRO, EDGETPU)

#: The builtin operators TFLite Micro's Python interpreter can resolve: the ops its PythonOpsResolver
#: registers (tflite-micro's python/tflite_micro/python_ops_resolver.cc, the same set as its all-ops
#: resolver). Read from tflite-micro 0.dev20261023 by building a one-operator model for every builtin and
#: asking the interpreter for it; tests/test_convert_targets.py repeats that probe against the installed
#: package, so an op listed here that TFLite Micro does not have fails the suite. A firmware project
#: registers the ops its model uses in a MicroMutableOpResolver; convert lists them for it.
MICRO_OPS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND BROADCAST_ARGS
BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE
DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD
FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU
LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM
MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU
RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX
SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM
SVDF TANH TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
""".split())

#: The operators Coral's Edge TPU compiler maps to the Edge TPU: the "supported operations" table of Coral's
#: "TensorFlow models on the Edge TPU" page (coral.ai/docs/edgetpu/models-intro), compiler version 16, in
#: TFLite's builtin names. The compiler maps the graph up to the first op it cannot map and leaves that op and
#: everything after it to the CPU, so one op outside this list costs all the ops behind it.
EDGETPU_OPS = frozenset("""
ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D EXPAND_DIMS FULLY_CONNECTED L2_NORMALIZATION
LOGISTIC LSTM UNIDIRECTIONAL_SEQUENCE_LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MUL PACK PAD PRELU QUANTIZE
REDUCE_MAX REDUCE_MIN RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SLICE
SOFTMAX SPACE_TO_DEPTH SPLIT SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM TANH TRANSPOSE TRANSPOSE_CONV
""".split())
# Coral's table: these take no fused activation function on the Edge TPU.
_EDGETPU_NO_FUSED_ACTIVATION = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION")
# ... and these reduce over the spatial (or channel) axes only, never the batch.
_EDGETPU_NO_BATCH_REDUCTION = ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN")
# The Edge TPU's weights are compile-time constants: the kernel inputs of these ops must be stored in the file.
_CONSTANT_KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")

_FLOAT_TYPES = ("float32", "float16", "float64")
EDGETPU_COMPILER_COMMAND = "edgetpu_compiler -s {path}"


@dataclass(frozen=True)
class Finding:
    """One rule of a target, as the file meets it or breaks it."""

    rule: str
    ok: bool
    detail: str

    def to_dict(self) -> dict:
        return {"rule": self.rule, "ok": self.ok, "detail": self.detail}


@dataclass
class TargetReport:
    """What `convert --target` checked and produced for one model, for the CLI and report.json."""

    target: Optional[str]  # None when only --npu was asked for
    findings: List[Finding]
    ops: List[str] = field(default_factory=list)  # the operators, in order of first use
    arena: Optional[dict] = None  # micro: what TFLite Micro measured (micro_arena.MicroRun.to_dict())
    files: Dict[str, Path] = field(default_factory=dict)  # extra files written beside the .tflite
    notes: List[str] = field(default_factory=list)
    npu: Optional[dict] = None  # --npu: what LiteRT's AOT compilation made
    compiled: Optional[bytes] = field(default=None, repr=False)  # ... the compiled file

    @property
    def broken(self) -> List[Finding]:
        return [f for f in self.findings if not f.ok]

    def to_dict(self) -> dict:
        return {"target": self.target, "passed": not self.broken, "ops": self.ops,
                "findings": [f.to_dict() for f in self.findings], "arena": self.arena, "npu": self.npu,
                "files": {k: str(v) for k, v in self.files.items()}, "notes": self.notes}


def check_options(options) -> None:
    """Refuse, before anything is loaded, settings a target cannot take (ConvertOptions.__post_init__)."""
    target = options.target
    if target is None:
        return
    if target not in TARGETS:
        raise UsageError(f"unknown --target {target!r}; choose one of: {', '.join(TARGETS)}")
    what = "TFLite Micro" if target == MICRO else "the Edge TPU"
    if options.quant != "int8":
        raise UsageError(f"--target {target} makes a full-integer int8 model, what {what} runs, not "
                         f"{options.quant}; drop --quant or give --quant int8")
    if options.tta:
        raise UsageError(f"--target {target} runs one image per invoke, and --tta {options.tta} makes a batch of "
                         f"two views, which {what} cannot run; drop --tta")
    allowed = ("uint8", "int8") if target == MICRO else ("uint8",)
    if options.io is not None and options.io not in allowed:
        raise UsageError(f"--target {target} takes --io {' or '.join(allowed)} (integer input and output), "
                         f"got --io {options.io}")


# --- reading the file -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tensor:
    name: str
    type: str
    shape: Tuple[int, ...]
    signature: Optional[Tuple[int, ...]]
    constant: bool


@dataclass(frozen=True)
class _Op:
    name: str
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    fused_activation: int  # 0 = none (ActivationFunctionType.NONE); -1 when the op has no such option
    axes: Optional[Tuple[int, ...]]  # a reduction's constant axes, when it has them


@dataclass(frozen=True)
class _Graph:
    subgraphs: int
    tensors: Tuple[_Tensor, ...]
    ops: Tuple[_Op, ...]
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]


def read_graph(model: bytes) -> _Graph:
    """The first subgraph's tensors and operators, in execution order (what the checks need)."""
    from ai_edge_litert import schema_py_generated as schema

    obj = unpack_model(model)
    op_names, type_names = enum_names(schema.BuiltinOperator), enum_names(schema.TensorType)
    codes = [_op_name(oc, op_names) for oc in obj.operatorCodes or []]
    graph = obj.subgraphs[0]
    tensors = tuple(_tensor(t, obj.buffers, type_names) for t in graph.tensors or [])
    ops = tuple(_op(op, codes, graph.tensors, obj.buffers) for op in graph.operators or [])
    return _Graph(len(obj.subgraphs), tensors, ops, tuple(int(i) for i in graph.inputs),
                  tuple(int(i) for i in graph.outputs))


def _op_name(oc, op_names) -> str:
    code = builtin_code(oc)
    name = op_names.get(code, f"BUILTIN_{code}")
    if name == "CUSTOM":
        name = f"CUSTOM:{oc.customCode.decode() if oc.customCode else '?'}"
    return name


def _buffer_data(buffers, index: int):
    if index <= 0 or index >= len(buffers or []):
        return None  # buffer 0 is the schema's empty sentinel
    data = buffers[index].data
    return None if data is None or not len(data) else np.asarray(data, dtype=np.uint8)


def _tensor(t, buffers, type_names) -> _Tensor:
    name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    signature = tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None else None
    return _Tensor(name, type_names.get(t.type, "?").lower(), shape, signature, _buffer_data(buffers, t.buffer) is not None)


def _op(op, codes, raw_tensors, buffers) -> _Op:
    inputs = tuple(int(i) for i in (op.inputs if op.inputs is not None else []))
    outputs = tuple(int(i) for i in (op.outputs if op.outputs is not None else []))
    options = op.builtinOptions
    fused = int(getattr(options, "fusedActivationFunction", -1)) if options is not None else -1
    name, axes = codes[op.opcodeIndex], None
    if name in _EDGETPU_NO_BATCH_REDUCTION and len(inputs) > 1:
        data = _buffer_data(buffers, raw_tensors[inputs[1]].buffer)
        axes = tuple(int(a) for a in np.frombuffer(data.tobytes(), dtype=np.int32)) if data is not None else None
    return _Op(name, inputs, outputs, fused, axes)


def ops_in_order(graph: _Graph) -> List[str]:
    seen: List[str] = []
    for op in graph.ops:
        if op.name not in seen:
            seen.append(op.name)
    return seen


# --- the rules --------------------------------------------------------------------------------------------


def _full_integer(graph: _Graph) -> Finding:
    floats = sorted({op.name for op in graph.ops
                     if any(graph.tensors[i].type in _FLOAT_TYPES for i in op.inputs + op.outputs if i >= 0)})
    if floats:
        return Finding("full-integer", False, f"ops computing in float: {', '.join(floats)}")
    return Finding("full-integer", True, "every tensor is an integer (int8 activations and weights, int32 biases)")


def _io_types(graph: _Graph, allowed: Sequence[str]) -> Finding:
    got = [graph.tensors[i].type for i in graph.inputs + graph.outputs]
    bad = [t for t in got if t not in allowed]
    text = f"input {', '.join(got[:len(graph.inputs)])}, output {', '.join(got[len(graph.inputs):])}"
    if bad:
        return Finding("io-types", False, f"{text}; needs {' or '.join(allowed)}")
    return Finding("io-types", True, text)


def _static_shapes(graph: _Graph) -> Finding:
    dynamic = [t.name for t in graph.tensors if t.signature is not None and any(d < 0 for d in t.signature)]
    if dynamic:
        return Finding("static-shapes", False, f"{len(dynamic)} tensors with a dynamic size (e.g. {dynamic[0]})")
    return Finding("static-shapes", True, "every tensor has a fixed size")


def _batch_one(graph: _Graph) -> Finding:
    batch = {graph.tensors[i].shape[0] for i in graph.inputs if graph.tensors[i].shape}
    if batch - {1}:
        return Finding("batch-1", False, f"input batch {sorted(batch)}: one image per invoke is needed")
    return Finding("batch-1", True, "one image per invoke")


def _single_subgraph(graph: _Graph) -> Finding:
    return Finding("one-subgraph", graph.subgraphs == 1, f"{graph.subgraphs} subgraph(s)")


def _known_ops(graph: _Graph, known: frozenset, who: str) -> Finding:
    missing = [name for name in ops_in_order(graph) if name not in known]
    if missing:
        counts = {m: sum(op.name == m for op in graph.ops) for m in missing}
        return Finding("operators", False, f"{who} has no {', '.join(f'{m} ({n}x)' for m, n in counts.items())}")
    return Finding("operators", True, f"{who} has all {len(ops_in_order(graph))}: {', '.join(ops_in_order(graph))}")


def check_micro(model: bytes) -> List[Finding]:
    """TFLite Micro's rules: its operators, full integer, integer I/O, one subgraph, one image per invoke, and
    static shapes (it has no dynamic tensors: it runs every tensor at the size the file records)."""
    graph = read_graph(model)
    return [_known_ops(graph, MICRO_OPS, "TFLite Micro"), _full_integer(graph),
            _io_types(graph, ("uint8", "int8")), _single_subgraph(graph), _batch_one(graph), _static_shapes(graph)]


def check_edgetpu(model: bytes) -> List[Finding]:
    """The Edge TPU compiler's requirements, as Coral states them, that the file itself can show."""
    graph = read_graph(model)
    return [_edgetpu_ops(graph), _edgetpu_op_limits(graph),
            _full_integer(graph), _io_types(graph, ("uint8",)), _static_shapes(graph), _edgetpu_dims(graph),
            _constant_kernels(graph), _single_subgraph(graph)]


def _edgetpu_ops(graph: _Graph) -> Finding:
    """The operator rule, with what the compiler would do with the file as it is: it maps the ops before the
    first one it cannot and leaves that one and every op after it to the CPU."""
    finding = _known_ops(graph, EDGETPU_OPS, "the Edge TPU")
    if finding.ok:
        return finding
    first = next(i for i, op in enumerate(graph.ops) if op.name not in EDGETPU_OPS)
    return Finding(finding.rule, False, f"{finding.detail}; the compiler would map the first {first} of "
                                        f"{len(graph.ops)} ops and run {graph.ops[first].name} and the "
                                        f"{len(graph.ops) - first - 1} after it on the CPU")


def _edgetpu_dims(graph: _Graph) -> Finding:
    # Coral: a tensor of more than 3 dimensions may be larger than 1 only in its 3 innermost ones. That is
    # about the data flowing through the graph: conv kernels (constants) are 4-D by nature.
    bad = [t.name for t in graph.tensors
           if not t.constant and len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3])]
    if bad:
        return Finding("dimensions", False, f"{len(bad)} tensors larger than 1 outside their 3 innermost "
                                            f"dimensions (e.g. {bad[0]}: a batch above 1)")
    return Finding("dimensions", True, "at most 3 dimensions larger than 1 in every tensor")


def _edgetpu_op_limits(graph: _Graph) -> Finding:
    problems = []
    for op in graph.ops:
        if op.name in _EDGETPU_NO_FUSED_ACTIVATION and op.fused_activation > 0:
            problems.append(f"{op.name} with a fused activation")
        rank = len(graph.tensors[op.inputs[0]].shape) if op.inputs else 0
        if op.name in _EDGETPU_NO_BATCH_REDUCTION and rank and 0 in {a % rank for a in op.axes or ()}:
            problems.append(f"{op.name} over the batch axis")
    if problems:
        return Finding("op-limits", False, "; ".join(sorted(set(problems))))
    return Finding("op-limits", True, "no fused activation on pooling/concatenation, no reduction over the batch")


def _constant_kernels(graph: _Graph) -> Finding:
    computed = sorted({op.name for op in graph.ops if op.name in _CONSTANT_KERNEL_OPS
                       and len(op.inputs) > 1 and not graph.tensors[op.inputs[1]].constant})
    if computed:
        return Finding("constant-weights", False, f"weights computed at run time in {', '.join(computed)}")
    return Finding("constant-weights", True, "weights and biases are constants in the file")


# --- making the file fit, then checking it ----------------------------------------------------------------


def static_batch(model: bytes) -> bytes:
    """The same file with its batch dimension fixed: every tensor's shape signature -1 in dimension 0 becomes
    the size the converter gave it (1), so the file has only static shapes, as the Edge TPU compiler and
    firmware want. Edited in place in the flatbuffer, so everything else (metadata, the packed labels) stays
    byte for byte. A dynamic size in any other dimension is left for the checks to report."""
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(model)
    root = schema.Model.GetRootAs(buf, 0)
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            if tensor.ShapeSignatureIsNone() or tensor.ShapeSignatureLength() == 0:
                continue
            signature = tensor.ShapeSignatureAsNumpy()  # a view into buf: writing it edits the file
            if signature[0] < 0 and tensor.ShapeLength() and tensor.Shape(0) > 0:
                signature[0] = tensor.Shape(0)
    return bytes(buf)


_ADVICE = {
    "operators": "replace those layers with ones it has (e.g. ReLU for GELU) or convert without --target {target}",
    "full-integer": "these layers have no int8 kernel in TFLite's converter and stay float; replace them",
    "static-shapes": "its size follows the batch or the input; convert with a fixed input size and one image "
                     "per invoke (no --tta)",
    "dimensions": "convert with one image per invoke (no --tta)",
    "batch-1": "convert with one image per invoke (no --tta)",
    "one-subgraph": "remove control flow (if/while) from the model",
    "op-limits": "Coral's table allows no fused activation on pooling or concatenation and no reduction over the batch",
    "constant-weights": "make the weights layer constants, not computed inputs",
    "io-types": "use --io uint8",
}


def _advice(target: str, rule: str) -> str:
    return _ADVICE.get(rule, "see the model requirements").format(target=target)


def refusal(target: str, broken: Sequence[Finding]) -> str:
    """The one line that refuses a file: what breaks each rule and what to do."""
    parts = [f"{f.detail}: {_advice(target, f.rule)}" for f in broken]
    who = "TFLite Micro" if target == MICRO else "the Edge TPU compiler"
    return f"--target {target}: the model is not one {who} takes, nothing was written: " + "; ".join(parts)


def check(target: str, model: bytes) -> List[Finding]:
    return check_micro(model) if target == MICRO else check_edgetpu(model)


def finish(result, target: str, model_path: Path, say) -> TargetReport:
    """Fix the batch of a freshly converted model, check it against `target`, and (micro) run it in TFLite
    Micro and measure its arena; replaces result.model. ConversionError naming what breaks otherwise."""
    from edgevision.convert.report import gzip_size

    model = static_batch(result.model)
    findings = check(target, model)
    broken = [f for f in findings if not f.ok]
    if broken:
        raise ConversionError(refusal(target, broken))
    report = TargetReport(target, findings, ops=ops_in_order(read_graph(model)),
                          files=extra_paths(target, model_path))
    if target == MICRO:
        _run_in_micro(model, report, say)
    else:
        report.notes.append("edgevision cannot run Coral's Edge TPU compiler here (it is not installed, and "
                            "it is Coral's own tool): the checks above are the requirements Coral documents, "
                            "and the compiler decides which ops it maps. Compile it where it is installed: "
                            + EDGETPU_COMPILER_COMMAND.format(path=model_path))
    result.model, result.gzip_bytes = model, gzip_size(model)
    return report


def _run_in_micro(model: bytes, report: TargetReport, say) -> None:
    from edgevision.convert import micro_arena

    say("loading the model in TFLite Micro's interpreter and measuring its arena")
    run = micro_arena.run(model)
    report.arena = run.to_dict() if run is not None else None
    if run is None:
        report.notes.append("not run in TFLite Micro: it is not installed here (pip install 'edgevision[micro]'), "
                            "so the arena size is unmeasured")


def extra_paths(target: Optional[str], model_path: Path) -> Dict[str, Path]:
    """The files a target writes beside the .tflite: micro's C++ source and header."""
    if target != MICRO:
        return {}
    return {"source": model_path.with_suffix(".cc"), "header": model_path.with_suffix(".h")}


def planned_paths(options, variants, model_paths: Sequence[Path]) -> List[Path]:
    """The extra files --target / --npu will write (for the write checks before converting); both make one
    model, so --all is refused here."""
    if not (options.target or options.npu):
        return []
    if len(variants) != 1:
        raise UsageError("--target and --npu make one model for one device; drop --all")
    paths = list(extra_paths(options.target, model_paths[0]).values())
    if options.npu:
        from edgevision.convert.npu import output_path, parse

        paths.append(output_path(model_paths[0], parse(options.npu)))
    return paths


def run(results, options, model_path: Path, say) -> Optional[TargetReport]:
    """--target's checks and --npu's compilation on the one converted model, before anything is written."""
    if not (options.target or options.npu):
        return None
    result = results[0]
    report = finish(result, options.target, model_path, say) if options.target else TargetReport(None, [])
    if options.npu:
        from edgevision.convert.npu import compile_for, output_path, parse

        spec = parse(options.npu)
        say(f"compiling ahead of time for {spec.vendor} {spec.soc} with LiteRT's AOT tooling")
        report.compiled, stats = compile_for(result.model, spec)
        report.files["npu"] = output_path(model_path, spec)
        report.npu = {"vendor": spec.vendor, "soc": spec.soc, "partition_stats": stats,
                      "bytes": len(report.compiled)}
    return report


def write_files(report: Optional[TargetReport], model: bytes) -> None:
    """Write the target's own files (atomically), once the .tflite itself is written."""
    from edgevision.atomic import write_bytes, write_text
    from edgevision.convert.c_array import c_files

    if report is None:
        return
    if report.target == MICRO:
        source, header = c_files(model, report.files["header"].name, report.arena, report.ops, interface(model))
        write_text(report.files["header"], header)
        write_text(report.files["source"], source)
    if report.compiled is not None:
        write_bytes(report.files["npu"], report.compiled)


def interface(model: bytes) -> str:
    """'input uint8 [1, 32, 32, 3] (scale 1, zero point 0); output uint8 [1, 3] (...)' for the C header."""
    from ai_edge_litert import schema_py_generated as schema

    obj = unpack_model(model)
    graph = obj.subgraphs[0]
    type_names = {k: v.lower() for k, v in enum_names(schema.TensorType).items()}
    parts = []
    for what, index in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        t = graph.tensors[int(index)]
        q = t.quantization
        quant = (f" (scale {float(q.scale[0]):.6g}, zero point {int(q.zeroPoint[0])})"
                 if q is not None and q.scale is not None and len(q.scale) else "")
        parts.append(f"{what} {type_names.get(t.type, '?')} {[int(d) for d in t.shape]}{quant}")
    return "; ".join(parts)


def describe(report: dict) -> List[str]:
    """What the CLI prints about a target: each rule, the arena, the notes."""
    lines = []
    if report.get("target"):
        lines.append(f"target {report['target']}: every check passed")
        lines += [f"  ok  {f['rule']}: {f['detail']}" for f in report["findings"]]
    arena = report.get("arena")
    if arena:
        diff = arena.get("litert_max_diff")
        agree = f"; its output is within {diff} code(s) of LiteRT's on the same input" if diff is not None else ""
        lines.append(f"  TFLite Micro {arena['version']} ran it in a {arena['arena_bytes']}-byte arena{agree}")
    if report.get("npu"):
        npu = report["npu"]
        lines.append(f"npu {npu['vendor']}:{npu['soc']}: compiled ({npu['bytes']} bytes) {npu['partition_stats']}")
    lines += [f"note: {n}" for n in report.get("notes", [])]
    return lines
