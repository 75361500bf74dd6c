"""Runs the measurements, each in a child process, and collects them into one report.

This is the typed Python API behind `edgevision bench`:

    from edgevision.benchmarks.runner import BenchSettings, resolve_models, run_benchmarks
    report = run_benchmarks(resolve_models(["model.tflite"]), BenchSettings(threads=(1, 2)))
    report.results[0]["latency_ms"]["p50"]

`run_plan(BenchPlan(...))` does the same over SSH devices too (benchmarks.remote), in one report.

Every (model, thread count) is measured by `python -m edgevision.benchmarks.child` in a fresh process (see
child.py for why). A child that fails, crashes or hangs becomes a result row with an `error` and the run goes
on with the next model.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from edgevision.errors import UsageError

if TYPE_CHECKING:
    from edgevision.benchmarks.fleet import RemoteTarget
    from edgevision.benchmarks.remote import RemoteSettings
    from edgevision.edge_runtime.child_process import ChildFailure

Progress = Optional[Callable[[str], None]]

BACKEND_CHOICES = ("auto", "ai-edge-litert", "tflite-runtime", "tflite-micro")
MICRO = "tflite-micro"
#: What `bench --backend tflite-micro` says about its figures (a note under the table).
MICRO_NOTE = ("tflite-micro: the latency is TensorFlow Lite Micro's portable reference kernels on this CPU, not a "
              "microcontroller's. A Cortex-M runs at 64-480 MHz without this CPU's caches, SIMD or XNNPACK, and "
              "a firmware build usually links optimised kernels (CMSIS-NN on Arm, ESP-NN on Espressif) that "
              "this Python build lacks, so time it on the board. The arena (RAM: TFLite Micro's measured "
              "tensor arena, to which the firmware adds its stack and buffers) and flash (the model's bytes; "
              "the runtime's code comes on top) carry over as they are")
#: What a Keras run directory (written by `edgevision train`) holds. The names are edge_runtime.model_ref's
#: RUN_MODEL and SAVED_MODEL_FILE, spelled here because importing edge_runtime loads numpy and OpenCV, which
#: `bench --help` must not pay for.
RUN_DIR_MODEL, SAVED_MODEL_FILE = "model.keras", "saved_model.pb"
CHILD_MODULE = "edgevision.benchmarks.child"


@dataclass(frozen=True)
class BenchSettings:
    """How to measure. Validated on construction, so a bad value fails before any model is loaded."""

    threads: Tuple[int, ...] = (1,)
    warmup: int = 20
    runs: int = 200
    backend: str = "auto"
    #: Also time a bare invoke() loop in the same child and report harness_overhead (doubles the time).
    compare_bare: bool = True
    #: Seconds one measurement (one child) may take before it is stopped and reported as hung.
    timeout_s: float = 600.0
    e2e_source: Optional[str] = None
    e2e_frames: int = 200
    eval_dir: Optional[str] = None
    #: At most this many images per class for --eval (None: all).
    eval_limit: Optional[int] = None
    compare_tf: bool = False
    #: Labels file for --eval/--e2e with third-party models whose labels are not inside the .tflite.
    labels: Optional[str] = None
    #: Skip the runtime's model verification in the e2e/eval children (the bench child needs none: it is
    #: already a sacrificial process).
    trusted: bool = False
    #: An external delegate, "PATH[:key=value,...]" (edge_runtime.delegates), for every interpreter.
    delegate: Optional[str] = None
    #: TensorFlow Lite Micro's arena in bytes (None: measured); only with backend tflite-micro.
    arena_size: Optional[int] = None
    #: Also time each operator (benchmarks.profile), in a child of its own per model and thread count.
    profile: bool = False
    #: "cpu", "gpu" or "npu": time LiteRT's CompiledModel on that accelerator instead of the Interpreter.
    accelerator: Optional[str] = None

    def __post_init__(self):
        threads = tuple(self.threads)
        if not threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in threads):
            raise UsageError(f"--threads must be positive integers such as 1,2,4; got {_show(self.threads)}")
        object.__setattr__(self, "threads", tuple(dict.fromkeys(threads)))  # keep order, drop repeats
        if self.runs < 1:
            raise UsageError(f"--runs must be at least 1, got {self.runs}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.backend not in BACKEND_CHOICES:
            raise UsageError(f"--backend must be one of {', '.join(BACKEND_CHOICES)}; got {self.backend!r}")
        self._check_runtime(threads)
        if self.timeout_s <= 0:
            raise UsageError(f"--timeout must be a positive number of seconds, got {self.timeout_s}")
        if self.e2e_frames < 1:
            raise UsageError(f"--e2e-frames must be at least 1, got {self.e2e_frames}")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise UsageError(f"--eval-limit must be at least 1, got {self.eval_limit}")

    def _check_runtime(self, threads: Tuple[int, ...]) -> None:
        if self.backend == MICRO and threads != (1,):
            raise UsageError("TensorFlow Lite Micro runs on one thread (a microcontroller has one core); "
                             "use --threads 1 with --backend tflite-micro")
        if self.arena_size is not None and self.backend != MICRO:
            raise UsageError("--arena-size is for --backend tflite-micro (LiteRT sizes its memory itself)")
        if self.delegate is not None and self.backend == MICRO:
            raise UsageError("--delegate needs a LiteRT interpreter; TensorFlow Lite Micro has no delegates")
        if self.accelerator is not None:
            self._check_accelerator()

    def _check_accelerator(self) -> None:
        from edgevision.benchmarks.accelerator import ACCELERATORS

        if self.accelerator not in ACCELERATORS:
            raise UsageError(f"--accelerator must be one of {', '.join(ACCELERATORS)}; got {self.accelerator!r}")
        if self.backend not in ("auto", "ai-edge-litert"):
            raise UsageError("--accelerator is ai-edge-litert's CompiledModel; use it with --backend ai-edge-litert")
        clash = [name for name, on in (("--delegate", self.delegate), ("--profile", self.profile),
                                       ("--eval", self.eval_dir), ("--e2e", self.e2e_source)) if on]
        if clash:
            raise UsageError(f"--accelerator times the compiled model alone; it does not combine with {clash[0]}")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["threads"] = list(self.threads)
        return d

    def runtime_task(self) -> Dict[str, Any]:
        """The interpreter's settings as every child task carries them."""
        return {"backend": self.backend, "delegate": self.delegate, "arena_size": self.arena_size,
                "accelerator": self.accelerator}


