"""Presenting a benchmark report: a text table, JSON, CSV, Markdown and a latency/accuracy plot.

Pure formatting over `Report.to_dict()`-shaped data; every file is written atomically (edgevision.atomic), so an
interrupted run never leaves half a CSV where the last good one was.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from edgevision.atomic import write_figure, write_text
from edgevision.errors import UsageError

LATENCY_KEYS = ("mean", "p50", "p90", "p99", "min", "max", "std")
#: Text columns (left-aligned); the numbers are right-aligned.
TEXT_COLUMNS = frozenset({"device", "model", "thr", "backend", "quant", "size", "input"})
KERAS_BACKENDS = ("keras.predict", "keras.call")


# --- cells ----------------------------------------------------------------------------------------
def _num(value, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _ms(value) -> str:
    """Milliseconds with three significant decimals for sub-millisecond models (a 14 us model is not 0.01)."""
    if value is None:
        return "-"
    return format(value, ".3f" if abs(value) < 1 else ".2f")


def _size(n: Optional[int]) -> str:
    if n is None:
        return "-"
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB"
    return f"{n / 2**10:.0f} KB"


def _input(row: Dict[str, Any]) -> str:
    inp = row.get("input")
    if isinstance(inp, list):
        inp = inp[0] if inp else None
    if not isinstance(inp, dict):
        return "-"
    return "x".join(map(str, inp.get("shape", []))) + f" {inp.get('dtype', '')}".rstrip()


def _quant(row: Dict[str, Any]) -> str:
    """'int8', 'int8 qat', 'int8 pruned' (quantization plus training-time optimisations), '-' if unknown."""
    opts = [o for o in (row.get("optimizations") or []) if isinstance(o, str)]
    return " ".join([str(row.get("quantization") or "-")] + opts)


def _lat(row: Dict[str, Any], key: str) -> Optional[float]:
    lat = row.get("latency_ms") or {}
    return lat.get(key)


def _columns(rows: Sequence[Dict[str, Any]], multi_device: bool) -> List[Tuple[str, Callable[[Dict], str]]]:
    cols: List[Tuple[str, Callable[[Dict], str]]] = []
    if multi_device:
        cols.append(("device", lambda r: str(r.get("device", "-"))))
    cols += [
        ("model", lambda r: str(r.get("model"))),
        ("thr", lambda r: str(r.get("threads"))),
        ("backend", lambda r: str(r.get("backend") or "-")),
        ("quant", _quant),
        ("size", lambda r: _size(r.get("bytes"))),
        ("input", _input),
        ("load ms", lambda r: _num(r.get("load_ms"), ".1f")),
        *[(f"{k} ms", (lambda key: lambda r: _ms(_lat(r, key)))(k)) for k in LATENCY_KEYS],
        ("inf/s", lambda r: _num(r.get("inferences_per_s"), ".1f")),
        ("peak MB", lambda r: _num(r.get("peak_rss_mb"), ".1f")),
        ("overhead", lambda r: _num(r.get("harness_overhead"), ".3f")),
    ]
    if any(r.get("arena_bytes") is not None for r in rows):  # TensorFlow Lite Micro: RAM and flash, as a board
        cols.append(("arena KB", lambda r: _num(_kib(r.get("arena_bytes")), ".1f")))
        cols.append(("flash KB", lambda r: _num(_kib(r.get("bytes")), ".1f")))
    if any(r.get("accuracy") is not None for r in rows):
        cols.append(("top-1", lambda r: _num(r.get("accuracy"), ".4f")))
    if any(isinstance(r.get("e2e"), dict) for r in rows):
        cols.append(("e2e fps", lambda r: _num((r.get("e2e") or {}).get("fps"), ".1f")))
        cols.append(("e2e ms/frame", lambda r: _e2e_total(r)))
    return cols


def _kib(n: Optional[int]) -> Optional[float]:
    return None if n is None else n / 1024


def _e2e_total(row: Dict[str, Any]) -> str:
    e2e = row.get("e2e") or {}
    if e2e.get("error"):
        return "error"
    return _num((e2e.get("stages_ms") or {}).get("total", {}).get("mean"))


def _multi_device(report: Dict[str, Any]) -> bool:
    return len({r.get("device") for r in report.get("results", [])}) > 1


# --- text table -----------------------------------------------------------------------------------
def format_table(report: Dict[str, Any]) -> str:
    """The results as an aligned text table, with errors listed under it."""
    rows = report.get("results", [])
    ok = [r for r in rows if not r.get("error")]
    cols = _columns(rows, _multi_device(report))
    cells = [[name for name, _ in cols]] + [[fn(r) for _, fn in cols] for r in ok]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = []
    for i, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if name in TEXT_COLUMNS else c.rjust(w)
                               for (name, _), c, w in zip(cols, line, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if not ok:
        lines = ["(no successful measurements)"]
    multi = _multi_device(report)
    for r in rows:
        if r.get("error"):
            where = f"[{r.get('device')}] " if multi else ""
            lines.append(f"error: {where}{r.get('model')} (threads={r.get('threads')}): {r['error']}")
    lines += _e2e_lines(rows)
    lines += _profile_lines(rows)
    return "\n".join(lines)


def _profile_lines(rows: Sequence[Dict[str, Any]], markdown: bool = False) -> List[str]:
    """`bench --profile`'s per-operator tables (benchmarks.profile), nothing without profiles."""
    if not any(isinstance(r.get("profile"), dict) for r in rows):
        return []
    from edgevision.benchmarks import profile

    return profile.markdown_profiles(list(rows)) if markdown else profile.format_profiles(list(rows))


