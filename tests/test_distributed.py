"""Data-parallel training for real on this CPU, on the JAX backend: two virtual devices in one process, and two
processes on loopback joined by jax.distributed, each with one CPU device.

The expensive parts run once per module (one process training a 1-device and a 2-device run, and one pair of
processes training together); the tests then read what they left.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from _data_helpers import make_image_folder, python_cmd, run_main

pytest.importorskip("jax")

pytestmark = pytest.mark.slow

ARGS = dict(arch="cnn", epochs=1, batch_size=12, seed=3, val_split=0.25, cutout=0)
PER_CLASS = 16  # 3 classes: 36 training images (3 steps of 12: one step shape, one compilation), 12 validation
ENV = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", "EDGEVISION_NO_PROGRESS": "1",
       "JAX_PLATFORMS": "cpu"}

# One process, two virtual CPU devices: the same run on one of them and on both.
_SAME_RUN_TWICE = """
import json, sys
from edgevision.train.trainer import TrainSettings, train
args = json.loads(sys.argv[1])
for devices in ("1", "2"):
    train(TrainSettings(data=sys.argv[2], out=sys.argv[3] + devices, devices=devices, **args), verbose=0)
"""


def _history(run: Path):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    make_image_folder(root / "data", ("cat", "dog", "fox"), per_class=PER_CLASS, size=(32, 32))
    # One after the other: the two hosts' collectives wait for each other, so they are slowed down far more than
    # their share when a third process competes for the two cores.
    hosts = _two_hosts(root)
    for proc in hosts:
        log = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, log[-3000:]
        proc.log = log
    env2 = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    single = subprocess.run([sys.executable, "-c", _SAME_RUN_TWICE, json.dumps(ARGS), str(root / "data"),
                             str(root / "devices")], env=env2, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    return root, hosts


def _two_hosts(root: Path):
    """`edgevision train` twice, as two hosts would run it; host 1 is given its own --out, which it must not
    write (only host 0 writes the run directory)."""
    port = _free_port()
    common = ["train", "cnn", "--data", str(root / "data"), "--epochs", ARGS["epochs"],
              "--batch-size", ARGS["batch_size"], "--seed", ARGS["seed"], "--val-split", ARGS["val_split"],
              "--cutout", 0, "--coordinator", f"127.0.0.1:{port}", "--num-hosts", 2]
    procs = []
    for index in (0, 1):
        cmd = python_cmd(*common, "--host-index", index, "--out", root / f"host{index}")
        procs.append(subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def test_two_devices_train_as_one_with_the_same_global_batch(runs):
    root, _ = runs
    one, two = _history(root / "devices1"), _history(root / "devices2")
    record = json.loads((root / "devices2" / "run.json").read_text())
    assert record["devices"] == {"count": 2, "hosts": 1, "global_batch": ARGS["batch_size"]}
    assert json.loads((root / "devices1" / "run.json").read_text())["devices"]["count"] == 1
    for key in ("loss", "accuracy", "val_loss"):
        assert float(two[0][key]) == pytest.approx(float(one[0][key]), rel=2e-3, abs=2e-4), key
    assert (root / "devices2" / "model.keras").is_file()


def test_two_hosts_train_one_model_and_host_0_alone_writes(runs):
    root, hosts = runs
    assert not (root / "host1").exists(), "host 1 wrote a run directory"
    record = json.loads((root / "host0" / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["devices"] == {"count": 2, "hosts": 2, "global_batch": ARGS["batch_size"]}
    assert (root / "host0" / "model.keras").is_file()
    assert "host 0 wrote the run directory" in hosts[1].log
    # Two hosts with one device each compute what one host with two devices does: the same global batches.
    together, alone = _history(root / "host0"), _history(root / "devices2")
    assert float(together[0]["loss"]) == pytest.approx(float(alone[0]["loss"]), rel=2e-3, abs=2e-4)


@pytest.mark.parametrize("args, needle", [
    (("--devices", "two"), "--devices must be a number"),
    (("--devices", "0"), "--devices must be a number"),
    (("--coordinator", "127.0.0.1:1"), "go together"),
    (("--coordinator", "nowhere", "--num-hosts", 2, "--host-index", 0), "HOST:PORT"),
    (("--coordinator", "127.0.0.1:1", "--num-hosts", 2, "--host-index", 2), "--host-index must be between 0 and 1"),
])
def test_bad_device_and_host_options_are_one_line_errors(tmp_path, args, needle):
    result = run_main("train", "cnn", "--data", tmp_path / "nothing", "--out", tmp_path / "run", *args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert not (tmp_path / "run").exists()