def parse_threads(text) -> Tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4) (a tuple the shared --threads option already parsed passes through); UsageError
    naming the bad part otherwise. The one parser is edgevision.options'."""
    from edgevision.options import parse_positive_ints

    return text if isinstance(text, tuple) else parse_positive_ints(text, "--threads", many=True)


@dataclass(frozen=True)
class ModelSpec:
    """One thing to measure: a .tflite file, or a Keras model (timed through TensorFlow with --compare-tf)."""

    label: str
    path: Path
    kind: str  # "tflite" | "keras"
    keras_path: Optional[Path] = None  # the Keras model a .tflite was converted from, if known


def resolve_models(refs: Sequence[str], compare_tf: bool = False) -> List[ModelSpec]:
    """Model arguments -> specs. Accepts bundled names, .tflite files, folders of .tflite files, and (with
    compare_tf) .keras files or training run directories. A missing path is a ModelError before anything runs.
    """
    from edgevision.edge_runtime.model_ref import resolve_model_ref

    if not refs:
        raise UsageError("give at least one model: a .tflite file, a folder of them, or a bundled model name")
    specs: List[Tuple[str, Path, str]] = []
    for ref in refs:
        folder = Path(str(ref)).expanduser()
        if folder.is_dir() and not any((folder / f).is_file() for f in (RUN_DIR_MODEL, SAVED_MODEL_FILE)):
            found = sorted(folder.glob("*.tflite"))  # a folder of variants, e.g. from `convert --all`
            if not found:
                raise UsageError(
                    f"{folder} is a folder with no .tflite files and no {RUN_DIR_MODEL}; give .tflite files, "
                    "a folder of them (e.g. the output of `edgevision convert --all`) or a training run directory"
                )
            specs.extend((str(p), p, "tflite") for p in found)
            continue
        model = resolve_model_ref(ref)
        if model.kind == "saved_model":
            raise UsageError(f"{model.path} is a SavedModel; `edgevision bench` measures .tflite files: convert it first")
        specs.append((str(ref), model.model_file, "keras" if model.is_keras else "tflite"))
    if not compare_tf:
        keras = [label for label, _, kind in specs if kind == "keras"]
        if keras:
            raise UsageError(
                f"{keras[0]} is a Keras model; `edgevision bench` measures .tflite files. Convert it with "
                "`edgevision convert`, or add --compare-tf to time it through TensorFlow"
            )
    labels = _short_labels([(label, path) for label, path, _ in specs])
    out = []
    for (label, path, kind), short in zip(specs, labels):
        keras_path = find_keras_source(path) if (compare_tf and kind == "tflite") else None
        out.append(ModelSpec(label=short, path=path.resolve(), kind=kind, keras_path=keras_path))
    return out


