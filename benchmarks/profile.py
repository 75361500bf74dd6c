"""`bench --profile`: where one invoke's time goes, operator by operator.

What LiteRT's Python package offers was looked at first: `ai-edge-litert` 2.3's `Interpreter` has no profiler
(benchmark_model's `--enable_op_profiling` is a C++ tool), `CompiledModel` has none in Python either (the C
library has a profiler API, which the Python wrappers neither enable nor read), and `profiling_info_pb2` /
`model_runtime_info_pb2` are only the protobuf messages such a profiler would fill. So the time is measured here:

- Every operator of the model becomes a model of its own (the flatbuffer re-packed with that one operator,
  its weights and its tensors at the shapes the full interpreter gave them), opened with the same backend,
  thread count and delegate, and fed the real intermediate values of one image (from one reference run of the
  whole model that keeps every tensor).
- The operators and the whole model are timed in alternating rounds, so drift on the machine touches all
  alike. At one thread the clock is the thread's CPU time, not the wall clock: on a busy machine other
  processes' time slices fall into long invokes far more often than into short ones, and a wall clock then
  charges them to the whole model but not to its operators. With more threads the work runs on other threads,
  so the wall clock is used (and said).
- Each operator is timed hot (its weights stay in the cache between repeats), as benchmark_model's per-node
  timers see it. Every invoke() call also pays a fixed cost (the call into the interpreter and its bookkeeping),
  which a one-operator model pays once per operator but the whole model only once: it is measured on a model
  that does next to nothing (RELU of one float) in the same rounds, taken off each operator and reported once
  (`fixed_ms`). Without that, a fast model's operators summed to a third more than its invoke. The report says
  how far operators plus fixed cost land from the whole invoke (`ops_sum_ratio`) rather than scaling it away.

Only the model's first subgraph is profiled; operators that run other subgraphs (WHILE, IF, CALL_ONCE) are
refused with a one-line error.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from edgevision.errors import ModelError

#: Rounds the timed runs are split into, alternating operators and whole model.
ROUNDS = 5
#: Operators that call other subgraphs: a one-operator model of them would have nothing to call.
_CONTROL_FLOW = ("WHILE", "IF", "CALL_ONCE", "CALL")


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def op_names() -> Dict[int, str]:
    """Builtin operator code -> name (CONV_2D, ...), from LiteRT's schema."""
    from edgevision.convert.flatbuffer import enum_names

    return enum_names(_schema().BuiltinOperator)


def _op_type(model, op, names: Dict[int, str]) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    from edgevision.convert.flatbuffer import builtin_code

    builtin = builtin_code(code)
    if names.get(builtin) == "CUSTOM":
        return (code.customCode or b"CUSTOM").decode("utf-8", "replace") if isinstance(code.customCode, bytes) \
            else str(code.customCode or "CUSTOM")
    return names.get(builtin, f"BUILTIN_{builtin}")


