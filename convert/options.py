"""Conversion settings: plain frozen dataclasses, no TensorFlow, so the CLI can build and check them cheaply."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from edgevision.errors import UsageError

FLOAT32, FLOAT16, DYNAMIC, INT8, INT16X8 = "float32", "float16", "dynamic", "int8", "int16x8"
#: Every quantization mode, in the order `--all` produces them (largest file first).
QUANT_MODES: Tuple[str, ...] = (FLOAT32, FLOAT16, DYNAMIC, INT8, INT16X8)
#: Modes whose activations are integers too: they need a representative dataset to calibrate ranges.
FULL_INTEGER: Tuple[str, ...] = (INT8, INT16X8)
#: Input/output interfaces. uint8 (the default, "portable"): the file takes raw RGB pixels 0-255 and normalises
#: inside its graph, and an int8 model gives uint8 scores: what MediaPipe, the Task Library and integer-only
#: accelerators accept (convert/interface.py). int8 (full-int8 models only): normalised, quantized input and
#: output, what TFLite's integer kernels use inside. float32: normalised float input, float output.
PORTABLE = "uint8"
IO_TYPES: Tuple[str, ...] = (PORTABLE, "int8", FLOAT32)

DEFAULT_CALIB_SAMPLES = 500  # TFLite's guidance is a few hundred; more barely moves the ranges.
DEFAULT_FINE_TUNE_EPOCHS = 2
DEFAULT_FINE_TUNE_LR = 1e-4  # small: the model is already trained; this only lets it adapt to the constraint.
# QAT only has to adapt to rounding, and Adam at 1e-4 without the training augmentation overfits a trained model:
# see benchmarks/results/findings.md.
DEFAULT_QAT_LR = 1e-5


@dataclass(frozen=True)
class Optimizations:
    """Training-time optimisations with tensorflow-model-optimization, applied before conversion."""

    qat_epochs: int = 0
    prune: Optional[float] = None  # final sparsity, 0 < s < 1
    cluster: Optional[int] = None  # number of weight clusters per layer
    fine_tune_epochs: int = DEFAULT_FINE_TUNE_EPOCHS  # for pruning and clustering
    learning_rate: float = DEFAULT_FINE_TUNE_LR  # for pruning and clustering
    qat_learning_rate: float = DEFAULT_QAT_LR
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        if self.qat_epochs < 0:
            raise UsageError(f"--qat-epochs must be 0 or more, got {self.qat_epochs}")
        if self.prune is not None and not 0.0 < self.prune < 1.0:
            raise UsageError(f"--prune takes the final sparsity, a fraction between 0 and 1 (e.g. 0.5), got {self.prune}")
        if self.cluster is not None and self.cluster < 2:
            raise UsageError(f"--cluster takes the number of weight clusters per layer (2 or more), got {self.cluster}")
        if (self.prune is not None or self.cluster is not None) and self.fine_tune_epochs < 1:
            raise UsageError(
                f"--fine-tune-epochs must be at least 1 with --prune or --cluster, got {self.fine_tune_epochs}: "
                "both change the weights, and the model needs a little training to recover"
            )
        if self.learning_rate <= 0:
            raise UsageError(f"--fine-tune-lr must be positive, got {self.learning_rate}")
        if self.qat_learning_rate <= 0:
            raise UsageError(f"--qat-lr must be positive, got {self.qat_learning_rate}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be positive, got {self.batch_size}")

    @property
    def active(self) -> bool:
        return bool(self.qat_epochs) or self.prune is not None or self.cluster is not None

    @property
    def qat(self) -> bool:
        return self.qat_epochs > 0

    def names(self) -> Tuple[str, ...]:
        """What was done, in the order it is done; recorded in the model's metadata and the report."""
        out = []
        if self.prune is not None:
            out.append("pruned")
        if self.cluster is not None:
            out.append("clustered")
        if self.qat:
            out.append("qat")
        return tuple(out)

    def tag(self) -> str:
        """Short file-name tag, e.g. 'pruned50-qat'."""
        parts = []
        if self.prune is not None:
            parts.append(f"pruned{round(self.prune * 100)}")
        if self.cluster is not None:
            parts.append(f"clustered{self.cluster}")
        if self.qat:
            parts.append("qat")
        return "-".join(parts)

    def to_dict(self) -> dict:
        d = {"steps": list(self.names())}
        if self.prune is not None:
            d["sparsity"] = self.prune
        if self.cluster is not None:
            d["clusters"] = self.cluster
        if self.prune is not None or self.cluster is not None:
            d["fine_tune_epochs"] = self.fine_tune_epochs
        if self.qat:
            d["qat_epochs"] = self.qat_epochs
            d["qat_learning_rate"] = self.qat_learning_rate
        if self.active:
            d["learning_rate"] = self.learning_rate
            d["batch_size"] = self.batch_size
        return d