def _short_labels(items: Sequence[Tuple[str, Path]]) -> List[str]:
    """Bundled names as given, else file names (run directories by their folder); full paths where those clash."""
    from edgevision.bundled import BUNDLED

    short = []
    for ref, path in items:
        if ref in BUNDLED:
            short.append(ref)
        elif path.name == RUN_DIR_MODEL:
            short.append(f"{path.parent.name}/{RUN_DIR_MODEL}")
        else:
            short.append(path.name)
    return [s if short.count(s) == 1 else str(path) for s, (_, path) in zip(short, items)]


def find_keras_source(tflite_path: Path) -> Optional[Path]:
    """The Keras model a .tflite was converted from, looked for beside it: `<stem>.keras`, or the run directory
    it sits in (or below). Never a path named inside the file: a downloaded model must not choose what is
    loaded. What is found is loaded through convert.loading's checks, like predict and convert do."""
    candidates = [tflite_path.with_suffix(".keras"), tflite_path.parent / RUN_DIR_MODEL,
                  tflite_path.parent.parent / RUN_DIR_MODEL]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    return None


# --- the child process ----------------------------------------------------------------------------
@dataclass
class ChildOutcome:
    ok: bool
    result: Dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None


def run_child(task: Dict[str, Any], timeout_s: float, python: str = sys.executable) -> ChildOutcome:
    """Run one task in a fresh interpreter process; every failure mode becomes an error message."""
    from edgevision.edge_runtime import child_process  # numpy comes with edge_runtime: not for `bench --help`

    run = child_process.run_child([python, "-m", CHILD_MODULE], json.dumps(task).encode(), timeout_s)
    if run.failure is not None:
        return ChildOutcome(False, error=_failure_message(run.failure))
    if not run.reply.get("ok"):
        return ChildOutcome(False, error=run.reply.get("error") or "unknown error")
    return ChildOutcome(True, result=run.reply["result"])


def _failure_message(failure: "ChildFailure") -> str:
    """What a benchmark child's failure means for the row, in one line (the row names the model)."""
    from edgevision.edge_runtime.child_process import CANNOT_START, SIGNAL, TIMEOUT

    where = failure.while_stage
    if failure.kind == TIMEOUT:
        return f"timed out after {failure.seconds:g} s{where} (raise --timeout if it is just slow)"
    if failure.kind == CANNOT_START:
        return f"cannot start the benchmark process {failure.program}: {failure.reason}"
    if failure.kind == SIGNAL:
        return f"the interpreter crashed ({failure.signal_name}){where}; the model is probably corrupt"
    tail = f": {failure.last_line}" if failure.last_line else ""
    return f"the benchmark process exited with status {failure.status}{where} without an answer{tail}"


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else repr(value)


# --- the report -----------------------------------------------------------------------------------
@dataclass
class Report:
    """What `edgevision bench` measured: machine headers, settings and one row per measurement."""

    machine: Dict[str, Any]
    settings: Dict[str, Any]
    results: List[Dict[str, Any]]
    machines: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "machine": self.machine,
            "machines": self.machines,
            "settings": self.settings,
            "results": self.results,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Report":
        return cls(
            machine=d.get("machine") or {},
            settings=d.get("settings") or {},
            results=list(d.get("results") or []),
            machines=d.get("machines") or {},
            notes=list(d.get("notes") or []),
        )

    @property
    def errors(self) -> List[Dict[str, Any]]:
        return [r for r in self.results if r.get("error")]


def _file_size(path: Path) -> Optional[int]:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _error_row(spec: ModelSpec, threads: int, backend: str, error: str, device: str) -> Dict[str, Any]:
    prefix = f"{spec.path.name}: "  # the runtime names the file; the row already does
    if error.startswith(prefix):
        error = error[len(prefix):]
    return {
        "model": spec.label,
        "path": str(spec.path),
        "device": device,
        "threads": threads,
        "backend": backend,
        "bytes": _file_size(spec.path),
        "load_ms": None,
        "latency_ms": None,
        "inferences_per_s": None,
        "peak_rss_mb": None,
        "error": error,
    }


@dataclass(frozen=True)
class BenchPlan:
    """What to measure and where: on this machine, on devices over SSH, or both."""

    models: Tuple[ModelSpec, ...]
    settings: BenchSettings
    #: Devices to measure on over SSH (benchmarks.fleet.RemoteTarget), at once; none: this machine only.
    remotes: Tuple["RemoteTarget", ...] = ()
    ssh: Optional["RemoteSettings"] = None
    #: With remotes: measure on this machine too (its rows come first).
    also_local: bool = False