def _e2e_lines(rows: Sequence[Dict[str, Any]]) -> List[str]:
    out = []
    for r in rows:
        e2e = r.get("e2e")
        if not isinstance(e2e, dict):
            continue
        head = f"e2e {r.get('model')} threads={r.get('threads')}"
        if e2e.get("error"):
            out.append(f"{head}: error: {e2e['error']}")
            continue
        stages = e2e.get("stages_ms") or {}
        parts = ", ".join(f"{k} {v['mean']:.2f}" for k, v in stages.items() if isinstance(v, dict) and "mean" in v)
        out.append(f"{head}: {e2e.get('fps', 0):.1f} frames/s over {e2e.get('frames')} frames; "
                   f"mean ms per stage: {parts}")
    if out:
        out.insert(0, "")
    return out


def harness_line(rows: Sequence[Dict[str, Any]]) -> Optional[str]:
    """What the harness cost: its per-call clock cost against the fastest model, and the measured ratios."""
    timed = [r for r in rows if not r.get("error") and r.get("timer_ns") and _lat(r, "mean")]
    if not timed:
        return None
    worst = max(timed, key=lambda r: r["timer_ns"] / (_lat(r, "mean") * 1e6))
    share = worst["timer_ns"] / (_lat(worst, "mean") * 1e6) * 100
    share_text = f"{share:.3f} %" if share >= 0.001 else "< 0.001 %"
    line = (f"harness: {worst['timer_ns']:.0f} ns of clock reads per timed call, {share_text} of the fastest mean "
            "latency")
    ratios = [r["harness_overhead"] for r in timed if r.get("harness_overhead")]
    if ratios:
        line += (f"; timed/bare loop ratio {min(ratios):.3f}..{max(ratios):.3f} (spread around 1.000 is the "
                 "machine's noise, see the load average)")
    return line


