"""The README's conversion table is generated from convert reports: check the ratios and labels it derives."""

from __future__ import annotations

import json

import pytest

from edgevision.benchmarks.maintainer.conversion_table import describe, load_variants, markdown, rows
from edgevision.errors import UsageError


def variant(quant, gzip_bytes, accuracy=0.9, optimizations=None):
    return {"quant": quant, "bytes": gzip_bytes + 100, "gzip_bytes": gzip_bytes, "accuracy": accuracy,
            "accuracy_float": 0.9, "agreement": 0.99, "optimizations": optimizations or {}}


def test_pruned_variants_are_compared_like_for_like(tmp_path):
    pruned = {"steps": ["pruned"], "sparsity": 0.5, "fine_tune_epochs": 1}
    (tmp_path / "report-pruned.json").write_text(json.dumps({"variants": [variant("int8", 750, 0.88, pruned)]}))
    (tmp_path / "report.json").write_text(json.dumps({"variants": [variant("float32", 4000), variant("int8", 1000)]}))
    table = rows("cnn", load_variants(tmp_path))
    assert [r[1] for r in table] == ["float32", "int8", "int8, 50 % pruned"]  # report.json first
    assert table[1][4] == "4.00x smaller" and table[1][5] == ""
    assert table[2][4] == "5.33x smaller" and table[2][5] == "1.33x smaller"  # vs float32, vs plain int8
    assert table[2][7] == "-2.00 pt"
    assert markdown(table).count("\n") == 4


def test_tta_variants_are_labelled_and_never_taken_for_the_plain_baseline(tmp_path):
    tta = {"variants": [variant("int8", 990, 0.91)], "test_time_augmentation": {"mode": "flip", "views": 2}}
    (tmp_path / "report-tta.json").write_text(json.dumps(tta))
    (tmp_path / "report.json").write_text(json.dumps({"variants": [variant("float32", 4000), variant("int8", 1000)]}))
    table = rows("cnn", load_variants(tmp_path))
    assert [r[1] for r in table] == ["float32", "int8", "int8, flip TTA (2x compute)"]
    assert table[1][4] == "4.00x smaller" and table[2][4] == "4.04x smaller"
    assert table[2][6] == "91.00 %"


def test_describe_names_every_optimisation():
    v = variant("int8", 1, optimizations={"steps": ["pruned", "qat"], "sparsity": 0.5, "qat_epochs": 2})
    assert describe(v) == "int8, 50 % pruned, QAT 2 epochs"


def test_a_folder_without_reports_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="no convert reports"):
        load_variants(tmp_path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UsageError, match="not an `edgevision convert --report` file"):
        load_variants(tmp_path)