def run_plan(plan: BenchPlan, progress: Progress = None) -> Report:
    """One report over every machine the plan names."""
    if not plan.remotes:
        return run_benchmarks(plan.models, plan.settings, progress=progress)
    from edgevision.benchmarks.fleet import run_fleet
    from edgevision.benchmarks.remote import RemoteSettings, merge_reports

    ssh = plan.ssh or RemoteSettings()
    # One device alone has nothing to compare with: its failure is the command's. In a fleet it is one column.
    fatal = len(plan.remotes) == 1 and not plan.also_local
    reports = run_fleet(plan.remotes, plan.models, plan.settings, ssh, progress=progress, fatal=fatal)
    if plan.also_local:
        reports.insert(0, run_benchmarks(plan.models, plan.settings, progress=progress))
    return merge_reports(reports)


def run_benchmarks(models: Sequence[ModelSpec], settings: BenchSettings, progress: Progress = None) -> Report:
    """Measure every model at every thread count (plus e2e / eval / Keras as the settings ask)."""
    from edgevision.benchmarks.machine import machine_info

    machine = machine_info()
    device = str(machine.get("hostname") or "local")
    step = _Steps(_count_steps(models, settings), progress)
    results: List[Dict[str, Any]] = []
    notes: List[str] = []
    for spec in models:
        results += _model_rows(spec, settings, device, step, notes)
    if settings.backend == MICRO:
        notes.append(MICRO_NOTE)
    return Report(machine=machine, settings=settings.to_dict(), results=results,
                  machines={device: machine}, notes=notes)


class _Steps:
    """Numbered progress lines, "[3/8] ...", out of the steps the settings make."""

    def __init__(self, total: int, progress: Progress):
        self.total = total
        self.done = 0
        self.say = progress or (lambda _msg: None)

    def __call__(self, text: str) -> None:
        self.done += 1
        self.say(f"[{self.done}/{self.total}] {text}")

    def skip(self, count: int) -> None:
        """Steps that will not run (a model that failed gets no e2e or eval), so the count still ends at total."""
        self.done += count


def _model_rows(spec: ModelSpec, s: BenchSettings, device: str, step: _Steps,
                notes: List[str]) -> List[Dict[str, Any]]:
    """One model's rows: a row per thread count, with accuracy and e2e added, then its Keras model's rows."""
    if spec.kind == "keras":
        return _keras_rows(spec, spec.path, s, device, step)
    rows = _bench_rows(spec, s, device, step)
    ok_rows = [r for r in rows if not r.get("error")]
    if not ok_rows:
        step.skip(_count_steps([spec], s) - len(s.threads))
        return rows
    if s.eval_dir:
        _add_accuracy(spec, ok_rows, s, step, notes)
    else:
        for r in ok_rows:
            if r.get("metadata_accuracy") is not None:
                r["accuracy"] = r["metadata_accuracy"]
                r["accuracy_source"] = "model metadata"
    if s.e2e_source is not None:
        for r in ok_rows:
            _add_e2e(spec, r, s, step)
    if s.compare_tf:
        if spec.keras_path is None:
            notes.append(
                f"--compare-tf: no Keras model found for {spec.label} (looked at its metadata's source and "
                "beside it); pass the .keras file or run directory as a MODEL to time it"
            )
        else:
            rows += _keras_rows(spec, spec.keras_path, s, device, step)
    return rows


def _count_steps(models: Sequence[ModelSpec], s: BenchSettings) -> int:
    n = 0
    for spec in models:
        per_thread = len(s.threads)
        if spec.kind == "keras":
            n += per_thread
            continue
        n += per_thread * (1 + (s.e2e_source is not None) + (s.compare_tf and spec.keras_path is not None)
                           + s.profile)
        n += 1 if s.eval_dir else 0
    return n


