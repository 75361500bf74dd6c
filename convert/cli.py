"""`edgevision convert`: a thin click layer over edgevision.convert.api (TensorFlow is imported lazily)."""

from __future__ import annotations

from pathlib import Path

import click

from edgevision.convert.options import (
    DEFAULT_CALIB_SAMPLES,
    DEFAULT_FINE_TUNE_EPOCHS,
    DEFAULT_FINE_TUNE_LR,
    DEFAULT_QAT_LR,
    INT8,
    IO_TYPES,
    QUANT_MODES,
    ConvertOptions,
    Optimizations,
)
from edgevision.convert.targets import TARGETS
from edgevision.convert.tta import TTA_MODES
from edgevision.errors import UsageError
from edgevision.options import labels_option, model_argument, preprocess_option, quiet_option, seed_option

_dir = click.Path(exists=False, file_okay=False, path_type=Path)
_file = click.Path(dir_okay=False, path_type=Path)


@click.command("convert", context_settings={"max_content_width": 100})
@model_argument()
@click.option("--quant", type=click.Choice(QUANT_MODES), default=INT8, show_default=True,
              help="float32; float16 (fp16 weights); dynamic (int8 weights, float activations); int8 (full integer, "
                   "calibrated); int16x8 (16-bit activations, 8-bit weights).")
@click.option("--out", "out", type=_file, help="Output .tflite file (default: beside MODEL, named after the mode).")
@click.option("--all", "all_modes", is_flag=True, help="Produce every mode (and the optimised model, if asked) into --out-dir.")
@click.option("--out-dir", type=_dir, help="Output folder for --all.")
@click.option("--io", type=click.Choice(IO_TYPES),
              help="The file's interface. uint8 (default): raw RGB pixels in, normalised inside the model, uint8 scores "
                   "from int8 models: what MediaPipe, the Task Library and accelerators accept. int8: normalised int8 "
                   "in and out (int8 models only). float32: normalised float input.")
@click.option("--calib", "calib_dir", type=_dir, help="Calibration images for int8/int16x8 (default: the run's training split).")
@click.option("--calib-samples", type=click.IntRange(min=1), default=DEFAULT_CALIB_SAMPLES, show_default=True,
              help="How many calibration images to use.")
@click.option("--eval", "eval_dir", type=_dir,
              help="Labelled images (one subfolder per class) for the accuracy report (default: the run's validation split).")
@click.option("--eval-samples", type=click.IntRange(min=1), help="Evaluate on at most this many images (seeded sample).")
@click.option("--no-eval", is_flag=True, help="Skip the accuracy comparison.")
@click.option("--qat-epochs", type=click.IntRange(min=0), default=0, help="Quantization-aware fine-tuning epochs before int8 conversion.")
@click.option("--prune", type=float, metavar="SPARSITY", help="Magnitude-prune to this final sparsity (e.g. 0.5) with a short fine-tune.")
@click.option("--cluster", type=int, metavar="K", help="Cluster each layer's weights into K values with a short fine-tune.")
@click.option("--fine-tune-epochs", type=click.IntRange(min=0), default=DEFAULT_FINE_TUNE_EPOCHS, show_default=True,
              help="Fine-tuning epochs for --prune and --cluster.")
@click.option("--fine-tune-lr", type=float, default=DEFAULT_FINE_TUNE_LR, show_default=True,
              help="Learning rate for the --prune / --cluster fine-tune.")
@click.option("--qat-lr", type=float, default=DEFAULT_QAT_LR, show_default=True,
              help="Learning rate for quantization-aware training (it only adapts to rounding: keep it small).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Batch size for fine-tuning.")
@click.option("--train-data", "train_dir", type=_dir,
              help="Labelled images for fine-tuning (default: the run's training split).")
@click.option("--train-samples", type=click.IntRange(min=1),
              help="Fine-tune on at most this many of those images (seeded sample), e.g. for QAT of a large model.")
@labels_option(help="Class names, one per line (overrides the run's).")
@preprocess_option(help="preprocess.json for a bare .keras file or SavedModel (input size, colour order, mean, std).")
@click.option("--allow-tf-ops", is_flag=True,
              help="Keep ops TFLite lacks as TensorFlow ops (SELECT_TF_OPS; the device then needs the Flex delegate).")
@click.option("--unsafe-load", is_flag=True,
              help="Load models that carry code: Lambda layers (Python from the file), SavedModel graphs with "
                   "file, process or network operations (trusted models only).")
@click.option("--no-bias-correction", is_flag=True,
              help="Skip compensating int8 weight rounding before post-training int8/int16x8 conversion "
                   "and at the start of QAT.")
@click.option("--tta", type=click.Choice(TTA_MODES),
              help="Bake test-time augmentation into the model: 'flip' averages the image and its mirror "
                   "(2x the compute; only for classes that look the same mirrored).")