def format_report(report: Dict[str, Any]) -> str:
    """Header, table and notes: what `edgevision bench` prints."""
    from edgevision.benchmarks.machine import header_lines

    lines = []
    machines = report.get("machines") or {}
    if len(machines) > 1:
        for device, info in machines.items():
            lines += [f"[{device}] {line}" for line in header_lines(info)]
    else:
        lines += header_lines(report.get("machine") or {})
    s = report.get("settings") or {}
    lines.append(f"settings: warmup {s.get('warmup')}, runs {s.get('runs')}, backend {s.get('backend')}; "
                 "times in ms; overhead = harness loop / bare invoke() loop")
    lines.append("")
    lines.append(format_table(report))
    lines += _device_columns(report)
    harness = harness_line(report.get("results", []))
    if harness:
        lines.append(harness)
    for note in report.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _device_columns(report: Dict[str, Any], markdown: bool = False) -> List[str]:
    """A fleet's comparison, one column per device (nothing for one device)."""
    from edgevision.benchmarks import fleet

    return fleet.markdown_device_columns(report) if markdown else fleet.format_device_columns(report)


# --- files ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outputs:
    """The files a report goes to, besides the table. `json_file` "-" is JSON on stdout (the caller's)."""

    json_file: Optional[str] = None
    csv_file: Optional[str] = None
    md_file: Optional[str] = None
    plot_file: Optional[str] = None
    #: `--profile-plot`: a bar chart of each model's time per operator type.
    profile_plot_file: Optional[str] = None

    def __post_init__(self):
        for option, name in (("--plot", self.plot_file), ("--profile-plot", self.profile_plot_file)):
            if name and not name.lower().endswith(".png"):
                raise UsageError(f"{option} writes a PNG image; give a file name ending in .png, got {name!r}")

    @property
    def files(self) -> List[str]:
        return [p for p in (self.json_file, self.csv_file, self.md_file, self.plot_file, self.profile_plot_file)
                if p and p != "-"]


def write_outputs(report: Dict[str, Any], outputs: Outputs, command: Optional[str] = None) -> Optional[str]:
    """Write every file `outputs` names; returns why the plot was skipped, if it was."""
    if outputs.json_file and outputs.json_file != "-":
        write_json(report, outputs.json_file)
    if outputs.csv_file:
        write_csv(report, outputs.csv_file)
    if outputs.md_file:
        write_markdown(report, outputs.md_file, command=command)
    notes = []
    if outputs.profile_plot_file:
        from edgevision.benchmarks.profile import write_profile_plot

        notes.append(write_profile_plot(report.get("results", []), outputs.profile_plot_file))
    if outputs.plot_file:
        notes.append(write_plot(report, outputs.plot_file))
    return "; ".join(n for n in notes if n) or None