def _bench_rows(spec: ModelSpec, s: BenchSettings, device: str, step) -> List[Dict[str, Any]]:
    rows = []
    for threads in s.threads:
        task = {"kind": "bench", "model": str(spec.path), "threads": threads, "runs": s.runs,
                "warmup": s.warmup, "compare_bare": s.compare_bare, **s.runtime_task()}
        outcome = run_child(task, s.timeout_s)
        if not outcome.ok:
            step(f"{spec.label} threads={threads}: error: {outcome.error}")
            rows.append(_error_row(spec, threads, s.backend, outcome.error or "", device))
            # A model that cannot load at one thread count cannot at another: do not repeat the failure.
            for other in s.threads[s.threads.index(threads) + 1:]:
                step(f"{spec.label} threads={other}: skipped (the model failed at threads={threads})")
            break
        r = outcome.result
        row = {"model": spec.label, "path": str(spec.path), "device": device, "threads": threads, **r,
               "error": None}
        lat = r["latency_ms"]
        step(f"{spec.label} threads={threads}: p50 {lat['p50']:.2f} ms, mean {lat['mean']:.2f} ms, "
             f"peak RSS {r['peak_rss_mb']} MB")
        if s.profile:
            row["profile"] = _profile(spec, threads, s, step)
        rows.append(row)
    return rows


def _profile(spec: ModelSpec, threads: int, s: BenchSettings, step) -> Dict[str, Any]:
    """Per-operator times (benchmarks.profile) from a child of its own, or {"error": ...}."""
    task = {"kind": "profile", "model": str(spec.path), "threads": threads, "runs": s.runs, "warmup": s.warmup,
            **s.runtime_task()}
    outcome = run_child(task, s.timeout_s)
    if not outcome.ok:
        step(f"{spec.label} threads={threads}: profile error: {outcome.error}")
        return {"error": outcome.error}
    p = outcome.result
    step(f"{spec.label} threads={threads}: profiled {len(p['operators'])} operators, their sum "
         f"{p['ops_sum_ms']:.3f} ms against {p['invoke_ms']:.3f} ms for the whole invoke")
    return p


def _add_accuracy(spec: ModelSpec, rows: List[Dict[str, Any]], s: BenchSettings, step, notes: List[str]) -> None:
    task = {"kind": "eval", "model": str(spec.path), "dir": str(s.eval_dir), "threads": max(s.threads),
            "limit": s.eval_limit, "trusted": s.trusted, "labels": s.labels, **s.runtime_task()}
    outcome = run_child(task, s.timeout_s * 4)
    if not outcome.ok:
        step(f"{spec.label} eval: error: {outcome.error}")
        for r in rows:
            r["accuracy"] = None
            r["accuracy_error"] = outcome.error
        return
    res = outcome.result
    step(f"{spec.label} eval: top-1 {res['accuracy']:.4f} on {res['images']} images")
    for note in res.get("notes", []):
        notes.append(f"{spec.label}: {note}")
    for r in rows:
        r["accuracy"] = res["accuracy"]
        r["accuracy_source"] = f"eval {s.eval_dir}"
        r["eval"] = {k: res[k] for k in ("images", "correct", "classes", "skipped_images", "skipped_classes")
                     if k in res}


def _add_e2e(spec: ModelSpec, row: Dict[str, Any], s: BenchSettings, step) -> None:
    task = {"kind": "e2e", "model": str(spec.path), "source": s.e2e_source, "threads": row["threads"],
            **s.runtime_task(), "max_frames": s.e2e_frames, "warmup": min(s.warmup, 10), "trusted": s.trusted,
            "labels": s.labels}
    outcome = run_child(task, s.timeout_s)
    if not outcome.ok:
        step(f"{spec.label} threads={row['threads']} e2e: error: {outcome.error}")
        row["e2e"] = {"error": outcome.error}
        return
    e2e = outcome.result
    step(f"{spec.label} threads={row['threads']} e2e: {e2e['fps']:.1f} frames/s over {e2e['frames']} frames")
    row["e2e"] = e2e


def _keras_rows(spec: ModelSpec, keras_path: Path, s: BenchSettings, device: str, step) -> List[Dict[str, Any]]:
    rows = []
    label = spec.label if spec.kind == "keras" else f"{spec.label} (Keras)"
    for threads in s.threads:
        task = {"kind": "keras", "model": str(keras_path), "threads": threads, "runs": s.runs,
                "warmup": s.warmup}
        outcome = run_child(task, s.timeout_s)
        if not outcome.ok:
            step(f"{label} threads={threads} TensorFlow: error: {outcome.error}")
            err_spec = ModelSpec(label=label, path=keras_path, kind="keras")
            rows.append(_error_row(err_spec, threads, "keras", outcome.error or "", device))
            break
        for variant in outcome.result["variants"]:
            row = {"model": label, "path": str(keras_path), "device": device, "threads": threads,
                   **outcome.result["common"], **variant, "error": None}
            rows.append(row)
            step(f"{label} threads={threads} {variant['backend']}: p50 {variant['latency_ms']['p50']:.2f} ms")
    return rows
