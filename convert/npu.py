"""`convert --npu VENDOR:SOC`: ahead-of-time compilation for a vendor NPU with LiteRT's own AOT tooling.

ai-edge-litert ships a compiler plugin for each vendor (ai_edge_litert/vendors/<vendor>/compiler), but not the
vendor's compiler itself: each plugin loads the vendor's SDK libraries (Qualcomm's QAIRT, MediaTek's
NeuroPilot, Google's Tensor ML SDK, Intel's OpenVINO NPU compiler, Samsung's), which the
`ai-edge-litert-sdk-<vendor>` packages download from the vendor when they are installed. So the compilation
really runs (ai_edge_litert.aot.aot_compile); where the SDK is missing it fails, and the error says which
library was missing and what to install, instead of pretending.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from edgevision.errors import ConversionError, DependencyError, UsageError

#: vendor (as `--npu` spells it) -> (ai_edge_litert.aot.vendors module, the pip arguments that install its SDK)
VENDORS = {
    "qualcomm": ("qualcomm", "ai-edge-litert-sdk-qualcomm"),
    "mediatek": ("mediatek", "ai-edge-litert-sdk-mediatek"),
    "google_tensor": ("google_tensor", "ai-edge-litert-sdk-google-tensor"),
    # the plugin links the OpenVINO release its SDK package names; Intel's NPU driver comes from Intel
    "intel_openvino": ("intel_openvino", "ai-edge-litert-sdk-intel openvino==2026.3.1"),
    "samsung": ("samsung", "ai-edge-litert-sdk-samsung-nightly"),
}
_MISSING_LIB = re.compile(r"(lib[\w.+-]+\.so[\w.]*)(?:: cannot open shared object file| not found)")
_LOAD_FAILED = re.compile(r"Could not load shared library \S+?: (?:\S+: )?(.+)")
_ERROR_FILE = re.compile(r"See (\S+\.error) for details")


@dataclass(frozen=True)
class NpuSpec:
    vendor: str
    soc: str

    @property
    def suffix(self) -> str:
        return f"{self.vendor}-{self.soc}"


def parse(spec: str) -> NpuSpec:
    """'qualcomm:SM8650' -> NpuSpec, checked against the SoCs ai-edge-litert's AOT tooling knows."""
    vendor, _, soc = spec.partition(":")
    vendor = vendor.strip().lower().replace("-", "_")
    if vendor not in VENDORS or not soc:
        raise UsageError(f"--npu takes VENDOR:SOC with VENDOR one of {', '.join(VENDORS)} (e.g. qualcomm:SM8650), "
                         f"got {spec!r}")
    socs = _soc_models(vendor)
    match = next((s for s in socs if s.lower() == soc.strip().lower()), None)
    if match is None:
        raise UsageError(f"--npu {vendor}: unknown SoC {soc!r}; LiteRT's AOT tooling knows: {', '.join(socs)}")
    return NpuSpec(vendor, match)


def _target_module(vendor: str):
    try:
        return importlib.import_module(f"ai_edge_litert.aot.vendors.{VENDORS[vendor][0]}.target")
    except ImportError as e:
        raise DependencyError(f"--npu needs ai-edge-litert's AOT tooling (ai_edge_litert.aot), which this "
                              f"install lacks ({e}); pip install -U ai-edge-litert") from None


def _soc_models(vendor: str) -> Tuple[str, ...]:
    return tuple(s.value for s in _target_module(vendor).SocModel if s.value != "ALL")


def compile_for(model: bytes, spec: NpuSpec) -> Tuple[bytes, str]:
    """(the compiled model, the plugin's partition statistics). ConversionError saying why when it fails."""
    from ai_edge_litert.aot import aot_compile
    from ai_edge_litert.aot.core import aot_types

    module = _target_module(spec.vendor)
    target = module.Target(module.SocModel(spec.soc))
    chatter = io.StringIO()  # the AOT tooling draws progress bars on stderr; a library says nothing
    with contextlib.redirect_stderr(chatter), contextlib.redirect_stdout(chatter):
        result = aot_compile.aot_compile(aot_types.Model.create_from_bytes(model), target=target, keep_going=True)
    if result.models_with_backend:
        compiled = result.models_with_backend[0][1]
        return compiled.model_bytes, str(getattr(compiled, "partition_stats", "") or "")
    reason = result.failed_backends[0][1] if result.failed_backends else "no model came back"
    raise ConversionError(_failure(spec, reason))


def _failure(spec: NpuSpec, reason: str) -> str:
    """One line: what the plugin lacked (read from the tooling's own error log) and what to install."""
    why = _why(_error_log(reason), spec.vendor, reason)
    return (f"--npu {spec.vendor}:{spec.soc}: {why}; install the SDK with `pip install {VENDORS[spec.vendor][1]}` "
            "(the package downloads it from the vendor when it installs) and convert again; nothing was written")


def _why(details: str, vendor: str, reason: str) -> str:
    missing = _MISSING_LIB.search(details)
    if missing:
        return (f"LiteRT's {vendor} compiler plugin could not load {missing.group(1)}, part of the vendor's SDK, "
                "which is not installed here")
    failed = _LOAD_FAILED.search(details)
    if failed:
        return f"LiteRT's {vendor} compiler plugin could not be loaded: {failed.group(1).strip()[:200]}"
    lines = [ln.strip() for ln in details.splitlines() if "ERROR" in ln]
    return f"LiteRT's {vendor} compiler plugin failed: {(lines[-1] if lines else reason)[:300]}"


def _error_log(reason: str) -> str:
    """The AOT tooling writes the plugin's stderr to a temporary .error file and names it in its message."""
    match = _ERROR_FILE.search(reason)
    if not match:
        return reason
    path = Path(match.group(1))
    try:
        text = path.read_text(errors="replace")
        path.unlink()  # ours: the compilation this process started left it
        return text
    except OSError:
        return reason


def output_path(model_path: Path, spec: NpuSpec) -> Path:
    """Where the compiled file goes: beside the .tflite, named after the SoC."""
    return model_path.with_name(f"{model_path.stem}.{spec.suffix}{model_path.suffix}")
