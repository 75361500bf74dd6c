"""The converter's Python API: Keras model in, `.tflite` files and an honest report of their cost out.

    from edgevision.convert import convert_model, convert_all, ConvertOptions
    result = convert_model("runs/cnn", "int8", "cnn-int8.tflite")
    report = convert_all("runs/cnn", "out/", options=ConvertOptions(eval_dir="data/test"))

Nothing is written until every requested model has been converted and checked: a failure half-way leaves
no file behind (and every file is written atomically).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edgevision.atomic import check_writable as write_check
from edgevision.atomic import write_bytes, write_json, write_text
from edgevision.convert.options import (
    FULL_INTEGER,
    INT8,
    QUANT_MODES,
    ConvertOptions,
    Optimizations,
    Variant,
)
from edgevision.convert.report import ConversionReport, ConversionResult
from edgevision.errors import DataError, UsageError

Progress = Optional[Callable[[str], None]]
TFLITE_SUFFIX = ".tflite"
LABELS_NAME = "labels.txt"


def convert_model(source, quant: str = INT8, out=None, *, options: Optional[ConvertOptions] = None,
                  report=None, progress: Progress = None) -> ConversionResult:
    """Convert one model to `quant`; write `out` (default: beside the source) and labels.txt beside it."""
    options = replace(options or ConvertOptions(), quant=quant)
    result = run_conversion(source, [single_variant(options)], options, out=out, report_path=report, progress=progress)
    return result.variants[0]


def convert_all(source, out_dir, *, options: Optional[ConvertOptions] = None, report=None,
                progress: Progress = None) -> ConversionReport:
    """Every quantization mode into `out_dir`, plus the optimised model when options ask for one."""
    options = options or ConvertOptions()
    return run_conversion(source, all_variants(options.optimizations), options, out_dir=out_dir,
                          report_path=report, progress=progress)


def single_variant(options: ConvertOptions) -> Variant:
    """The one model `convert_model` makes: options.quant, optimised when QAT/pruning/clustering is asked."""
    options.check_single()
    return Variant(options.quant, optimized=options.optimizations.active)


def all_variants(optimizations: Optimizations) -> List[Variant]:
    """The five post-training modes; with QAT/pruning/clustering also the optimised model in int8 (and in
    float32 when there is no QAT, since that is where pruning and clustering show in the gzip size)."""
    variants = [Variant(q) for q in QUANT_MODES]
    if optimizations.active:
        if not optimizations.qat:
            variants.append(Variant("float32", optimized=True))
        variants.append(Variant(INT8, optimized=True))
    return variants


def default_output(source, variant_name: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path / f"{path.name}-{variant_name}{TFLITE_SUFFIX}"
    return path.with_name(f"{path.stem}-{variant_name}{TFLITE_SUFFIX}")


@dataclass
class _Plan:
    """What a conversion will do, decided before anything is converted; `report` collects what each step
    measured (the data sets' descriptions, bias correction, timings) as the steps run."""

    src: object
    options: ConvertOptions
    plain: List[Tuple[Variant, str]]  # (variant, name) converted from the model as it is
    optimized: List[Tuple[Variant, str]]  # ... after QAT / pruning / clustering
    report: ConversionReport
    served: object = None  # the Keras model the device runs: the source model or its TTA wrapper
    calib_inputs: object = None
    eval_set: object = None
    train_set: object = None
    reference: object = None  # the served model's probabilities on eval_set


def run_conversion(source, variants: Sequence[Variant], options: ConvertOptions, *, out=None, out_dir=None,
                   report_path=None, progress: Progress = None) -> ConversionReport:
    """Convert `source` into each of `variants`; write them (to `out`, or `out_dir`) only if all succeed."""
    say = progress or (lambda message: None)
    if not variants:
        raise UsageError("nothing to convert: no variants requested")
    targets = _targets(source, variants, options, out, out_dir)
    if report_path is not None and Path(report_path).suffix.lower() != ".json":
        raise UsageError(f"--report takes a .json file name, got {report_path}")
    from edgevision.convert import targets as device

    names = [v.name(options.optimizations, options.tta) for v in variants]
    paths = [targets[n] for n in names]
    # a read-only or full output folder fails now, not after the conversion
    for target in list(targets.values()) + device.planned_paths(options, variants, paths):
        write_check(target)
    plan = _plan(source, variants, options, say)
    results = _convert_keras(plan, plan.plain, say) if plan.plain else []
    if plan.optimized:
        results += _convert_optimized(plan, say)
    plan.report.variants = results
    checked = device.run(results, options, paths[0], say)  # --target / --npu: refuses before any write
    plan.report.target = checked.to_dict() if checked is not None else None
    _write_outputs(plan.report, results, paths, plan.src.labels, report_path)
    device.write_files(checked, results[0].model)
    return plan.report


def _plan(source, variants: Sequence[Variant], options: ConvertOptions, say) -> _Plan:
    """Open the source, load its model, gather the data sets; fail on the likeliest mistakes first."""
    from edgevision.convert.interface import check_portable
    from edgevision.convert.loading import load_model, open_source
    from edgevision.convert.options import PORTABLE

    src = open_source(source, labels=options.labels, preprocess=options.preprocess, unsafe_load=options.unsafe_load)
    if any(options.io_for(v.quant)[0] == PORTABLE for v in variants):  # before anything slow, not after it
        check_portable(src.preprocess)
    pairs = [(v, v.name(options.optimizations, options.tta)) for v in variants]
    plan = _Plan(src, options, [p for p in pairs if not p[0].optimized], [p for p in pairs if p[0].optimized],
                 ConversionReport(source={}, variants=[]))
    report = plan.report
    # QAT models carry their own ranges, but TFLite still wants a representative dataset for integer I/O.
    # Calibration images do not depend on the model: checking them first makes the likeliest mistakes (an
    # empty or missing folder) fail in a second, before TensorFlow and the model are loaded.
    calib = None
    if any(v.quant in FULL_INTEGER for v in variants) or options.calib_dir is not None:
        calib = _calibration_set(src, options)
        report.calibration = calib.describe()
        _warn_skipped(report, calib, "calibration")
    say(f"loading {src.path}")
    load_model(src, options.unsafe_load)  # also aligns the labels with the outputs, which the sets below use
    report.source = _describe_source(src)
    if plan.optimized and src.keras_model is None:
        raise UsageError(
            "QAT, pruning and clustering fine-tune a Keras model; a SavedModel cannot be fine-tuned: "
            "convert the .keras file or the run directory instead"
        )
    plan.served = _served_model(src, options, report)
    plan.calib_inputs = calib.inputs(src.preprocess) if calib is not None else None
    plan.eval_set = _eval_set(src, options, report) if options.evaluate else None
    if plan.eval_set is not None:
        report.evaluation = plan.eval_set.describe()
        _warn_skipped(report, plan.eval_set, "evaluation")
    if plan.optimized:
        plan.train_set = _fine_tune_set(src, options)
        report.fine_tune = {**plan.train_set.describe(), **options.optimizations.to_dict()}
    plan.reference = _reference(plan, say)
    return plan


def _reference(plan: _Plan, say):
    """The served Keras model's probabilities on the evaluation images (and what TTA bought, on the same)."""
    from edgevision.convert import evaluate

    src, eval_set = plan.src, plan.eval_set
    if eval_set is None:
        return None
    say(f"running the source model on {len(eval_set)} evaluation images")
    reference = evaluate.reference_probabilities(_reference_predictor(src, plan.served), eval_set.pixels,
                                                 src.preprocess)
    if plan.served is not src.keras_model:
        single = evaluate.reference_probabilities(_reference_predictor(src), eval_set.pixels, src.preprocess)
        plan.report.tta["accuracy_float_single_view"] = evaluate.accuracy(single, eval_set.labels)
    return reference


def _convert_one(plan: _Plan, variant: Variant, name: str, converter_source, say) -> ConversionResult:
    from edgevision.convert import quantize

    say(f"converting {name}")
    start = time.perf_counter()
    model = quantize.convert(converter_source, variant.quant, plan.options.converter_io(variant.quant),
                             plan.calib_inputs, plan.options.allow_tf_ops)
    seconds = time.perf_counter() - start
    return _finish(plan.src, variant, name, model, seconds, plan.options, plan.eval_set, plan.reference, plan.report)


def _convert_keras(plan: _Plan, pairs, say) -> List[ConversionResult]:
    """The source model, with its weights as they are now, in each of `pairs`; the full-integer ones from a
    bias-corrected export."""
    from edgevision.convert import quantize

    src = plan.src
    with contextlib.ExitStack() as stack:
        start = time.perf_counter()
        context = quantize.exported_saved_model(plan.served) if plan.served is not None else _nullpath(src.path)
        saved_model_dir = stack.enter_context(context)
        if src.keras_model is not None:
            plan.report.export_seconds += time.perf_counter() - start
        corrected_dir = _bias_corrected_export(stack, src.keras_model, plan.served, pairs, plan.calib_inputs,
                                               plan.options, plan.report, say)
        return [_convert_one(plan, variant, name,
                             corrected_dir if corrected_dir is not None and variant.quant in FULL_INTEGER
                             else saved_model_dir, say)
                for variant, name in pairs]


def _convert_optimized(plan: _Plan, say) -> List[ConversionResult]:
    """Fine-tune with tensorflow-model-optimization, then convert the optimised variants."""
    from edgevision.convert import optimize
    from edgevision.convert.tfmot_bridge import weights_copied_back

    src, options, report = plan.src, plan.options, plan.report
    say(f"fine-tuning with tensorflow-model-optimization: {', '.join(options.optimizations.names())}")
    start = time.perf_counter()
    inputs = optimize.NormalizedImages(plan.train_set.pixels, src.preprocess)
    with contextlib.ExitStack() as stack:
        correction = _bias_correct_qat_start(stack, src.keras_model, plan.calib_inputs, options, say)
        tuned = optimize.optimize(src.keras_model, inputs, plan.train_set.labels, options.optimizations, progress=say)
    report.optimize_seconds = time.perf_counter() - start
    report.warnings.extend(tuned.notes)
    if not options.optimizations.qat:
        # Pruning and clustering leave the same architecture with new weights: put them back into the Keras
        # model and convert it exactly as the plain variants are, bias correction of int8 rounding included.
        with weights_copied_back(tuned.model, tuned.sources):
            return _convert_keras(plan, plan.optimized, say)
    report.optimized_bias_correction = correction  # a QAT graph only exists in tf_keras: convert it from there
    final = tuned.model
    if options.tta:
        from edgevision.convert.tta import with_tta_tf_keras

        final = with_tta_tf_keras(tuned.model, options.tta)
    return [_convert_one(plan, variant, name, final, say) for variant, name in plan.optimized]


def _targets(source, variants, options, out, out_dir) -> Dict[str, Path]:
    names = [v.name(options.optimizations, options.tta) for v in variants]
    if out is not None and out_dir is not None:
        raise UsageError("give either an output file or an output folder, not both")
    if out_dir is not None:
        out_dir = Path(out_dir).expanduser()
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out-dir {out_dir} exists and is not a folder")
        stem = Path(source).expanduser().stem if not Path(source).is_dir() else Path(source).name
        return {n: out_dir / f"{stem}-{n}{TFLITE_SUFFIX}" for n in names}
    if len(names) != 1:
        raise UsageError("several models need an output folder (--out-dir), not one output file")
    target = Path(out).expanduser() if out is not None else default_output(source, names[0])
    if target.suffix.lower() != TFLITE_SUFFIX:
        raise UsageError(f"the output file must end in {TFLITE_SUFFIX}, got {target}")
    if target.is_dir():
        raise UsageError(f"the output {target} is a folder; give a file name ending in {TFLITE_SUFFIX} or use --out-dir")
    return {names[0]: target}


class _nullpath:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        return False


def _describe_source(src) -> dict:
    d = src.describe()
    model_file = src.run.model_path if src.run is not None else src.path
    if model_file.is_file():
        d["sha256"] = _sha256(model_file)
        d["file_bytes"] = model_file.stat().st_size
    if src.keras_model is not None:
        d["parameters"] = int(src.keras_model.count_params())
        d["float32_bytes"] = 4 * d["parameters"]
    d["classes"] = len(src.labels)
    d["input_size"] = list(src.preprocess.input_size)
    if src.run is not None:
        command = src.run.command  # what `edgevision train` was given
        d["run"] = {k: command[k] for k in ("model", "data", "epochs", "seed") if k in command}
    return d


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _calibration_set(src, options):
    from edgevision.convert import calibration

    if options.calib_dir is not None:
        return calibration.calibration_folder(options.calib_dir, src.preprocess, options.calib_samples, options.seed)
    if src.run is None:
        raise DataError(
            f"full-integer quantization needs calibration images and {src.path} is not a run directory: "
            "pass --calib DIR (a folder of a few hundred typical input images)"
        )
    try:
        # The training split: calibration then never sees the images the report evaluates on.
        return calibration.run_split(src.run, "training", limit=options.calib_samples, seed=options.seed)
    except DataError as e:
        raise DataError(f"full-integer quantization needs calibration images: {e}; pass --calib DIR") from e


def _eval_set(src, options, report):
    from edgevision.convert import calibration

    if options.eval_dir is not None:
        return calibration.labelled_folder(options.eval_dir, src.labels, src.preprocess,
                                           limit=options.eval_samples, seed=options.seed)
    if src.run is None:
        return None
    try:
        return calibration.run_split(src.run, "validation", limit=options.eval_samples, seed=options.seed)
    except DataError as e:  # evaluation was not asked for explicitly: report without accuracy, say why
        report.warnings.append(f"no accuracy figures: {e}; pass --eval DIR")
        return None


def _fine_tune_set(src, options):
    from edgevision.convert import calibration

    if options.train_dir is not None:
        return calibration.labelled_folder(options.train_dir, src.labels, src.preprocess, seed=options.seed,
                                           limit=options.train_samples, purpose="fine-tuning")
    if src.run is None:
        raise UsageError(
            "--qat-epochs, --prune and --cluster fine-tune the model and need labelled training images: "
            "pass --train-data DIR (one subfolder per class) or convert a run directory"
        )
    try:
        return calibration.run_split(src.run, "training", limit=options.train_samples, seed=options.seed)
    except DataError as e:
        raise DataError(f"fine-tuning needs the training images: {e}; pass --train-data DIR") from e


def _bias_corrected_export(stack, model, served, pairs, calib_inputs, options, report, say):
    """A SavedModel of `served` with the int8 weight rounding of `model` compensated (bias_correction.py), for
    the full-integer variants among `pairs`; None when none is asked for or correction is off. `model` is the
    source model; `served` is it or its TTA wrapper, sharing its weights. What was corrected goes into the report
    before any conversion (the models' metadata carries it): `bias_correction` for post-training variants,
    `optimized_bias_correction` for pruned/clustered ones (all of `pairs` are one kind or the other). The weights
    are restored when `stack` closes; the export has its own copy of them."""
    if not options.bias_correction or not any(v.quant in FULL_INTEGER for v, _ in pairs):
        return None
    if served is None:
        report.warnings.append("bias correction needs a Keras model; this SavedModel was quantized without it")
        return None
    from edgevision.convert import quantize
    from edgevision.convert.bias_correction import bias_corrected

    say("measuring int8 weight-rounding shifts for bias correction")
    correction = stack.enter_context(bias_corrected(model, calib_inputs)).to_dict()
    if pairs[0][0].optimized:
        report.optimized_bias_correction = {**correction, "applied": "after pruning/clustering"}
    else:
        report.bias_correction = {**correction, "applied": "before conversion"}
    return stack.enter_context(quantize.exported_saved_model(served))


def _bias_correct_qat_start(stack, model, calib_inputs, options, say) -> Optional[dict]:
    """Start QAT (alone, not after pruning or clustering, which change the weights first) from bias-corrected
    weights. QAT fake-quantizes the kernels exactly as TFLite rounds them, so an uncorrected start carries the
    same per-channel output shifts as post-training int8, and a short fine-tune at QAT's small learning rate
    does not train them all away (benchmarks/results/findings.md). The weights are restored when `stack`
    closes; tfmot has its own copy."""
    opts = options.optimizations
    if not (options.bias_correction and opts.qat and opts.prune is None and opts.cluster is None):
        return None
    if calib_inputs is None:
        return None
    from edgevision.convert.bias_correction import bias_corrected

    say("measuring int8 weight-rounding shifts for bias correction before QAT")
    correction = stack.enter_context(bias_corrected(model, calib_inputs))
    return {**correction.to_dict(), "applied": "in the weights QAT started from"}


def _served_model(src, options, report):
    """The Keras model the plain variants are converted from: the source model, or with --tta its wrapper."""
    if not options.tta:
        return src.keras_model
    if src.keras_model is None:
        raise UsageError("--tta builds a new graph around a Keras model; convert the .keras file or the run "
                         "directory, not a SavedModel")
    from edgevision.convert.tta import describe, with_tta

    report.tta = describe(options.tta)
    return with_tta(src.keras_model, options.tta)


def _reference_predictor(src, model=None):
    from edgevision.convert import evaluate
    from edgevision.convert.loading import saved_model_function

    model = model if model is not None else src.keras_model
    if model is not None:
        return evaluate.keras_predictor(model)
    return saved_model_function(src.saved_model)[0]


def _warn_skipped(report, image_set, what: str) -> None:
    if image_set.skipped:
        names = ", ".join(Path(p).name for p in image_set.skipped[:3])
        report.warnings.append(f"{what}: skipped {len(image_set.skipped)} undecodable file(s): {names}")


def _finish(src, variant, name, model, seconds, options, eval_set, reference, report) -> ConversionResult:
    """Give a fresh conversion its interface, evaluate it as it will ship, embed the metadata, describe it."""
    from edgevision.convert import evaluate, metadata_writer, model_ops

    model, preprocess, in_graph = _with_interface(model, src.preprocess, options.io_for(variant.quant))
    agreement = None
    if eval_set is not None:
        converted = evaluate.tflite_probabilities(model, eval_set.pixels, preprocess)
        agreement = evaluate.compare(reference, converted, eval_set.labels)
    optimizations = options.optimizations.to_dict() if variant.optimized else {}
    metrics = {}
    if agreement is not None:
        metrics = {**{k: v for k, v in agreement.to_dict().items() if v is not None}, "eval_set": eval_set.source}
    io = model_ops.io_types(model)
    meta = metadata_writer.model_metadata(
        report.source.get("name") or name, src.labels, preprocess, variant.quant,
        optimizations=list(optimizations.get("steps", [])), io_types=io, source=_shipped_source(report.source),
        metrics=metrics, extra=_metadata_extra(variant, report), normalization_in_graph=in_graph,
    )
    final = metadata_writer.embed(model, meta)
    return ConversionResult(
        variant=name, quant=variant.quant, model=final, convert_seconds=seconds,
        ops=model_ops.model_ops(final, variant.quant), io=io, optimizations=optimizations, evaluation=agreement,
    )


def _with_interface(model: bytes, preprocess, io):
    """(model, what its input takes, the normalisation moved into its graph or None) for interface `io`."""
    from edgevision.convert.interface import portable_interface
    from edgevision.convert.options import PORTABLE

    if io[0] != PORTABLE:
        return model, preprocess, None
    return portable_interface(model, preprocess)


def _shipped_source(source: dict) -> dict:
    """No absolute paths in a file that gets shipped: the name and hash identify the source (report.json
    keeps the paths for the person who ran the conversion)."""
    out = {k: v for k, v in source.items() if k in ("kind", "name", "sha256", "parameters")}
    if "run" in source:
        out["run"] = {k: v for k, v in source["run"].items() if k != "data"}
    return out


def _metadata_extra(variant, report) -> dict:
    extra = {}
    if variant.quant in FULL_INTEGER and report.calibration:
        extra["calibration"] = report.calibration
    correction = report.optimized_bias_correction if variant.optimized else report.bias_correction
    if variant.quant in FULL_INTEGER and correction:
        extra["bias_correction"] = {k: v for k, v in correction.items() if k != "skipped"}
    if variant.optimized and report.fine_tune:  # what QAT/pruning/clustering trained on, with what settings
        extra["fine_tune"] = report.fine_tune
    if report.tta:
        extra["test_time_augmentation"] = {k: v for k, v in report.tta.items() if k != "accuracy_float_single_view"}
    return extra


def _write_outputs(report, results, targets, labels, report_path) -> None:
    """All files at the end, each atomically; labels.txt beside every model."""
    labels_text = "\n".join(labels) + "\n"
    for result, target in zip(results, targets):
        write_bytes(target, result.model)
        result.path = target
        result.labels_path = _labels_target(target, labels_text)
    for labels_path in {r.labels_path for r in results}:
        write_text(labels_path, labels_text)
    if report_path is not None:
        write_json(report_path, report.to_dict())


def _labels_target(model_path: Path, labels_text: str) -> Path:
    """labels.txt beside the model, unless a different labels.txt is already there (another model's):
    then <model>.labels.txt, so converting two models into one folder never breaks the first."""
    plain = model_path.parent / LABELS_NAME
    if not plain.exists():
        return plain
    try:
        if plain.read_text(encoding="utf-8") == labels_text:
            return plain
    except OSError:
        pass
    return model_path.with_suffix(".labels.txt")
