"""Models shipped inside the package, addressable by name wherever a model path is accepted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import click

from edgevision.errors import ModelError

MODELS_DIR = Path(__file__).resolve().parent / "models"

#: name -> file in edgevision/models/. Each has a model card `<name>.md` beside it.
BUNDLED = {
    "imagenet-mobilenetv2": "imagenet-mobilenetv2.tflite",  # the general model first: the page lists them so
    "cifar10-mobilenetv2": "cifar10-mobilenetv2.tflite",
    "cifar10-cnn": "cifar10-cnn.tflite",
    "cifar10-micro": "cifar10-micro.tflite",  # for microcontrollers: TensorFlow Lite Micro, 160 KiB of flash
}
#: The general model (1000 ImageNet classes): the default for live sources, the page and the demo.
DEFAULT_MODEL = "imagenet-mobilenetv2"
#: The CIFAR-10 models (10 classes, small inputs), one option away: `--model cifar10-cnn`.
CIFAR10_MODELS = ("cifar10-mobilenetv2", "cifar10-cnn", "cifar10-micro")


@dataclass(frozen=True)
class BundledModel:
    name: str
    path: Path
    bytes: int
    quantization: Optional[str]
    input_size: Optional[tuple]
    num_classes: Optional[int]
    accuracy: Optional[float]
    optimizations: tuple = ()  # e.g. ("qat",): what was done to the model before conversion
    tta: Optional[str] = None  # test-time augmentation inside the graph ("flip": 2 views per invoke)
    input_type: Optional[str] = None  # "uint8": raw RGB pixels, what MediaPipe and the Task Library feed
    metadata: str = "standard"  # "standard": TFLITE_METADATA that third-party readers understand

    def build(self) -> str:
        return build_label(self.optimizations, self.tta) or "-"


def build_label(optimizations, tta: Optional[str]) -> str:
    """How a converted file differs from a plain conversion, e.g. "qat" or "flip TTA" ("" for none), from what
    its metadata records (`optimizations`, `test_time_augmentation.mode`)."""
    return ", ".join(list(optimizations) + ([f"{tta} TTA"] if tta else []))


def bundled_path(name: str) -> Path:
    if name not in BUNDLED:
        raise ModelError(f"unknown bundled model {name!r}; bundled models: {', '.join(BUNDLED)}")
    path = MODELS_DIR / BUNDLED[name]
    if not path.is_file():
        raise ModelError(
            f"bundled model {name!r} is not included in this installation ({path} is missing); "
            "pass the path of a .tflite file instead"
        )
    return path


def list_bundled() -> List[BundledModel]:
    from edgevision.edge_runtime.model_metadata import read_model_metadata

    out = []
    for name, filename in BUNDLED.items():
        path = MODELS_DIR / filename
        if not path.is_file():
            continue
        data = path.read_bytes()
        meta = read_model_metadata(data)
        out.append(
            BundledModel(
                name=name, path=path, bytes=len(data), quantization=meta.quantization, input_size=meta.input_size,
                num_classes=len(meta.labels) if meta.labels else None, accuracy=meta.metrics.get("accuracy"),
                optimizations=meta.optimizations, tta=meta.tta,
                input_type=(meta.document.get("io") or {}).get("input"),
                metadata="standard" if meta.origin.startswith("standard") else "edgevision only",
            )
        )
    return out


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list instead of a table.")
def models_command(as_json: bool) -> None:
    """List the bundled models with path, size, quantization and accuracy."""
    import json

    models = list_bundled()
    if as_json:
        rows = [
            {**m.__dict__, "path": str(m.path), "input_size": list(m.input_size) if m.input_size else None,
             "optimizations": list(m.optimizations)}
            for m in models
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not models:
        click.echo("no bundled models in this installation")
        return
    click.echo(f"{'name':<22}{'quant':<8}{'build':<10}{'input':<16}{'classes':>8}{'size':>10}{'accuracy':>10}"
               f"  {'metadata':<10}path")
    for m in models:
        size = f"{m.bytes / 1024:.0f} KB"
        acc = f"{m.accuracy * 100:.2f}%" if m.accuracy is not None else "-"
        inp = "x".join(map(str, m.input_size)) if m.input_size else "-"
        inp += f" {m.input_type}" if m.input_type else ""
        click.echo(f"{m.name:<22}{m.quantization or '-':<8}{m.build():<10}{inp:<16}{m.num_classes or '-':>8}{size:>10}"
                   f"{acc:>10}  {m.metadata:<10}{m.path}")