@click.option("--target", type=click.Choice(TARGETS),
              help="A device class the file must suit, checked before it is written. micro: TFLite Micro's "
                   "operators, full int8, one image per invoke; also writes the C++ array beside the .tflite (.cc and .h: "
                   "g_model[], the arena TFLite Micro measured). edgetpu: what Coral's Edge TPU compiler accepts (full int8, "
                   "uint8 I/O, static shapes, its operators); prints the compiler command to run.")
@click.option("--npu", metavar="VENDOR:SOC",
              help="Also compile the file ahead of time for a vendor NPU with LiteRT's AOT tooling, e.g. "
                   "qualcomm:SM8650 (needs the vendor's SDK: the error says which to install).")
@click.option("--report", "report_path", type=_file, help="Also write the report as JSON to this file.")
@seed_option(help="Seed for sampling and fine-tuning.")
@quiet_option()
def convert(model, quant, out, all_modes, out_dir, io, calib_dir, calib_samples, eval_dir, eval_samples, no_eval,
            qat_epochs, prune, cluster, fine_tune_epochs, fine_tune_lr, qat_lr, batch_size, train_dir, train_samples, labels, preprocess,
            allow_tf_ops, unsafe_load, no_bias_correction, tta, target, npu, report_path, seed, quiet):
    """Convert MODEL (a run directory, a .keras file or a SavedModel) to TensorFlow Lite.

    The .tflite file carries the labels, input size, colour order and normalisation, so a device needs
    nothing else; labels.txt is also written beside it. The report compares size, gzip size, conversion
    time, operators and (with evaluation data) accuracy of the Keras and converted models.

    \b
    Examples:
      edgevision convert runs/cnn --quant int8 --out cnn-int8.tflite
      edgevision convert runs/cnn --all --out-dir out/ --report out/report.json
      edgevision convert runs/cnn --quant int8 --qat-epochs 2 --out cnn-qat.tflite
      edgevision convert runs/cnn --quant int8 --tta flip --out cnn-int8-flip.tflite
      edgevision convert runs/cnn --target micro --out firmware/cnn.tflite    # + cnn.cc, cnn.h
      edgevision convert runs/cnn --target edgetpu --out cnn-edgetpu.tflite
      edgevision convert model.keras --labels labels.txt --preprocess preprocess.json --calib images/ --quant int8
    """
    from edgevision.convert import api

    if all_modes and out is not None:
        raise UsageError("--all writes several files: give --out-dir DIR instead of --out")
    if all_modes and out_dir is None:
        raise UsageError("--all needs --out-dir DIR (the folder for every variant)")
    if out_dir is not None and not all_modes:
        raise UsageError("--out-dir is for --all; for one model give --out FILE.tflite")
    optimizations = Optimizations(qat_epochs=qat_epochs, prune=prune, cluster=cluster, fine_tune_epochs=fine_tune_epochs,
                                  learning_rate=fine_tune_lr, qat_learning_rate=qat_lr, batch_size=batch_size, seed=seed)
    options = ConvertOptions(quant=quant, io=io, labels=_path(labels), preprocess=_path(preprocess), calib_dir=calib_dir,
                             calib_samples=calib_samples, eval_dir=eval_dir, eval_samples=eval_samples,
                             evaluate=not no_eval, train_dir=train_dir, train_samples=train_samples, optimizations=optimizations,
                             allow_tf_ops=allow_tf_ops, unsafe_load=unsafe_load, seed=seed, tta=tta,
                             bias_correction=not no_bias_correction, target=target, npu=npu)
    from edgevision.native_log import quiet_native_stderr

    source = model  # convert.loading resolves it (edge_runtime.model_ref), as every command does
    progress = None if quiet else (lambda message: click.echo(f"... {message}", err=True))
    with quiet_native_stderr():
        if all_modes:
            report = api.convert_all(source, out_dir, options=options, report=report_path, progress=progress)
        else:
            report = api.run_conversion(source, [api.single_variant(options)], options, out=out,
                                        report_path=report_path, progress=progress)
    _print_report(report, report_path)


def _print_report(report, report_path) -> None:
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(report.format_table())
    for v in report.variants:
        click.echo(f"wrote {v.path} (+ {v.labels_path.name})")
        if v.float_ops:
            click.echo(f"warning: {v.variant}: ops left in float in an integer model: {', '.join(v.float_ops)} "
                       "(they run slowly or not at all on integer-only accelerators)", err=True)
    if report.target is not None:
        from edgevision.convert.targets import describe

        for line in describe(report.target):
            click.echo(line)
        for path in report.target["files"].values():
            click.echo(f"wrote {path}")
    if report_path is not None:
        click.echo(f"wrote {report_path}")


def _path(value):
    """The shared --labels/--preprocess options give a checked str; ConvertOptions holds Paths."""
    return Path(value) if value is not None else None
