"""`edgevision bench --remote` against a real sshd on 127.0.0.1 (throwaway host key and client key)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from _bench_helpers import sshd_unavailable_reason, start_sshd
from conftest import run_cli

# The "device" is this machine: its edgevision is this venv's, reached by absolute path.
REMOTE_COMMAND = f"{sys.executable} -m edgevision.cli"


def _serve(folder):
    """A loopback sshd for the module's tests, stopped after them."""
    proc, ssh = start_sshd(folder)
    yield ssh
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except Exception:
        proc.kill()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    reason = sshd_unavailable_reason()
    if reason:
        pytest.skip(reason)
    yield from _serve(tmp_path_factory.mktemp("sshd"))


@pytest.fixture(scope="module")
def models(tiny_tflite):
    return tiny_tflite


def _ssh_args(ssh: dict) -> list:
    args = ["--ssh-port", str(ssh["port"]), "--ssh-identity", str(ssh["identity"])]
    for opt in ssh["options"]:
        args += ["--ssh-option", opt]
    return args


def test_remote_bench_over_real_ssh(sshd, models, tmp_path):
    # Two local files with the same name must not overwrite each other on the device.
    other = tmp_path / "copy" / "tiny.tflite"
    other.parent.mkdir()
    other.write_bytes(models["tflite"].read_bytes())
    out = tmp_path / "devices.json"
    proc = run_cli("bench", models["tflite"], other, "--runs", "5", "--warmup", "1", "--remote", sshd["target"],
                   "--local", "--remote-command", REMOTE_COMMAND, *_ssh_args(sshd), "--json", out,
                   "--md", tmp_path / "devices.md")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    target = sshd["target"]
    local_name = data["machine"]["hostname"]
    assert set(data["machines"]) == {local_name, target}
    remote_header = data["machines"][target]
    assert remote_header["cpu"] and remote_header["interpreters"]["ai-edge-litert"]
    rows = data["results"]
    assert sorted(r["device"] for r in rows) == sorted([local_name] * 2 + [target] * 2)
    remote_rows = [r for r in rows if r["device"] == target]
    # Names and paths are the local ones; the device's temporary copies are gone afterwards.
    assert sorted(r["path"] for r in remote_rows) == sorted([str(models["tflite"].resolve()), str(other.resolve())])
    for r in remote_rows:
        assert r["error"] is None and r["latency_ms"]["p50"] > 0 and r["runs"] == 5 and r["peak_rss_mb"] > 0
        assert r["remote_path"] != r["path"] and not Path(r["remote_path"]).exists()
        assert not Path(r["remote_path"]).parent.exists()
    assert f"[{target}] [1/2]" in proc.stderr  # the device's progress, forwarded
    assert f"[{target}] cpu:" in proc.stdout  # both machine headers above the table
    assert any(line.split()[:2] == ["device", "model"] for line in proc.stdout.splitlines() if line.strip())
    assert f"**{target}**" in (tmp_path / "devices.md").read_text()


def test_remote_without_edgevision_says_how_to_fix(sshd, models):
    proc = run_cli("bench", models["tflite"], "--runs", "2", "--warmup", "0", "--remote", sshd["target"],
                   "--remote-command", "/nonexistent/bin/edgevision", *_ssh_args(sshd))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {sshd['target']}: '/nonexistent/bin/edgevision' was not found on the device")
    assert "--remote-command" in lines[-1] and "Traceback" not in proc.stderr


def test_unreachable_device_is_one_line(models, tmp_path):
    from _bench_helpers import free_port

    if sshd_unavailable_reason():
        pytest.skip(sshd_unavailable_reason())
    proc = run_cli("bench", models["tflite"], "--remote", "nobody@127.0.0.1", "--ssh-port", str(free_port()),
                   "--ssh-option", f"UserKnownHostsFile={tmp_path / 'kh'}")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: nobody@127.0.0.1: creating a temporary directory failed") and "ssh" in last


