"""The options several commands share are one definition each (edgevision/options.py): the same name, default,
check and message everywhere, and the old spellings still work (issue 22)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest

from conftest import run_cli
from edgevision import options
from edgevision.bundled import CIFAR10_MODELS
from edgevision.cli import COMMANDS, cli
from edgevision.samples import SAMPLES_DIR

PHOTO = SAMPLES_DIR / "chelsea.jpg"  # a shipped photo: no ../shared needed
CIFAR10_LABELS = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
MODEL_COMMANDS = ("classify", "predict", "evaluate", "bench", "convert")


def command(name: str) -> click.Command:
    return cli.get_command(click.Context(cli), name)


def param(cmd: click.Command, opt: str) -> click.Parameter:
    (found,) = [p for p in cmd.params if opt in p.opts]
    return found


def error_lines(proc) -> list:
    assert "Traceback" not in proc.stderr
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


# --- one definition: what the commands are built from --------------------------------------------------------
def test_every_command_that_takes_a_model_takes_it_first_and_positionally():
    for name in MODEL_COMMANDS:
        first = command(name).params[0]
        assert isinstance(first, click.Argument) and first.make_metavar(click.Context(command(name))).strip(
            "[]").startswith("MODEL"), name
    assert not command("classify").params[0].required  # the general model is its default
    assert param(command("classify"), "--model").opts == ["--model", "-m"]  # the old spelling stays


def test_top_k_has_one_default_everywhere():
    for name in ("classify", "predict"):
        top_k = param(command(name), "--top-k")
        assert top_k.default == options.DEFAULT_TOP_K and top_k.type is click.INT, name


def test_threads_is_one_type_and_labels_one_check():
    for name in ("classify", "predict", "evaluate", "bench", "ui"):
        threads = param(command(name), "--threads")
        assert isinstance(threads.type, options.PositiveInts), name
        assert threads.type.many == (name == "bench"), name  # only bench measures several counts
    for name in ("classify", "predict", "evaluate", "bench", "convert"):
        assert param(command(name), "--labels").callback is options._existing_file, name
    for name in ("classify", "bench"):
        assert tuple(param(command(name), "--backend").type.choices) == options.BACKEND_CHOICES


def test_the_threads_parser_takes_one_count_or_a_list():
    assert options.parse_positive_ints("4", many=False) == (4,)
    assert options.parse_positive_ints(" 1, 2,4 ") == (1, 2, 4)
    for bad, many in (("0", False), ("1,2", False), ("x", False), ("", True), ("1,-2", True), ("two", True)):
        with pytest.raises(options.UsageError, match="--threads must be"):
            options.parse_positive_ints(bad, many=many)


def test_two_different_models_for_classify_are_refused():
    assert options.pick_model("a", None, "d") == "a" and options.pick_model(None, "b", "d") == "b"
    assert options.pick_model(None, None, "d") == "d" and options.pick_model("a", "a", "d") == "a"
    with pytest.raises(options.UsageError, match="two models given"):
        options.pick_model("a", "b", "d")


# --- through the real CLI -------------------------------------------------------------------------------------
def classify_json(*args) -> list:
    proc = run_cli("classify", *args, "--source", PHOTO, "--headless", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_classify_takes_the_model_positionally_or_as_the_old_option():
    model = CIFAR10_MODELS[-1]
    runs = [classify_json(model), classify_json("--model", model), classify_json("-m", model)]
    assert all(len(frames) == 1 for frames in runs)
    tops = [[t["label"] for t in frames[0]["top"]] for frames in runs]
    assert tops[0] == tops[1] == tops[2] and set(tops[0]) <= CIFAR10_LABELS
    default = [t["label"] for t in classify_json()[0]["top"]]  # neither: the general (ImageNet) model
    assert len(default) == options.DEFAULT_TOP_K and not set(default) & CIFAR10_LABELS


def test_classify_and_predict_report_the_same_top_k_by_default():
    model = CIFAR10_MODELS[-1]
    frame = classify_json(model)[0]
    proc = run_cli("predict", model, PHOTO, "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    (pred,) = json.loads(proc.stdout)
    assert len(frame["top"]) == len(pred["top"]) == options.DEFAULT_TOP_K
    assert [t["label"] for t in frame["top"]] == [t["label"] for t in pred["top"]]


def test_two_models_for_classify_is_one_line(tmp_path):
    proc = run_cli("classify", "cifar10-cnn", "--model", "cifar10-mobilenetv2", "--source", PHOTO, timeout=60)
    assert proc.returncode == 2 and error_lines(proc) == [
        "error: two models given ('cifar10-cnn' and --model 'cifar10-mobilenetv2'); give one"]


@pytest.mark.parametrize("value", ["0", "x", "1,2"])
def test_a_bad_thread_count_is_the_same_one_line_error_everywhere(value):
    expected = f"error: --threads must be one positive integer, such as 4; got {value!r}"
    for args in (("classify", "cifar10-cnn", "--source", PHOTO), ("predict", "cifar10-cnn", PHOTO),
                 ("evaluate", "cifar10-cnn", "--data", SAMPLES_DIR)):
        proc = run_cli(*args, "--threads", value, timeout=60)
        assert proc.returncode == 2 and error_lines(proc) == [expected], (args, proc.stderr)


def test_bench_takes_a_list_of_thread_counts_with_the_same_check():
    proc = run_cli("bench", "cifar10-cnn", "--threads", "1,0", timeout=60)
    assert proc.returncode == 2 and error_lines(proc) == [
        "error: --threads must be positive integers separated by commas, such as 1,2,4; got '1,0'"]


def test_a_missing_labels_file_is_the_same_one_line_error_everywhere(tmp_path):
    missing = tmp_path / "labels.txt"
    for args in (("classify", "cifar10-cnn", "--source", PHOTO), ("predict", "cifar10-cnn", PHOTO),
                 ("evaluate", "cifar10-cnn", "--data", SAMPLES_DIR), ("bench", "cifar10-cnn"),
                 ("convert", tmp_path / "model.keras")):
        proc = run_cli(*args, "--labels", missing, timeout=60)
        assert proc.returncode == 2 and error_lines(proc) == [f"error: --labels {missing}: no such file"], args


def complete(*words: str) -> list:
    env = {**os.environ, "COMP_WORDS": " ".join(("edgevision",) + words), "COMP_CWORD": str(len(words)),
           "_EDGEVISION_COMPLETE": "bash_complete"}
    proc = subprocess.run([sys.executable, "-m", "edgevision.cli"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [tuple(line.split(",", 1)) for line in proc.stdout.splitlines()]


def test_shell_completion_offers_commands_options_and_bundled_model_names():
    assert ("plain", "classify") in complete("cl")
    assert ("plain", "--top-k") in complete("predict", "--to")
    for words in (("predict", "cifar"), ("classify", "--model", "cifar"), ("bench", "cifar10-cnn", "cifar")):
        items = complete(*words)
        assert {("plain", m) for m in CIFAR10_MODELS} <= set(items), words
        assert ("plain", "imagenet-mobilenetv2") not in items and items[0][0] == "file", words


def test_the_completion_script_is_what_the_readme_says():
    for shell in ("bash", "zsh", "fish"):
        proc = subprocess.run([sys.executable, "-m", "edgevision.cli"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "_EDGEVISION_COMPLETE": f"{shell}_source"})
        assert proc.returncode == 0 and "_EDGEVISION_COMPLETE" in proc.stdout, shell
    readme = (SAMPLES_DIR.parents[1] / "README.md").read_text()
    assert 'eval "$(_EDGEVISION_COMPLETE=bash_source edgevision)"' in readme
