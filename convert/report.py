"""What each conversion cost: size, gzip size, time, operators, accuracy. One table, one JSON document."""

from __future__ import annotations

import gzip
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from edgevision.convert.evaluate import Agreement
from edgevision.convert.model_ops import OpSummary, float_ops
from edgevision.convert.options import FLOAT32

REPORT_FORMAT = "edgevision.convert-report/1"


def gzip_size(data: bytes) -> int:
    """Bytes after gzip: what a download or an OTA update costs, and where pruning's zeros show."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


@dataclass
class ConversionResult:
    """One produced model."""

    variant: str  # e.g. "int8" or "int8-pruned50-qat"
    quant: str
    model: bytes = field(repr=False)
    convert_seconds: float
    ops: List[OpSummary]
    io: Tuple[str, str]
    optimizations: dict = field(default_factory=dict)
    evaluation: Optional[Agreement] = None
    path: Optional[Path] = None
    labels_path: Optional[Path] = None
    gzip_bytes: int = 0
    weight_sparsity: float = 0.0  # zeros in the stored conv/dense kernels

    def __post_init__(self):
        if not self.gzip_bytes:
            self.gzip_bytes = gzip_size(self.model)
        if not self.weight_sparsity:
            from edgevision.convert.model_ops import weight_sparsity

            self.weight_sparsity = weight_sparsity(self.model)

    @property
    def bytes(self) -> int:
        return len(self.model)

    @property
    def float_ops(self) -> List[str]:
        return float_ops(self.ops)

    def to_dict(self, float32_bytes: Optional[int] = None) -> dict:
        ev = self.evaluation.to_dict() if self.evaluation else {}
        return {
            "variant": self.variant,
            "quant": self.quant,
            "path": str(self.path) if self.path else None,
            "labels_path": str(self.labels_path) if self.labels_path else None,
            "bytes": self.bytes,
            "gzip_bytes": self.gzip_bytes,
            "ratio_to_float32": (self.bytes / float32_bytes) if float32_bytes else None,
            "convert_seconds": round(self.convert_seconds, 3),
            "input_type": self.io[0],
            "output_type": self.io[1],
            "optimizations": self.optimizations,
            "weight_sparsity": round(self.weight_sparsity, 4),
            "accuracy": ev.get("accuracy"),
            "accuracy_float": ev.get("accuracy_float"),
            "accuracy_delta": ev.get("accuracy_delta"),
            "agreement": ev.get("agreement"),
            "prob_mae": ev.get("prob_mae"),
            "eval_n": ev.get("n"),
            "float_ops": self.float_ops,
            "ops": [o.to_dict() for o in self.ops],
        }


@dataclass
class ConversionReport:
    source: dict
    variants: List[ConversionResult]
    calibration: Optional[dict] = None
    evaluation: Optional[dict] = None  # the eval set: source, n, skipped
    fine_tune: Optional[dict] = None
    export_seconds: float = 0.0
    optimize_seconds: float = 0.0
    warnings: List[str] = field(default_factory=list)
    tta: Optional[dict] = None  # test-time augmentation baked into every variant (convert/tta.py)
    bias_correction: Optional[dict] = None  # applied before the post-training int8/int16x8 conversions
    # for the tfmot variants: applied to the weights QAT starts from, or after pruning/clustering
    optimized_bias_correction: Optional[dict] = None
    target: Optional[dict] = None  # --target / --npu: the device checks and what they produced (convert/targets.py)

    def float32_bytes(self) -> Optional[int]:
        """Size of the float32 variant, or of the source model's float32 weights when none was produced."""
        for v in self.variants:
            if v.quant == FLOAT32 and not v.optimizations:
                return v.bytes
        return self.source.get("float32_bytes")

    def to_dict(self) -> dict:
        import edgevision

        f32 = self.float32_bytes()
        return {
            "format": REPORT_FORMAT,
            "source": self.source,
            "calibration": self.calibration,
            "eval_set": self.evaluation,
            "fine_tune": self.fine_tune,
            "test_time_augmentation": self.tta,
            "bias_correction": self.bias_correction,
            "optimized_bias_correction": self.optimized_bias_correction,
            "export_seconds": round(self.export_seconds, 3),
            "optimize_seconds": round(self.optimize_seconds, 3),
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "edgevision": edgevision.__version__},
            "warnings": self.warnings,
            "target": self.target,
            "variants": [v.to_dict(f32) for v in self.variants],
        }

    def format_table(self) -> str:
        f32 = self.float32_bytes()
        header = ("variant", "io", "size", "gzip", "vs f32", "convert", "accuracy", "delta", "agree", "prob MAE", "float ops")
        rows = []
        for v in self.variants:
            ev = v.evaluation
            rows.append((
                v.variant,
                v.io[0] if v.io[0] == v.io[1] else f"{v.io[0]}/{v.io[1]}",
                _kb(v.bytes),
                _kb(v.gzip_bytes),
                f"{v.bytes / f32:.2f}x" if f32 else "-",
                f"{v.convert_seconds:.1f}s",
                _pct(ev.accuracy) if ev else "-",
                _signed_points(ev.delta) if ev else "-",
                _pct(ev.agreement) if ev else "-",
                f"{ev.prob_mae:.4f}" if ev else "-",
                ", ".join(v.float_ops) or "-",
            ))
        widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
        lines = ["  ".join(str(c).ljust(w) if i in (0, 1, 10) else str(c).rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in [header] + rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        notes = []
        if self.evaluation:
            acc_f = next((v.evaluation.accuracy_float for v in self.variants if v.evaluation), None)
            base = f"; Keras model accuracy {_pct(acc_f)}" if acc_f is not None else ""
            notes.append(f"evaluated on {self.evaluation['n']} images from {self.evaluation['source']}{base}")
        if self.tta:
            single = self.tta.get("accuracy_float_single_view")
            gain = f" (Keras model without it: {_pct(single)})" if single is not None else ""
            notes.append(f"{self.tta['mode']} test-time augmentation is in every model: {self.tta['views']} views per "
                         f"image, {self.tta['views']}x the compute{gain}")
        if self.bias_correction:
            bc = self.bias_correction
            notes.append(f"post-training int8/int16x8: int8 weight rounding compensated in {bc['layers']} conv layers "
                         f"(bias correction on {bc['images']} calibration images, largest shift {bc['max_shift']:.3g})")
        if self.optimized_bias_correction:
            bc = self.optimized_bias_correction
            notes.append(f"fine-tuned int8: int8 weight rounding compensated {bc['applied']}, in {bc['layers']} conv "
                         f"layers (bias correction on {bc['images']} calibration images)")
        if self.calibration:
            notes.append(f"calibrated on {self.calibration['n']} images from {self.calibration['source']}")
        return "\n".join(lines + notes)


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 10 * 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def _signed_points(x: Optional[float]) -> str:
    return "-" if x is None else f"{x * 100:+.2f} pt"