def to_json(report: Dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"


def write_json(report: Dict[str, Any], target) -> Path:
    return write_text(target, to_json(report))


def flat_row(row: Dict[str, Any]) -> Dict[str, Any]:
    """One result as flat CSV columns (latency_ms_p50, e2e_fps, input_shape, ...)."""
    out: Dict[str, Any] = {}
    for key, value in row.items():
        if key == "latency_ms":
            for k in LATENCY_KEYS:
                out[f"latency_ms_{k}"] = (value or {}).get(k)
        elif key in ("input", "output"):
            first = value[0] if isinstance(value, list) and value else value
            if isinstance(first, dict):
                out[f"{key}_shape"] = "x".join(map(str, first.get("shape", [])))
                out[f"{key}_dtype"] = first.get("dtype")
        elif key == "e2e" and isinstance(value, dict):
            out["e2e_fps"] = value.get("fps")
            out["e2e_frames"] = value.get("frames")
            out["e2e_error"] = value.get("error")
            for stage, stats in (value.get("stages_ms") or {}).items():
                if isinstance(stats, dict):
                    out[f"e2e_{stage}_ms_mean"] = stats.get("mean")
                    out[f"e2e_{stage}_ms_p50"] = stats.get("p50")
        elif isinstance(value, (dict, list)):
            out[key] = json.dumps(value)
        else:
            out[key] = value
    return out


def to_csv(report: Dict[str, Any]) -> str:
    rows = [flat_row(r) for r in report.get("results", [])]
    fields: List[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_csv(report: Dict[str, Any], target) -> Path:
    return write_text(target, to_csv(report))


def to_markdown(report: Dict[str, Any], title: str = "edgevision benchmark", command: Optional[str] = None) -> str:
    """A Markdown page: the machine header, the command, the table, errors and notes."""
    from edgevision.benchmarks.machine import header_lines

    lines = [f"# {title}", ""]
    machines = report.get("machines") or {"": report.get("machine") or {}}
    for device, info in machines.items():
        if len(machines) > 1:
            lines.append(f"**{device}**")
            lines.append("")
        lines += [f"- {line}" for line in header_lines(info)]
        lines.append("")
    s = report.get("settings") or {}
    lines.append(f"Warm-up {s.get('warmup')} runs (excluded), {s.get('runs')} timed runs, backend "
                 f"`{s.get('backend')}`. Times in milliseconds; *overhead* is the harness loop's time over a bare "
                 "`invoke()` loop in the same process; *peak MB* is the peak resident memory of the process that "
                 "ran the model.")
    if command:
        lines += ["", "```", command, "```"]
    lines.append("")
    rows = report.get("results", [])
    ok = [r for r in rows if not r.get("error")]
    cols = _columns(rows, _multi_device(report))
    if ok:
        lines.append("| " + " | ".join(name for name, _ in cols) + " |")
        lines.append("|" + "|".join("---" if name in TEXT_COLUMNS else "---:" for name, _ in cols) + "|")
        for r in ok:
            lines.append("| " + " | ".join(_md_escape(fn(r)) for _, fn in cols) + " |")
        harness = harness_line(rows)
        if harness:
            lines += ["", harness[0].upper() + harness[1:] + "."]
    else:
        lines.append("No successful measurements.")
    lines += _device_columns(report, markdown=True)
    errors = [r for r in rows if r.get("error")]
    if errors:
        lines += ["", "Errors:", ""]
        lines += [f"- `{r.get('model')}` (threads={r.get('threads')}): {_md_escape(r['error'])}" for r in errors]
    e2e = _e2e_lines(rows)
    if e2e:
        lines += ["", "End to end (camera pipeline):", ""] + [f"- {line}" for line in e2e if line]
    lines += _profile_lines(rows, markdown=True)
    notes = report.get("notes") or []
    if notes:
        lines += ["", "Notes:", ""] + [f"- {_md_escape(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def write_markdown(report: Dict[str, Any], target, **kwargs) -> Path:
    return write_text(target, to_markdown(report, **kwargs))


# --- plot -----------------------------------------------------------------------------------------
def pareto_front(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Indices of the points no other point beats: none is both at least as fast and at least as accurate
    (and strictly better in one). Sorted by latency."""
    front = []
    for i, (lat_i, acc_i) in enumerate(points):
        dominated = any(
            (lat_j <= lat_i and acc_j >= acc_i) and (lat_j < lat_i or acc_j > acc_i)
            for j, (lat_j, acc_j) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def write_plot(report: Dict[str, Any], target) -> Optional[str]:
    """Latency (p50) against top-1 accuracy, marker area by file size, Pareto front drawn per thread count.

    Without accuracies (no --eval and none in the models' metadata) it plots latency against file size.
    Each model is labelled once, at its fewest-threads marker, with a thin line to its other thread counts;
    labels drop the prefix all models share and are moved apart until none overlaps another or a marker.
    Returns None when written, or a note saying why not (matplotlib missing, nothing measured).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "--plot skipped: matplotlib is not installed (pip install matplotlib)"
    rows = [r for r in report.get("results", []) if not r.get("error") and _lat(r, "p50") is not None]
    if not rows:
        return "--plot skipped: there are no successful measurements to plot"
    write_figure(target, plot_figure(plt, rows))
    return None


def plot_figure(plt, rows: Sequence[Dict[str, Any]]):
    """The matplotlib figure of `write_plot` for measured rows (the caller closes it)."""
    have_acc = any(r.get("accuracy") is not None for r in rows)
    plotted = [r for r in rows if r.get("accuracy") is not None] if have_acc else rows
    fig, ax = plt.subplots(figsize=(10, 6), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    max_bytes = max((r.get("bytes") or 0) for r in rows) or 1
    for k, threads in enumerate(sorted({r["threads"] for r in rows})):
        group = [r for r in plotted if r["threads"] == threads]
        if group:
            _plot_group(ax, group, threads, colors[k % len(colors)], have_acc, max_bytes)
    prefix = _shared_prefix([str(r["model"]) for r in plotted])
    _link_thread_counts(ax, plotted, have_acc)
    _finish_axes(ax, plotted, have_acc, prefix)
    fig.tight_layout()  # before the labels: placing them needs the final axes geometry
    _place_labels(ax, _label_points(plotted, have_acc, prefix, max_bytes),
                  [(_lat(r, "p50"), _y(r, have_acc), _marker_radius(r, max_bytes)) for r in plotted])
    return fig


def _y(row: Dict[str, Any], have_acc: bool) -> float:
    return row["accuracy"] if have_acc else (row.get("bytes") or 0) / 2**20


def _plot_group(ax, group: Sequence[Dict[str, Any]], threads: int, color, have_acc: bool, max_bytes: int) -> None:
    """One thread count's models as markers, and (with accuracies) their Pareto front."""
    xs = [_lat(r, "p50") for r in group]
    ys = [_y(r, have_acc) for r in group]
    sizes = [(2 * _marker_radius(r, max_bytes)) ** 2 for r in group]
    ax.scatter(xs, ys, s=sizes, alpha=0.55, color=color, edgecolors="black", linewidths=0.5,
               label=f"{threads} thread{'s' if threads > 1 else ''}")
    if have_acc and len(group) > 1:
        front = pareto_front(list(zip(xs, ys)))
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color=color, linewidth=1.2,
                drawstyle="steps-post", label=f"Pareto front ({threads} thr)")
        ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=18, color=color, marker="*", zorder=3)


def _shared_prefix(names: Sequence[str]) -> str:
    """The start all model names share, cut after a '-' or '_' (so 'cifar10-cnn-int8' keeps 'int8');
    '' when there is one model or nothing is shared."""
    import os

    if len(set(names)) < 2:
        return ""
    common = os.path.commonprefix(list(names))
    cut = max(common.rfind("-"), common.rfind("_"))
    return common[: cut + 1] if cut >= 0 else ""


def _short(name: str, prefix: str) -> str:
    short = name[len(prefix):] if prefix and name.startswith(prefix) else name
    return short[: -len(".tflite")] if short.endswith(".tflite") and len(short) > 7 else short


def _marker_radius(row: Dict[str, Any], max_bytes: int) -> float:
    """Radius in points of a row's marker (scatter sizes are areas in points squared)."""
    return (40 + 600 * (row.get("bytes") or 0) / max_bytes) ** 0.5 / 2


def _label_points(rows: Sequence[Dict[str, Any]], have_acc: bool, prefix: str, max_bytes: int) -> list:
    """(x, y, label, marker radius) once per model, at its fewest-threads row."""
    first: Dict[str, Dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["threads"]):
        first.setdefault(str(r["model"]), r)
    return [(_lat(r, "p50"), _y(r, have_acc), _short(name, prefix), _marker_radius(r, max_bytes))
            for name, r in first.items()]


def _link_thread_counts(ax, rows: Sequence[Dict[str, Any]], have_acc: bool) -> None:
    """A thin grey line through one model's markers, so an unlabelled marker leads to its label."""
    by_model: Dict[str, List[Dict[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(str(r["model"]), []).append(r)
    for group in by_model.values():
        if len(group) > 1:
            group = sorted(group, key=lambda r: r["threads"])
            ax.plot([_lat(r, "p50") for r in group], [_y(r, have_acc) for r in group], "-", color="grey",
                    linewidth=0.6, alpha=0.6, zorder=1)


#: Label offsets tried in turn (points beyond the marker's edge): nearest first, eight directions each.
_RADII = (3, 10, 20, 32, 46, 62)
_DIRECTIONS = ((1, 0.3), (1, -0.3), (-1, 0.3), (-1, -0.3), (0, 1), (0, -1), (1, 1), (-1, -1))
LABEL_FONT = 8


def _place_labels(ax, points: Sequence[tuple], markers: Sequence[tuple]) -> None:
    """Each label at the nearest offset where it overlaps no marker and no label placed before, and stays
    inside the axes (the legend is outside them); a label moved away from its marker gets a thin leader
    line. Top-left labels first, so the result does not depend on the order of the report's rows."""
    renderer = ax.figure.canvas.get_renderer()
    scale = ax.figure.dpi / 72  # points -> pixels
    taken = [_marker_box(ax, x, y, r * scale) for x, y, r in markers]
    for x, y, text, radius in sorted(points, key=lambda p: (-p[1], p[0])):
        probe = ax.annotate(text, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=LABEL_FONT)
        dx, dy, box = _free_spot(ax, probe, renderer, radius, taken)
        probe.remove()
        far = max(abs(dx), abs(dy)) > radius + _RADII[1]
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=LABEL_FONT,
                    ha=_align(dx, "left", "right"), va=_align(dy, "bottom", "top"),
                    arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.5} if far else None)
        taken.append(box)


def _free_spot(ax, probe, renderer, radius: float, taken: list):
    """(dx, dy, window box) of the first free offset for `probe`; the nearest one when none is free."""
    area = ax.get_window_extent(renderer)
    first = None
    for r in _RADII:
        for ux, uy in _DIRECTIONS:
            dx, dy = ux * (radius + r), uy * (radius + r)
            probe.set_position((dx, dy))
            probe.set_ha(_align(dx, "left", "right"))
            probe.set_va(_align(dy, "bottom", "top"))
            box = probe.get_window_extent(renderer)
            first = first or (dx, dy, box)
            inside = area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1
            if inside and not any(box.overlaps(t) for t in taken):
                return dx, dy, box
    return first


def _align(d: float, positive: str, negative: str) -> str:
    return positive if d > 0 else negative if d < 0 else "center"


def _marker_box(ax, x: float, y: float, radius_px: float):
    from matplotlib.transforms import Bbox

    cx, cy = ax.transData.transform((x, y))
    return Bbox.from_extents(cx - radius_px, cy - radius_px, cx + radius_px, cy + radius_px)


def _finish_axes(ax, plotted: Sequence[Dict[str, Any]], have_acc: bool, prefix: str = "") -> None:
    ax.set_xlabel("latency p50 (ms, lower is better)")
    named = f"; labels drop the shared '{prefix}'" if prefix else ""
    if have_acc:
        ax.set_ylabel("top-1 accuracy (higher is better)")
        ax.set_title(f"Accuracy against latency (marker area: file size{named})")
    else:
        ax.set_ylabel("model file size (MB)")
        ax.set_title(f"Latency and size (no accuracy: pass --eval DIR for the accuracy plot{named})")
    lat_values = [_lat(r, "p50") for r in plotted]
    if min(lat_values) > 0 and max(lat_values) / min(lat_values) > 20:
        ax.set_xscale("log")  # latencies that far apart: a linear axis would squash the fast models together
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.2, y=0.1)  # room for the labels beside the markers
    # Beside the axes, not in them: inside, "best" covered markers and collided with the labels.
    legend = ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    for handle in getattr(legend, "legend_handles", getattr(legend, "legendHandles", [])):
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([40])  # legend markers show the colour, not a file size