@dataclass(frozen=True)
class Variant:
    """One model to produce: a quantization mode, with or without the training-time optimisations."""

    quant: str
    optimized: bool = False

    def name(self, optimizations: Optimizations, tta: Optional[str] = None) -> str:
        """e.g. "int8", "int8-pruned50-qat", "int8-flip-tta"."""
        tags = [optimizations.tag() if self.optimized else "", f"{tta}-tta" if tta else ""]
        return "-".join([self.quant] + [t for t in tags if t])


@dataclass(frozen=True)
class ConvertOptions:
    """Everything `convert_model` / `convert_all` need besides the model and where to write.

    labels / preprocess: files that override (or, for a bare .keras file or SavedModel, supply) the class
        names and preprocessing settings.
    io: the file's interface (IO_TYPES; default PORTABLE: uint8 pixels in).
    calib_dir: images for calibration; default: the run's validation images.
    eval_dir: labelled images (one subfolder per class) for the accuracy report; default: the run's
        validation split when the model comes from a run directory.
    train_dir: labelled images for the fine-tuning of QAT, pruning and clustering; default: the run's
        training split.
    train_samples: fine-tune on a seeded sample of at most this many of them (QAT only has to adapt to
        rounding, and a fraction of an epoch of a large model is often enough).
    tta: test-time augmentation baked into every produced model ("flip"; see convert/tta.py), or None.
    bias_correction: compensate int8 weight rounding before int8/int16x8 post-training conversion, and in
        the weights QAT starts from when it runs alone (convert/bias_correction.py).
    target: a device class the file must suit, checked before it is written (convert/targets.py): "micro"
        (TFLite Micro; also writes a C++ array) or "edgetpu" (what Coral's Edge TPU compiler accepts).
    npu: "VENDOR:SOC": also compile the file ahead of time for that NPU with LiteRT's AOT tooling
        (convert/npu.py).
    """

    quant: str = INT8
    io: Optional[str] = None
    labels: Optional[Path] = None
    preprocess: Optional[Path] = None
    calib_dir: Optional[Path] = None
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    eval_dir: Optional[Path] = None
    eval_samples: Optional[int] = None
    evaluate: bool = True
    train_dir: Optional[Path] = None
    train_samples: Optional[int] = None
    optimizations: Optimizations = field(default_factory=Optimizations)
    allow_tf_ops: bool = False
    unsafe_load: bool = False
    seed: int = 0
    tta: Optional[str] = None
    bias_correction: bool = True
    target: Optional[str] = None
    npu: Optional[str] = None

    def __post_init__(self):
        from edgevision.convert.targets import check_options
        from edgevision.convert.tta import check_mode

        check_mode(self.tta)
        check_options(self)
        if self.npu is not None:
            from edgevision.convert.npu import parse

            parse(self.npu)  # an unknown vendor or SoC fails now, not after the conversion
        if self.quant not in QUANT_MODES:
            raise UsageError(f"unknown quantization {self.quant!r}; choose one of: {', '.join(QUANT_MODES)}")
        if self.io is not None and self.io not in IO_TYPES:
            raise UsageError(f"unknown --io type {self.io!r}; choose one of: {', '.join(IO_TYPES)}")
        if self.calib_samples < 1:
            raise UsageError(f"--calib-samples must be at least 1, got {self.calib_samples}")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise UsageError(f"--eval-samples must be at least 1, got {self.eval_samples}")
        if self.train_samples is not None and self.train_samples < 1:
            raise UsageError(f"--train-samples must be at least 1, got {self.train_samples}")

    def io_for(self, quant: str) -> Tuple[str, str]:
        """(input type, output type) of the written file in mode `quant`."""
        io = self.io or PORTABLE
        if io == PORTABLE:
            return PORTABLE, (PORTABLE if quant == INT8 else FLOAT32)
        return (io, io) if quant == INT8 else (FLOAT32, FLOAT32)

    def converter_io(self, quant: str) -> str:
        """The input/output type TFLiteConverter produces; the portable interface is added afterwards."""
        return self.io_for(quant)[0] if self.io == FLOAT32 or quant != INT8 else "int8"

    def check_single(self) -> None:
        """Combinations that make no sense for one model (`convert_all` picks modes itself)."""
        if self.io == "int8" and self.quant != INT8:
            raise UsageError(
                f"--io int8 only applies to --quant int8 (a {self.quant} model takes uint8 pixels or float32 input)"
            )
        if self.optimizations.qat and self.quant != INT8:
            raise UsageError(
                f"--qat-epochs trains the model for int8 quantization, but --quant is {self.quant}; "
                "use --quant int8 (or drop --qat-epochs)"
            )