def test_a_hostile_file_name_runs_nothing_on_the_device(sshd, models, tmp_path):
    """scp's legacy protocol (-O) hands the destination to the device's shell: the file name must never get there."""
    import os
    import shutil

    marker = f"edgevision-pwned-{os.getpid()}"  # where the device's shell would create it: its home
    hostile = tmp_path / f"x$(touch {marker}).tflite"
    hostile.write_bytes(models["tflite"].read_bytes())
    wrapper = tmp_path / "bin" / "scp"  # the real scp, forced onto the legacy protocol
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\nexec {shutil.which('scp')} -O \"$@\"\n")
    wrapper.chmod(0o755)
    proc = run_cli("bench", hostile, "--runs", "3", "--warmup", "1", "--remote", sshd["target"],
                   "--remote-command", REMOTE_COMMAND, *_ssh_args(sshd), "--json", tmp_path / "out.json",
                   env={"PATH": f"{wrapper.parent}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    assert not (Path.home() / marker).exists() and not (Path.cwd() / marker).exists()
    (row,) = json.loads((tmp_path / "out.json").read_text())["results"]
    assert row["error"] is None and row["path"] == str(hostile.resolve())


@pytest.fixture(scope="module")
def second_sshd(sshd, tmp_path_factory):
    yield from _serve(tmp_path_factory.mktemp("sshd2"))


def test_a_fleet_runs_at_once_in_one_table_and_a_dead_host_is_marked(sshd, second_sshd, models, tmp_path):
    from _bench_helpers import free_port

    user = sshd["target"].split("@")[0]
    hosts = [f"{user}@127.0.0.1:{sshd['port']}", f"{user}@127.0.0.1:{second_sshd['port']}",
             f"{user}@127.0.0.1:{free_port()}"]  # nothing listens on the third
    known = f"UserKnownHostsFile={sshd['options'][0].split('=', 1)[1]} {second_sshd['options'][0].split('=', 1)[1]}"
    out = tmp_path / "fleet.json"
    proc = run_cli("bench", models["tflite"], "--runs", "5", "--warmup", "1", "--remote", ",".join(hosts[:2]),
                   "--remote", hosts[2], "--remote-command", REMOTE_COMMAND, "--ssh-identity", sshd["identity"],
                   "--ssh-option", f"IdentityFile={second_sshd['identity']}", "--ssh-option", known,
                   "--ssh-option", "StrictHostKeyChecking=yes", "--json", out, "--md", tmp_path / "fleet.md")
    assert proc.returncode == 1, proc.stderr  # one host failed: said, and the others still reported
    data = json.loads(out.read_text())
    by_device = {r["device"]: r for r in data["results"]}
    assert list(by_device) == hosts  # the order given, one row each
    for host in hosts[:2]:
        assert by_device[host]["error"] is None and by_device[host]["latency_ms"]["p50"] > 0
    assert by_device[hosts[2]]["error"].startswith(f"host failed: {hosts[2]}: creating a temporary directory failed")
    assert set(data["machines"]) == set(hosts[:2])
    # The comparison: one line per model, one column per device, the dead one marked.
    lines = proc.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("p50 ms by device"))
    assert lines[head].split()[4:] == hosts
    cells = lines[head + 2].split()
    assert cells[-1] == "failed" and float(cells[-2]) > 0 and float(cells[-3]) > 0
    md = (tmp_path / "fleet.md").read_text()
    assert "| model | " + " | ".join(hosts) + " |" in md
    assert "Traceback" not in proc.stderr


def test_remote_lists_are_parsed_once_in_order():
    from edgevision.benchmarks.fleet import RemoteTarget, parse_remotes
    from edgevision.errors import UsageError

    assert parse_remotes(["pi@a, pi@b", "pi@a", "root@10.0.0.7:2222"]) == (
        RemoteTarget("pi@a", "pi@a"), RemoteTarget("pi@b", "pi@b"), RemoteTarget("root@10.0.0.7:2222", "root@10.0.0.7", 2222))
    for bad in (["pi@a,,pi@b"], ["pi@a:70000"]):
        with pytest.raises(UsageError):
            parse_remotes(bad)


def test_measurement_options_reach_the_device(sshd, models, tmp_path):
    """--profile and --delegate are the device's: its bench profiles, and its own loader judges the library."""
    out = tmp_path / "profiled.json"
    proc = run_cli("bench", models["tflite"], "--runs", "3", "--warmup", "1", "--profile", "--remote", sshd["target"],
                   "--remote-command", REMOTE_COMMAND, *_ssh_args(sshd), "--json", out)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["results"]
    assert row["device"] == sshd["target"] and row["profile"]["by_type"], row.get("profile")
    missing = "/nonexistent/libvendor_delegate.so"
    proc = run_cli("bench", models["tflite"], "--runs", "3", "--warmup", "1", "--delegate", missing,
                   "--remote", sshd["target"], "--remote-command", REMOTE_COMMAND, *_ssh_args(sshd))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"--delegate {missing}: no such file" in last, last
