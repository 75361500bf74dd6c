"""The `edgevision` command line: a thin layer over the Python API.

Subcommands are imported only when invoked (click's lazy-loading pattern), so `edgevision --help` and the
device-side commands never import TensorFlow, and a broken optional extra only affects its own command.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from edgevision import __version__
from edgevision.errors import EdgeVisionError

# name -> ("module:attribute", one-line help). The help lives here so that listing commands imports nothing.
COMMANDS = {
    "train": ("edgevision.train.cli:train", "Train a CIFAR-10 CNN or fine-tune MobileNetV2 (needs the train extra)."),
    "convert": ("edgevision.convert.cli:convert", "Convert a Keras model to TensorFlow Lite, with quantization."),
    "evaluate": ("edgevision.edge_runtime.inference_cli:evaluate", "Accuracy and per-class report of a model on an image folder."),
    "predict": ("edgevision.edge_runtime.inference_cli:predict", "Top-k labels for image files."),
    "classify": ("edgevision.edge_runtime.cli:classify", "Classify a camera, stream, video, image or folder live."),
    "bench": ("edgevision.benchmarks.cli:bench", "Measure latency, memory and throughput on this device."),
    "models": ("edgevision.bundled:models_command", "List the bundled models."),
    "ui": ("edgevision.ui.cli:ui", "Start the web page: upload an image, see what each model thinks."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return super().get_command(ctx, name)
        module_name, attr = COMMANDS[name][0].split(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgevision")
def cli():
    """edgevision: image classifiers from training to a phone, a Raspberry Pi or any small Linux board.

    \b
    Typical flow:
      edgevision train cnn --data cifar10 --out runs/cnn
      edgevision convert runs/cnn --quant int8 --out cnn-int8.tflite
      edgevision classify --model cnn-int8.tflite --source 0
      edgevision bench cnn-int8.tflite --threads 1,2

    Bundled models (see `edgevision models`) can be named wherever a model path is accepted.
    """


def main(argv=None) -> None:
    # TensorFlow's C++ start-up chatter hides our one-line errors; users can still raise the level.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        status = cli.main(args=argv, prog_name="edgevision", standalone_mode=False)
        # Without standalone mode, click returns (rather than exits with) the code of a `ctx.exit(code)` or
        # `raise click.exceptions.Exit(code)` in a command, e.g. 130 from `classify` after Ctrl-C.
        if isinstance(status, int) and not isinstance(status, bool) and status != 0:
            sys.exit(status)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except EdgeVisionError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # `edgevision classify ... | head`: the reader left; not an error of ours.
        sys.stderr.close()
        sys.exit(0)
    except Exception as e:  # a bug, not bad input: one line, with a way to see the traceback
        if os.environ.get("EDGEVISION_DEBUG"):
            raise
        click.echo(f"error: internal error: {type(e).__name__}: {e} (set EDGEVISION_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
