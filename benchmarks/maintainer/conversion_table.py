"""The README's "what the conversion costs" table, built from `edgevision convert --report` JSON files.

    python -m edgevision.benchmarks.maintainer.conversion_table cifar10-cnn=runs/variants/cifar10-cnn ...

Each NAME=FOLDER contributes every variant of every `*.json` report in FOLDER (as `convert --report` writes
them), so the published numbers are copied by a program, not by hand. The gzip ratio is against the same
model's plain float32 variant and, for optimised variants (pruned, clustered, QAT), also against the plain variant
of the same quantization: pruning is judged like for like, not by what quantization did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, List, Tuple

import click

from edgevision.errors import UsageError

HEADER = ("model", "variant", "size", "gzip", "gzip vs float32", "gzip vs unoptimised", "top-1", "vs Keras", "agreement")


def load_variants(folder: Path) -> List[dict]:
    # report.json (convert --all) first, so the plain variants lead the table.
    reports = sorted(folder.glob("*.json"), key=lambda p: (p.name != "report.json", p.name))
    if not reports:
        raise UsageError(f"no convert reports (*.json) in {folder}: run `edgevision convert ... --report FILE`")
    variants = []
    for path in reports:
        try:
            doc = json.loads(path.read_text())
            tta = doc.get("test_time_augmentation") or {}  # a report-wide setting: every variant has it
            variants.extend({**v, "tta": tta.get("mode"), "tta_views": tta.get("views")} for v in doc["variants"])
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise UsageError(f"{path} is not an `edgevision convert --report` file ({e})") from e
    return variants


def describe(variant: dict) -> str:
    """'int8, QAT 1 epoch' / 'float32, 50 % pruned' from the report's optimisation record."""
    opts = variant.get("optimizations") or {}
    words = [variant["quant"]]
    if "pruned" in opts.get("steps", ()):
        words.append(f"{round(opts['sparsity'] * 100)} % pruned")
    if "clustered" in opts.get("steps", ()):
        words.append(f"{opts.get('clusters')} clusters")
    if "qat" in opts.get("steps", ()):
        epochs = opts.get("qat_epochs")
        words.append(f"QAT {epochs} epoch{'s' if epochs != 1 else ''}")
    if variant.get("tta"):
        words.append(f"{variant['tta']} TTA ({variant.get('tta_views')}x compute)")
    return ", ".join(words)


def _ratio(base, size) -> str:
    return f"{base / size:.2f}x smaller" if base else ""


def rows(name: str, variants: Iterable[dict]) -> List[Tuple[str, ...]]:
    variants = list(variants)
    plain = {v["quant"]: v["gzip_bytes"] for v in variants if not v.get("optimizations") and not v.get("tta")}
    out = []
    for v in variants:
        acc, ref = v.get("accuracy"), v.get("accuracy_float")
        optimised = bool(v.get("optimizations"))
        out.append((
            name,
            describe(v),
            f"{v['bytes'] / 1024:.0f} KB",
            f"{v['gzip_bytes'] / 1024:.0f} KB",
            _ratio(plain.get("float32"), v["gzip_bytes"]) if (optimised or v["quant"] != "float32") else "baseline",
            _ratio(plain.get(v["quant"]), v["gzip_bytes"]) if optimised else "",
            f"{acc * 100:.2f} %" if acc is not None else "",
            f"{(acc - ref) * 100:+.2f} pt" if acc is not None and ref is not None else "",
            f"{v['agreement'] * 100:.2f} %" if v.get("agreement") is not None else "",
        ))
    return out


def markdown(table: List[Tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines)


@click.command()
@click.argument("suites", nargs=-1, required=True, metavar="NAME=FOLDER...")
def main(suites):
    """Print the Markdown table of every convert report in each FOLDER."""
    table = []
    for text in suites:
        name, sep, folder = text.partition("=")
        if not sep:
            raise click.UsageError(f"expected NAME=FOLDER, got {text!r}")
        try:
            table += rows(name, load_variants(Path(folder)))
        except UsageError as e:
            raise click.ClickException(str(e)) from e
    click.echo(markdown(table))


if __name__ == "__main__":
    main()
