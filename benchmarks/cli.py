"""`edgevision bench`: the command line over benchmarks.runner (imports only click and light modules).

Thin on purpose: the options become a checked plan (runner.BenchPlan) and its outputs (report.Outputs), the
plan runs (runner.run_plan), and the report is printed and written.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple

import click

from edgevision.errors import ModelError, UsageError
from edgevision.options import (arena_option, backend_option, delegate_option, labels_option, model_argument,
                                quiet_option, threads_option, trusted_option)

if TYPE_CHECKING:
    from edgevision.benchmarks.report import Outputs
    from edgevision.benchmarks.runner import BenchPlan, BenchSettings, Report


def _progress(quiet: bool):
    if quiet:
        return None
    return lambda message: click.echo(message, err=True)


@click.command("bench", context_settings={"max_content_width": 100})
@model_argument(many=True, name="models")
@threads_option(many=True, default="1")
@click.option("--warmup", default=20, show_default=True, type=int, help="Untimed runs before timing.")
@click.option("--runs", default=200, show_default=True, type=int, help="Timed runs per model and thread count.")
@backend_option()
@delegate_option()
@arena_option()
@click.option("--profile", is_flag=True,
              help="Also time every operator (type, count, mean ms, share, cumulative share), each as a model of "
                   "its own fed the real intermediate values; in the table, JSON and Markdown.")
@click.option("--profile-plot", "profile_plot_out", metavar="FILE.png",
              help="With --profile: a bar chart of the time per operator type (needs matplotlib).")
@click.option("--accelerator", type=click.Choice(("cpu", "gpu", "npu")), default=None,
              help="Time LiteRT's CompiledModel on this accelerator only (no CPU fallback) instead of the "
                   "Interpreter; gpu and npu need the device and its library, and say so when missing.")
@click.option("--json", "json_out", metavar="FILE", help="Write all results as JSON ('-': to stdout, table to stderr).")
@click.option("--csv", "csv_out", metavar="FILE", help="Write one CSV row per measurement.")
@click.option("--md", "md_out", metavar="FILE", help="Write a Markdown page with the machine header and table.")
@click.option("--plot", "plot_out", metavar="FILE.png",
              help="Latency against accuracy (marker size: file size, Pareto front marked); needs matplotlib.")
@click.option("--e2e", "e2e_source", metavar="SRC",
              help="Also run the camera pipeline over SRC (video file, stream URL, camera index, image folder) "
                   "and report frames/s and time per stage.")
@click.option("--e2e-frames", default=200, show_default=True, type=int, help="Frames to process with --e2e.")
@click.option("--eval", "eval_dir", metavar="DIR",
              help="Labelled images (one subfolder per class, named like the model's labels): adds top-1 accuracy.")
@labels_option(help="Labels file for --eval/--e2e when the model carries none (third-party models).")
@click.option("--eval-limit", type=int, metavar="N", help="At most N images per class for --eval.")
@click.option("--compare-tf", is_flag=True,
              help="Also time the Keras model (given as a MODEL, or found from the .tflite) with predict() and a "
                   "direct call; needs TensorFlow.")
@click.option("--remote", "remotes", multiple=True, metavar="USER@HOST[:PORT],...",
              help="Run the benchmark on devices over SSH, all at once (comma-separated or repeated); each needs "
                   "edgevision[edge] installed. Several devices get a table with a column per device.")
@click.option("--local", "also_local", is_flag=True, help="With --remote: measure on this machine too.")
@click.option("--remote-command", default="edgevision", show_default=True, metavar="CMD",
              help="How to start edgevision on the device, e.g. '~/venv/bin/edgevision' or "
                   "'python3 -m edgevision.cli'.")
@click.option("--ssh-port", type=int, metavar="PORT", help="SSH port of the device(s).")
@click.option("--ssh-identity", metavar="FILE", help="Private key for SSH (ssh -i).")
@click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE",
              help="Extra ssh/scp option (ssh -o), repeatable, e.g. UserKnownHostsFile=/path.")
@trusted_option(help="Skip the crash-safe check of the model for --e2e/--eval (only for models you made).")
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, type=float, metavar="SECONDS",
              help="Longest one measurement may take before it is stopped and reported.")
@click.option("--no-overhead-check", is_flag=True,
              help="Skip the bare invoke() loop that measures the harness's own cost (halves the time).")
@quiet_option()
def bench(models: Tuple[str, ...], quiet: bool, **options: Any) -> None:
    """Measure load time, latency (mean/p50/p90/p99/min/max/std), throughput and peak memory of .tflite models.

    MODEL is a .tflite file, a folder of them, or a bundled model name (see `edgevision models`). Each model
    and thread count runs in its own process, so memory figures do not mix and a crashing model only costs
    its own row. Progress goes to stderr, the table to stdout.

    \b
    Examples:
      edgevision bench cifar10-cnn --threads 1,2
      edgevision bench converted/ --eval data/test --plot pareto.png --md results.md
      edgevision bench model.tflite --e2e clip.mp4
      edgevision bench model.tflite --remote pi@raspberrypi.local --local
      edgevision bench model.tflite --remote pi@board1,pi@board2,root@10.0.0.7:2222
    """
    from edgevision.benchmarks.runner import run_plan

    progress = _progress(quiet)
    plan, outputs = _plan(models, **options)
    _report(run_plan(plan, progress=progress), outputs, progress)


def _plan(models: Sequence[str], *, threads: Tuple[int, ...], warmup: int, runs: int, backend: str,
          delegate, arena_size: Optional[int], profile: bool, profile_plot_out: Optional[str],
          accelerator: Optional[str], json_out: Optional[str], csv_out: Optional[str], md_out: Optional[str], plot_out: Optional[str],
          e2e_source: Optional[str], e2e_frames: int, eval_dir: Optional[str], labels: Optional[str], eval_limit: Optional[int],
          compare_tf: bool, remotes: Sequence[str], also_local: bool, remote_command: str,
          ssh_port: Optional[int], ssh_identity: Optional[str], ssh_options: Sequence[str], trusted: bool,
          timeout_s: float, no_overhead_check: bool) -> Tuple["BenchPlan", "Outputs"]:
    """The options as a plan and its outputs, checked in this order before anything runs."""
    from edgevision.benchmarks.report import Outputs
    from edgevision.benchmarks.runner import BenchPlan, BenchSettings, parse_threads, resolve_models

    if not models:
        raise UsageError("give at least one MODEL: a .tflite file, a folder of them, or a bundled model name "
                         "(see `edgevision models`)")
    if also_local and not remotes:
        raise UsageError("--local only makes sense with --remote (without --remote everything runs here)")
    settings = BenchSettings(
        threads=parse_threads(threads), warmup=warmup, runs=runs, backend=backend,
        compare_bare=not no_overhead_check, timeout_s=timeout_s, e2e_source=e2e_source, e2e_frames=e2e_frames,
        eval_dir=eval_dir, eval_limit=eval_limit, compare_tf=compare_tf, trusted=trusted,
        labels=_existing_file(labels, "--labels"), delegate=None if delegate is None else str(delegate),
        arena_size=arena_size, profile=profile or bool(profile_plot_out), accelerator=accelerator,
    )
    outputs = Outputs(json_file=json_out, csv_file=csv_out, md_file=md_out, plot_file=plot_out,
                      profile_plot_file=profile_plot_out)
    _check_environment(settings)
    if not remotes or also_local:
        from edgevision.edge_runtime.delegates import as_delegate

        as_delegate(delegate)  # a missing library fails now, not after the first model
    if not remotes:
        return BenchPlan(tuple(resolve_models(models, compare_tf=compare_tf)), settings), outputs
    from edgevision.benchmarks.fleet import parse_remotes
    from edgevision.benchmarks.remote import RemoteSettings

    targets = parse_remotes(remotes)
    specs = tuple(resolve_models(models, compare_tf=False))  # a device has no TensorFlow
    ssh = RemoteSettings(command=remote_command, port=ssh_port, identity=ssh_identity, options=tuple(ssh_options))
    return BenchPlan(specs, settings, remotes=targets, ssh=ssh, also_local=also_local), outputs


def _check_environment(settings: "BenchSettings") -> None:
    """What the settings need from this machine: TensorFlow for --compare-tf, the --eval folder."""
    if settings.compare_tf:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:
            from edgevision.errors import DependencyError

            raise DependencyError("--compare-tf times the Keras model with TensorFlow, which is not installed here; "
                                  "install it with: pip install 'edgevision[train]', or drop --compare-tf")
    if settings.eval_dir is not None and not Path(settings.eval_dir).is_dir():
        raise UsageError(f"--eval {settings.eval_dir}: not a folder; expected one subfolder of images per class")


def _report(result: "Report", outputs: "Outputs", progress) -> None:
    """The table on stdout (stderr with --json -), the files asked for, and exit status 1 if a row failed."""
    from edgevision.benchmarks import report as rep

    data = result.to_dict()
    if outputs.json_file == "-":
        click.echo(rep.format_report(data), err=True)
        click.echo(rep.to_json(data), nl=False)
    else:
        click.echo(rep.format_report(data))
    note = rep.write_outputs(data, outputs, command=_command_line())
    if note:
        click.echo(f"note: {note}", err=True)
    if outputs.files and progress:
        progress("wrote " + ", ".join(outputs.files))
    failed = result.errors
    if failed:
        raise ModelError(
            f"{len(failed)} of {len(data['results'])} measurements failed (first: {failed[0]['model']}: "
            f"{failed[0]['error']}); the others are reported above"
        )


def _command_line() -> Optional[str]:
    """This command as the user typed it, for the Markdown page."""
    return "edgevision bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None


def _existing_file(path: Optional[str], option: str) -> Optional[str]:
    if path is None:
        return None
    if not Path(path).is_file():
        raise UsageError(f"{option} {path}: no such file")
    return str(Path(path).resolve())