def reference_values(data: bytes, seed: int = 0) -> Tuple[Dict[int, np.ndarray], Dict[int, tuple]]:
    """(tensor index -> value, tensor index -> shape) after one run of the whole model on a random input,
    with LiteRT's reference kernels and every intermediate tensor kept."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgevision.benchmarks.child import fill_inputs
    from edgevision.native_log import quiet_native_stderr

    try:
        with quiet_native_stderr():
            ref = Interpreter(model_content=bytes(data), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            ref.allocate_tensors()
            fill_inputs(ref, seed)
            ref.invoke()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"--profile: LiteRT's reference kernels cannot run this model ({e})") from e
    values, shapes = {}, {}
    for detail in ref.get_tensor_details():
        shapes[detail["index"]] = tuple(int(v) for v in detail["shape"])
        try:
            values[detail["index"]] = np.array(ref.get_tensor(detail["index"]))
        except ValueError:  # a tensor without data (an optional input left out)
            continue
    return values, shapes


class _Graph:
    """The unpacked model and which of its tensors hold weights."""

    def __init__(self, data: bytes):
        from edgevision.convert.flatbuffer import unpack_model

        self.model = unpack_model(bytes(data))
        if not self.model.subgraphs:
            raise ModelError("--profile: the model has no subgraph")
        self.graph = self.model.subgraphs[0]

    def constant(self, index: int) -> bool:
        tensor = self.graph.tensors[index]
        buffers = self.model.buffers or []
        if not 0 < tensor.buffer < len(buffers):
            return False
        buffer = buffers[tensor.buffer]
        return (buffer.data is not None and len(buffer.data) > 0) or (buffer.offset or 0) > 1


def one_op_model(g: _Graph, k: int, shapes: Dict[int, tuple]) -> Tuple[bytes, List[int]]:
    """Operator `k` alone as a model: (its bytes, the original tensor indices of its inputs, in order)."""
    from edgevision.convert.flatbuffer import pack_model

    schema, op = _schema(), g.graph.operators[k]
    inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
    outputs = [int(i) for i in op.outputs]
    extra = [int(i) for i in (op.intermediates if op.intermediates is not None else [])]
    used = list(dict.fromkeys(i for i in inputs + outputs + extra if i >= 0))
    remap = {i: n for n, i in enumerate(used)}
    new = schema.ModelT()
    new.version, new.description = g.model.version, "edgevision --profile: one operator"
    new.operatorCodes, new.buffers = [g.model.operatorCodes[op.opcodeIndex]], [schema.BufferT()]
    tensors = []
    for i in used:
        tensor = copy.copy(g.graph.tensors[i])
        if g.constant(i):
            new.buffers.append(g.model.buffers[tensor.buffer])
            tensor.buffer = len(new.buffers) - 1
        else:  # an activation: the shape the full interpreter computed (files may hold a stale one)
            tensor.buffer, tensor.shapeSignature = 0, None
            tensor.shape = np.asarray(shapes.get(i, tensor.shape), np.int32)
        tensors.append(tensor)
    single = copy.copy(op)
    single.opcodeIndex = 0
    single.inputs = np.asarray([remap[i] if i >= 0 else -1 for i in inputs], np.int32)
    single.outputs = np.asarray([remap[i] for i in outputs], np.int32)
    if op.intermediates is not None:
        single.intermediates = np.asarray([remap[i] for i in extra], np.int32)
    feeds = list(dict.fromkeys(i for i in inputs if i >= 0 and not g.constant(i)))
    sub = schema.SubGraphT()
    sub.tensors, sub.operators = tensors, [single]
    sub.inputs = np.asarray([remap[i] for i in feeds], np.int32)
    sub.outputs = np.asarray([remap[i] for i in outputs], np.int32)
    new.subgraphs = [sub]
    return pack_model(new), feeds


def fixed_cost_model() -> bytes:
    """A model whose one operator costs next to nothing (RELU of one float32): what invoke() costs by itself."""
    from edgevision.convert.flatbuffer import pack_model

    schema = _schema()
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RELU
    code.version = 1
    tensors = []
    for name in (b"x", b"y"):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = np.asarray([1], np.int32), schema.TensorType.FLOAT32, 0, name
        tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.asarray([0], np.int32), np.asarray([1], np.int32)
    sub = schema.SubGraphT()
    sub.tensors, sub.operators = tensors, [op]
    sub.inputs, sub.outputs = np.asarray([0], np.int32), np.asarray([1], np.int32)
    model = schema.ModelT()
    model.version, model.description = 3, "edgevision --profile: fixed cost of one invoke"
    model.operatorCodes, model.buffers, model.subgraphs = [code], [schema.BufferT()], [sub]
    return pack_model(model)


def _feed(interp, feeds: List[int], values: Dict[int, np.ndarray]) -> None:
    for original, detail in zip(feeds, interp.get_input_details()):
        if original in values:
            interp.set_tensor(detail["index"], values[original].astype(detail["dtype"], copy=False))


def _timed(invoke: Callable[[], Any], runs: int, clock: Callable[[], int]) -> float:
    """Total clock nanoseconds of `runs` calls, each timed on its own (the clock reads stay outside)."""
    total = 0
    for _ in range(runs):
        t0 = clock()
        invoke()
        total += clock() - t0
    return float(total)


def profile_model(data: bytes, threads: int, runs: int, warmup: int, opener: Callable[[bytes, str], Any],
                  name: str = "model") -> Dict[str, Any]:
    """Per-operator times of one model. `opener(bytes, name)` opens an interpreter as the benchmark does."""
    names = op_names()
    g = _Graph(data)
    kinds = [_op_type(g.model, op, names) for op in g.graph.operators]
    flow = sorted(set(kinds) & set(_CONTROL_FLOW))
    if flow:
        raise ModelError(f"{name}: --profile handles models of one graph; {flow[0]} runs other subgraphs")
    values, shapes = reference_values(data)
    whole = opener(data, name)
    _feed(whole, [d["index"] for d in whole.get_input_details()], values)
    ops = []
    for k in range(len(kinds)):
        model, feeds = one_op_model(g, k, shapes)
        interp = opener(model, f"{name} operator {k} ({kinds[k]})")
        _feed(interp, feeds, values)
        ops.append(interp)
    fixed = opener(fixed_cost_model(), f"{name} (fixed cost of one invoke)")
    ms = _time_rounds([whole, fixed, *ops], runs, warmup, time.thread_time_ns if threads == 1 else time.perf_counter_ns)
    op_ms = [max(0.0, t - ms[1]) for t in ms[2:]]  # what each operator adds to an invoke
    clock = "thread CPU time" if threads == 1 else "wall clock"
    return summarize(kinds, op_ms, ms[0], clock, ROUNDS * max(1, runs // ROUNDS), fixed_ms=ms[1])


def _time_rounds(interpreters: List[Any], runs: int, warmup: int, clock: Callable[[], int]) -> List[float]:
    """Mean ms per invoke of each interpreter, timed in alternating rounds so drift touches all alike."""
    for interp in interpreters:
        _timed(interp.invoke, max(1, warmup), clock)
    per_round = max(1, runs // ROUNDS)
    total = np.zeros(len(interpreters))
    for _ in range(ROUNDS):
        for j, interp in enumerate(interpreters):
            total[j] += _timed(interp.invoke, per_round, clock)
    return (total / (ROUNDS * per_round) / 1e6).tolist()


def summarize(kinds: List[str], op_ms: List[float], invoke_ms: float, clock: str, runs: int,
              fixed_ms: float = 0.0) -> Dict[str, Any]:
    """Per-type rows (most time first) with shares of the operators' sum, and each operator's own time;
    `fixed_ms` is what one invoke() costs besides its operators."""
    total = float(sum(op_ms))
    by_type: Dict[str, List[float]] = {}
    for kind, ms in zip(kinds, op_ms):
        by_type.setdefault(kind, []).append(ms)
    rows, cumulative = [], 0.0
    for kind, times in sorted(by_type.items(), key=lambda kv: (-sum(kv[1]), kv[0])):
        share = sum(times) / total if total > 0 else 0.0
        cumulative += share
        rows.append({"op": kind, "count": len(times), "mean_ms": sum(times), "share": share,
                     "cumulative_share": min(cumulative, 1.0)})
    return {
        "clock": clock,
        "runs": runs,
        "invoke_ms": invoke_ms,
        "ops_sum_ms": total,
        "fixed_ms": fixed_ms,
        "ops_sum_ratio": (total + fixed_ms) / invoke_ms if invoke_ms > 0 else None,
        "by_type": rows,
        "operators": [{"index": i, "op": kind, "mean_ms": ms} for i, (kind, ms) in enumerate(zip(kinds, op_ms))],
    }


# --- presenting ------------------------------------------------------------------------------------
PROFILE_COLUMNS = ("op type", "count", "mean ms", "share", "cumulative")


def profile_cells(profile: Dict[str, Any]) -> List[List[str]]:
    """The per-type table as strings, header first (the text table and the Markdown page share it)."""
    cells = [list(PROFILE_COLUMNS)]
    for r in profile.get("by_type") or []:
        cells.append([r["op"], str(r["count"]), f"{r['mean_ms']:.4f}", f"{r['share'] * 100:.1f} %",
                      f"{r['cumulative_share'] * 100:.1f} %"])
    return cells


def profile_heading(row: Dict[str, Any]) -> str:
    p = row.get("profile") or {}
    ratio = p.get("ops_sum_ratio")
    return (f"operators of {row.get('model')} (threads={row.get('threads')}, {p.get('clock')}, mean of "
            f"{p.get('runs')} runs each): whole invoke {p.get('invoke_ms', 0):.4f} ms, operators' sum "
            f"{p.get('ops_sum_ms', 0):.4f} ms + {p.get('fixed_ms', 0):.4f} ms fixed per invoke"
            + (f" ({ratio * 100:.1f} % of the invoke)" if ratio else ""))


def format_profiles(rows: List[Dict[str, Any]]) -> List[str]:
    """The profile section under the bench table: a heading and an aligned table per profiled row."""
    lines: List[str] = []
    for row in rows:
        p = row.get("profile")
        if not isinstance(p, dict):
            continue
        lines += ["", f"profile error: {row.get('model')}: {p['error']}"] if p.get("error") else \
            ["", profile_heading(row), *_aligned(profile_cells(p))]
    return lines


def _aligned(cells: List[List[str]]) -> List[str]:
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    out = []
    for n, line in enumerate(cells):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def markdown_profiles(rows: List[Dict[str, Any]]) -> List[str]:
    lines: List[str] = []
    for row in rows:
        p = row.get("profile")
        if not isinstance(p, dict) or p.get("error"):
            continue
        cells = profile_cells(p)
        lines += ["", profile_heading(row)[0].upper() + profile_heading(row)[1:] + ":", "",
                  "| " + " | ".join(cells[0]) + " |", "|---|" + "---:|" * (len(cells[0]) - 1)]
        lines += ["| " + " | ".join(c) + " |" for c in cells[1:]]
    return lines


def write_profile_plot(rows: List[Dict[str, Any]], target) -> Optional[str]:
    """A horizontal bar chart per profiled row: mean ms per operator type. None, or why it was not written."""
    profiled = [r for r in rows if isinstance(r.get("profile"), dict) and not r["profile"].get("error")]
    if not profiled:
        return "--profile-plot skipped: no model was profiled"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "--profile-plot skipped: matplotlib is not installed (pip install matplotlib)"
    from edgevision.atomic import write_figure

    heights = [max(2.0, 0.35 * len(r["profile"]["by_type"]) + 1.2) for r in profiled]
    fig, axes = plt.subplots(len(profiled), 1, figsize=(9, sum(heights)), dpi=110, squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, row in zip(axes[:, 0], profiled):
        types = row["profile"]["by_type"][::-1]  # largest at the top
        ax.barh([t["op"] for t in types], [t["mean_ms"] for t in types], color="tab:blue")
        for y, t in enumerate(types):
            ax.annotate(f" {t['share'] * 100:.1f} %", (t["mean_ms"], y), va="center", fontsize=8)
        ax.set_xlim(0, max(t["mean_ms"] for t in types) * 1.15 or 1)  # room for the share labels
        ax.set_xlabel(f"mean ms per invoke ({row['profile']['clock']})")
        ax.set_title(f"{row.get('model')}, threads={row.get('threads')}", fontsize=10)
    fig.tight_layout()
    write_figure(target, fig)
    return None
