"""`bench --profile`: per-operator times of the bundled models, in the table, JSON, Markdown and a bar chart.

The correctness property: each operator is timed as a model of its own, so nothing forces their sum to be
the whole invoke; on the bundled models it must land within 10 % of it.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

from edgevision.bundled import BUNDLED

TOLERANCE = 0.10


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    result = run_cli("bench", *BUNDLED, "--profile", "--runs", "100", "--warmup", "10", "--no-overhead-check",
                     "--json", out / "bench.json", "--md", out / "bench.md", "--profile-plot", out / "ops.png")
    assert result.returncode == 0, result.stderr
    return result, json.loads((out / "bench.json").read_text()), out


def test_the_operators_add_up_to_the_whole_invoke(profiled):
    _, report, _ = profiled
    rows = report["results"]
    assert {r["model"] for r in rows} == set(BUNDLED)
    for row in rows:
        p = row["profile"]
        assert p["clock"] == "thread CPU time"  # one thread: other processes' time slices stay out
        total = sum(op["mean_ms"] for op in p["operators"])
        assert total == pytest.approx(p["ops_sum_ms"])
        # The operators plus the one fixed cost of an invoke() call, which the whole model pays once.
        assert 0 < p["fixed_ms"] < p["invoke_ms"]
        whole = total + p["fixed_ms"]
        assert abs(whole - p["invoke_ms"]) <= TOLERANCE * p["invoke_ms"], (row["model"], total, p)


def test_every_operator_of_the_graph_is_timed_and_grouped_by_type(profiled):
    from edgevision.benchmarks.profile import op_names
    from edgevision.convert.flatbuffer import unpack_model

    _, report, _ = profiled
    names = op_names()
    for row in report["results"]:
        model = unpack_model(open(row["path"], "rb").read())
        kinds = [names[max(model.operatorCodes[op.opcodeIndex].builtinCode,
                           model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)]
                 for op in model.subgraphs[0].operators]
        p = row["profile"]
        assert [op["op"] for op in p["operators"]] == kinds
        by_type = p["by_type"]
        assert {t["op"]: t["count"] for t in by_type} == {k: kinds.count(k) for k in set(kinds)}
        assert [t["mean_ms"] for t in by_type] == sorted((t["mean_ms"] for t in by_type), reverse=True)
        assert sum(t["share"] for t in by_type) == pytest.approx(1.0)
        cumulative = [t["cumulative_share"] for t in by_type]
        assert cumulative == sorted(cumulative) and cumulative[-1] == pytest.approx(1.0)
        # Less than the fixed cost of an invoke reads as 0 (an operator faster than the clock can tell apart).
        assert all(op["mean_ms"] >= 0 for op in p["operators"]) and p["ops_sum_ms"] > 0
        # Convolutions are where a CNN's time goes: a profile that said otherwise would be timing the wrong thing.
        assert by_type[0]["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D")


def test_table_markdown_and_chart_have_the_columns(profiled):
    result, report, out = profiled
    header = "op type  count  mean ms   share  cumulative"
    assert result.stdout.count("op type") == len(BUNDLED)
    assert any(line.split() == header.split() for line in result.stdout.splitlines())
    for row in report["results"]:
        assert f"operators of {row['model']} (threads=1" in result.stdout
    md = (out / "bench.md").read_text()
    assert md.count("| op type | count | mean ms | share | cumulative |") == len(BUNDLED)
    png = (out / "ops.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_a_profile_that_cannot_run_is_reported_on_its_row(tmp_path):
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro is not installed")
    result = run_cli("bench", "cifar10-cnn", "--backend", "tflite-micro", "--profile", "--runs", "2")
    assert result.returncode != 0  # the model itself cannot load on TFLite Micro: the row says why
    assert "2 images per invoke" in result.stdout


def test_summarize_shares_and_order():
    from edgevision.benchmarks.profile import summarize

    s = summarize(["CONV_2D", "ADD", "CONV_2D", "SOFTMAX"], [2.0, 0.5, 1.0, 0.5], 4.2, "wall clock", 10)
    assert [t["op"] for t in s["by_type"]] == ["CONV_2D", "ADD", "SOFTMAX"]  # ties by name
    assert s["by_type"][0] == {"op": "CONV_2D", "count": 2, "mean_ms": 3.0, "share": 0.75, "cumulative_share": 0.75}
    assert s["ops_sum_ms"] == 4.0 and s["ops_sum_ratio"] == pytest.approx(4.0 / 4.2)
