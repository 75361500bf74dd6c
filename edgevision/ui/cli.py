"""`edgevision ui`: start the web page. Only click and the standard library are imported here;
Streamlit is imported by the page itself, in the server process."""

from __future__ import annotations

import os
from pathlib import Path

import click

from edgevision.errors import UsageError
from edgevision.options import threads_option
from edgevision.ui.settings import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT, UiSettings


@click.command("ui")
@click.option(
    "--models",
    "models_dirs",
    multiple=True,
    type=click.Path(file_okay=False, dir_okay=True, path_type=Path),
    metavar="DIR",
    help="Folder of .tflite models to offer (repeatable); rescanned on each page load. Labels come from the "
    "model, or from NAME_labels.txt / NAME.txt beside NAME.tflite.",
)
@click.option(
    "--reference",
    "references",
    multiple=True,
    metavar="MODEL",
    help="A .tflite model (or bundled name) to offer, e.g. an ImageNet MobileNetV2 (repeatable).",
)
@click.option(
    "--reference-labels",
    "reference_labels",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Labels file for each --reference, in the same order (one class name per line).",
)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on (0.0.0.0: all networks).")
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@threads_option()
@click.option(
    "--max-upload-mb",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_UPLOAD_MB,
    show_default=True,
    help="Largest image upload accepted, in MB.",
)
def ui(models_dirs, references, reference_labels, host, port, threads, max_upload_mb):
    """Start the web page: upload an image (or use the camera) and see each model's top-5 answer.

    \b
    Runs on the edge runtime (TensorFlow Lite), so it works on a device without TensorFlow.
    Offers the bundled models, every --reference model and the .tflite files in each --models folder.

    \b
    Examples:
      edgevision ui
      edgevision ui --models ./exported --port 8080
      edgevision ui --reference mobilenet_v2_1.0_224_quant.tflite --reference-labels imagenet_labels.txt
    """
    from edgevision.ui import server

    settings = build_settings(models_dirs, references, reference_labels, threads, max_upload_mb)
    server.check_streamlit()
    if port == 0:
        port = server.free_port(host)
    else:
        server.check_port(host, port)
    offered = server.describe_models(settings)
    if offered is None and not settings.models_dirs:
        raise UsageError(
            "no models to offer: this installation has no bundled models and no --reference or --models were "
            "given; pass --reference MODEL.tflite or --models DIR"
        )
    debug = bool(os.environ.get("EDGEVISION_DEBUG"))
    options = server.ServerOptions(settings=settings, host=host, port=port, debug=debug)

    def announce(url):
        models = offered or f"none yet; drop .tflite files into {', '.join(settings.models_dirs)}"
        click.echo(f"edgevision ui: {url}  (models: {models}; Ctrl-C stops)", err=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo("note: the page has no login; anyone who can reach this address can use it", err=True)

    rc = server.run_server(options, on_ready=announce)
    if rc != 0:
        click.echo(f"error: the Streamlit server exited with status {rc} (its messages are above)", err=True)
        raise click.exceptions.Exit(rc if rc > 0 else 1)


def build_settings(models_dirs, references, reference_labels, threads, max_upload_mb) -> UiSettings:
    """Check the command line and resolve paths; UsageError/ModelError with a one-line fix otherwise."""
    from edgevision.edge_runtime.model_ref import tflite_ref

    if reference_labels and len(reference_labels) != len(references):
        raise UsageError(
            f"got {len(references)} --reference and {len(reference_labels)} --reference-labels; "
            "give one labels file per --reference, in the same order (or none to use the labels in the models)"
        )
    for folder in models_dirs:
        if not folder.is_dir():
            raise UsageError(f"--models {folder}: no such folder; expected a folder of .tflite files")
    pairs = []
    for i, ref in enumerate(references):
        model = tflite_ref(ref, "--reference").model_file
        labels = reference_labels[i] if reference_labels else None
        if labels is not None and not labels.is_file():
            raise UsageError(f"--reference-labels {labels}: no such file; expected one class name per line")
        pairs.append((str(model.resolve()), str(labels.resolve()) if labels else None))
    return UiSettings(
        models_dirs=tuple(str(d.resolve()) for d in models_dirs),
        references=tuple(pairs),
        num_threads=threads,
        max_upload_mb=max_upload_mb,
    )
