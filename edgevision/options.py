"""One definition of each command-line option that several commands share, so a name means the same everywhere.

`--top-k` has one default, `--threads` one syntax and one check, `--labels` one existence check and message,
and a model is the first positional argument of every command that takes one (`classify` also keeps
`--model`/`-m`). Each factory returns a click decorator. Only click and the standard library are imported: the
device-side commands use these, and a device never imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Tuple

import click
from click.shell_completion import CompletionItem

from edgevision.errors import UsageError

#: Labels reported per image or frame, in every command that reports several.
DEFAULT_TOP_K = 5
BACKEND_CHOICES = ("auto", "ai-edge-litert", "tflite-runtime", "tflite-micro")
MODEL_HELP = "a .tflite file or a bundled model name (see `edgevision models`)"


def _complete_model(ctx, param, incomplete: str) -> list:
    """Bundled names that start with what was typed, and file names (the shell's own completion) otherwise."""
    from edgevision.bundled import BUNDLED

    # The "file" item comes first: click's bash script clears its list on it, then adds the names after it.
    return [CompletionItem(incomplete, type="file")] + [
        CompletionItem(name) for name in BUNDLED if name.startswith(incomplete)]


def model_argument(many: bool = False, required: bool = True, name: str = "model") -> Callable:
    """MODEL as the first positional argument (MODEL... with `many`)."""
    if many:
        return click.argument(name, nargs=-1, metavar="MODEL...", shell_complete=_complete_model)
    return click.argument(name, required=required, metavar="MODEL" if required else "[MODEL]",
                          shell_complete=_complete_model)


def model_option(default: Optional[str] = None, help: str = "") -> Callable:
    """`--model`/`-m`, the spelling `classify` had before every command took MODEL positionally."""
    return click.option("--model", "-m", "model_option", default=default, show_default=default is not None,
                        metavar="MODEL", shell_complete=_complete_model,
                        help=help or f"The model: {MODEL_HELP}. The same as the positional MODEL.")


def pick_model(positional: Optional[str], option: Optional[str], default: str) -> str:
    """The model a command given `MODEL` and/or `--model` runs; both, when they differ, is a usage error."""
    if positional and option and positional != option:
        raise UsageError(f"two models given ({positional!r} and --model {option!r}); give one")
    return positional or option or default


class PositiveInts(click.ParamType):
    """`--threads N`, or `N[,N...]` where a command measures several counts: a tuple of ints >= 1."""

    name = "threads"

    def __init__(self, option: str, many: bool):
        self.option, self.many = option, many

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        return parse_positive_ints(value, self.option, self.many)


def parse_positive_ints(text, option: str = "--threads", many: bool = True) -> Tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); a UsageError naming what is wrong otherwise (one value unless `many`)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if many and (not values or any(v < 1 for v in values)):
        raise UsageError(f"{option} must be positive integers separated by commas, such as 1,2,4; got {text!r}")
    if not many and (len(values) != 1 or values[0] < 1):
        raise UsageError(f"{option} must be one positive integer, such as 4; got {text!r}")
    return values


def threads_option(many: bool = False, default: Optional[str] = None) -> Callable:
    """`--threads`: interpreter threads. One count for commands that run a model, a list for `bench`."""
    if many:
        return click.option("--threads", type=PositiveInts("--threads", True), default=default or "1",
                            show_default=True, metavar="N[,N...]",
                            help="Interpreter thread counts to measure, e.g. 1,2,4 (each a separate run).")

    def one(value):  # the command gets an int (or None: the runtime's default, all cores)
        return value[0] if value else None

    return click.option("--threads", type=PositiveInts("--threads", False), default=default, metavar="N",
                        callback=lambda ctx, param, value: one(value),
                        help="Interpreter threads for .tflite models (default: the runtime's, all cores).")


def top_k_option(help: str = "Labels reported per image.", dest: str = "top_k") -> Callable:
    def at_least_one(ctx, param, value):
        if value is not None and value < 1:
            raise UsageError(f"--top-k must be at least 1, got {value}")
        return value

    return click.option("--top-k", dest, type=int, default=DEFAULT_TOP_K, show_default=True,
                        callback=at_least_one, help=help)


def _existing_file(ctx, param, value):
    if value is not None and not Path(value).is_file():
        raise UsageError(f"{param.opts[0]} {value}: no such file")
    return value


def labels_option(help: str = "Class names, one per line in output order (overrides the model's own).") -> Callable:
    return click.option("--labels", "labels", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                        callback=_existing_file, help=help)


def preprocess_option(help: str = "A preprocess.json (input size, colour order, mean, std) for a model that has "
                                  "none of its own.") -> Callable:
    return click.option("--preprocess", "preprocess", type=click.Path(dir_okay=False), default=None,
                        metavar="FILE", callback=_existing_file, help=help)


def backend_option() -> Callable:
    return click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
                        help="TensorFlow Lite interpreter (auto: ai-edge-litert, else tflite-runtime); "
                             "tflite-micro: TensorFlow Lite Micro's, the microcontroller kernels (the micro extra).")


def _delegate(ctx, param, value):
    # Parsed here; the library is checked where it is loaded (with bench --remote that is on the device).
    from edgevision.edge_runtime.delegates import parse_delegate  # light: ctypes and the standard library

    return parse_delegate(value)


def delegate_option() -> Callable:
    """`--delegate PATH[:key=value,...]`: an external delegate library for the LiteRT interpreter."""
    return click.option("--delegate", type=str, default=None, metavar="PATH[:KEY=VALUE,...]", callback=_delegate,
                        help="An external TFLite delegate (e.g. libedgetpu.so.1 or /path/libvendor_delegate.so) "
                             "with its options, e.g. libedgetpu.so.1:device=usb:0. The model is checked with it "
                             "in a child process first.")


def _arena(ctx, param, value):
    if value is None:
        return None
    from edgevision.edge_runtime.micro_backend import parse_arena_size  # numpy only; tflite_micro not imported

    return parse_arena_size(value)


def arena_option() -> Callable:
    """`--arena-size BYTES`: TensorFlow Lite Micro's arena (with --backend tflite-micro)."""
    return click.option("--arena-size", type=str, default=None, metavar="BYTES", callback=_arena,
                        help="With --backend tflite-micro: the arena a firmware would reserve, e.g. 256K "
                             "(default: measured in a roomy one and reported).")


def trusted_option(help: str = "Skip the crash-safe check of the model in a child process (only for models you "
                               "made).") -> Callable:
    return click.option("--trusted", is_flag=True, help=help)


def quiet_option() -> Callable:
    return click.option("-q", "--quiet", is_flag=True, help="No progress messages on stderr.")


def seed_option(help: str, default: int = 0) -> Callable:
    return click.option("--seed", type=int, default=default, show_default=True, help=help)
