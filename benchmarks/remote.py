"""`edgevision bench --remote user@host`: measure on a device over SSH and bring the numbers home.

The device needs only `edgevision[edge]` and an SSH server. The models (and an --e2e video file or an --eval
folder, when they are local files) are copied with scp into a fresh temporary directory on the device, the
device's own `edgevision bench --json -` runs there (so the numbers come from the device's interpreter, in the
device's child processes), its JSON comes back on stdout, and the temporary directory is removed. Results are
tagged with the device's name and machine header, so one table compares devices.

SSH runs with BatchMode (never a password prompt that would hang a script) and the user's own configuration
(~/.ssh/config, agent, known_hosts); --ssh-port, --ssh-identity and --ssh-option cover the rest.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edgevision.errors import DependencyError, EdgeVisionError, UsageError

#: ssh's own exit status for "could not connect / authenticate".
SSH_FAILED = 255
#: A POSIX shell's exit status for "command not found".
COMMAND_NOT_FOUND = 127


#: The device's progress lines ("[2/6] model.tflite threads=2: ..."), forwarded as they arrive.
PROGRESS_LINE = re.compile(r"^\[\d+/\d+\] ")


class RemoteError(EdgeVisionError):
    """The device could not be reached, or its edgevision could not run the benchmark."""


@dataclass(frozen=True)
class RemoteSettings:
    #: How to start edgevision on the device (a shell word list: "edgevision", "~/venv/bin/edgevision",
    #: "python3 -m edgevision.cli").
    command: str = "edgevision"
    port: Optional[int] = None
    identity: Optional[str] = None
    #: Extra `-o KEY=VALUE` options for ssh and scp.
    options: Tuple[str, ...] = ()
    connect_timeout_s: int = 15

    def __post_init__(self):
        if not self.command.strip():
            raise UsageError("--remote-command must not be empty; e.g. 'edgevision' or 'python3 -m edgevision.cli'")
        if self.port is not None and not 0 < self.port < 65536:
            raise UsageError(f"--ssh-port must be between 1 and 65535, got {self.port}")
        if self.identity is not None and not Path(self.identity).expanduser().is_file():
            raise UsageError(f"--ssh-identity {self.identity}: no such key file")
        for opt in self.options:
            if "=" not in opt and " " not in opt:
                raise UsageError(f"--ssh-option takes KEY=VALUE (as ssh -o does), got {opt!r}")


def _common_options(ssh: RemoteSettings) -> List[str]:
    opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={ssh.connect_timeout_s}"]
    if ssh.identity:
        opts += ["-i", str(Path(ssh.identity).expanduser())]
    for opt in ssh.options:
        opts += ["-o", opt]
    return opts


def ssh_command(target: str, remote_cmd: str, ssh: RemoteSettings) -> List[str]:
    port = ["-p", str(ssh.port)] if ssh.port else []
    return ["ssh", *port, *_common_options(ssh), "--", target, remote_cmd]


def scp_command(sources: Sequence[str], destination: str, ssh: RemoteSettings, recursive: bool = False) -> List[str]:
    port = ["-P", str(ssh.port)] if ssh.port else []
    return ["scp", "-q", *(["-r"] if recursive else []), *port, *_common_options(ssh), "--", *sources, destination]


def _check_target(target: str) -> None:
    if not target or target.startswith("-") or any(c.isspace() for c in target):
        raise UsageError(f"--remote takes user@host or host (an ssh destination), got {target!r}")


def _require_tools() -> None:
    missing = [tool for tool in ("ssh", "scp") if shutil.which(tool) is None]
    if missing:
        raise DependencyError(
            f"--remote needs the OpenSSH client ({' and '.join(missing)} not found on PATH); install it, e.g. "
            "apt-get install openssh-client"
        )


def _run(cmd: List[str], what: str, target: str, timeout_s: float) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise RemoteError(f"{target}: {what} did not finish within {timeout_s:g} s") from e
    if proc.returncode != 0:
        raise RemoteError(f"{target}: {what} failed: {_ssh_reason(proc.stderr, proc.returncode)}")
    return proc


def _ssh_reason(stderr: str, returncode: int) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
    reason = lines[-1] if lines else f"exit status {returncode}"
    if returncode == SSH_FAILED:
        reason += " (check the address, --ssh-port, --ssh-identity and that key login works: ssh USER@HOST true)"
    return reason


def bench_arguments(settings, remote_models: Sequence[str], e2e: Optional[str], eval_dir: Optional[str],
                    labels: Optional[str] = None) -> List[str]:
    """The `edgevision bench` arguments the device runs: the same settings, JSON on stdout, no progress."""
    args = ["bench", "--json", "-", "--threads", ",".join(map(str, settings.threads)),
            "--warmup", str(settings.warmup), "--runs", str(settings.runs), "--backend", settings.backend,
            "--timeout", str(settings.timeout_s)]
    if not settings.compare_bare:
        args.append("--no-overhead-check")
    if settings.trusted:
        args.append("--trusted")
    if e2e is not None:
        args += ["--e2e", e2e, "--e2e-frames", str(settings.e2e_frames)]
    if eval_dir is not None:
        args += ["--eval", eval_dir]
        if settings.eval_limit:
            args += ["--eval-limit", str(settings.eval_limit)]
    if labels is not None:
        args += ["--labels", labels]
    return args + device_options(settings) + ["--"] + list(remote_models)


def device_options(settings) -> List[str]:
    """The options that shape the measurement itself, as the device's bench takes them. A --delegate library
    is the device's: its path is the device's path, checked there."""
    args = []
    if settings.delegate:
        args += ["--delegate", str(settings.delegate)]
    if settings.arena_size:
        args += ["--arena-size", str(settings.arena_size)]
    if settings.profile:
        args.append("--profile")
    if settings.accelerator:
        args += ["--accelerator", settings.accelerator]
    return args


def run_remote(target: str, specs, settings, ssh: RemoteSettings, progress: Optional[Callable[[str], None]] = None,
               label: Optional[str] = None):
    """Measure `specs` (runner.ModelSpec, .tflite only) on `target` and return a runner.Report tagged with it.

    `label` names the device in messages and rows (default: `target`; `pi@board:2222` for a port given inline).
    """
    from edgevision.benchmarks.runner import Report

    _check_target(target)
    who = label or target
    _require_tools()
    say = progress or (lambda _m: None)
    if any(spec.kind != "tflite" for spec in specs):
        raise UsageError("--remote measures .tflite files only (a device has no TensorFlow); drop --compare-tf "
                         "and Keras models from the command")
    timeout = ssh.connect_timeout_s + 60
    say(f"[{who}] connecting")
    proc = _run(ssh_command(target, "mktemp -d \"${TMPDIR:-/tmp}/edgevision-bench.XXXXXX\"", ssh),
                "creating a temporary directory", who, timeout)
    remote_dir = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if not _SAFE_REMOTE_PATH.fullmatch(remote_dir):
        raise RemoteError(f"{who}: mktemp -d returned {remote_dir!r}, not a plain absolute directory path")
    try:
        # Fixed names on the device: scp's legacy protocol hands the destination to the device's shell, so no
        # text of the user's (a file name like `x$(id).tflite`) may reach it; the table gets the names back.
        names = {f"model{i:02d}.tflite": spec for i, spec in enumerate(specs)}
        copy_timeout = max(timeout, settings.timeout_s)
        say(f"[{who}] copying {len(names)} model(s) to {remote_dir}")
        for name, spec in names.items():
            _run(scp_command([str(spec.path)], f"{target}:{remote_dir}/{name}", ssh), f"copying {spec.label}",
                 who, copy_timeout)
        e2e = _copy_optional(target, who, remote_dir, settings.e2e_source, "e2e", ssh, copy_timeout, say)
        eval_dir = _copy_optional(target, who, remote_dir, settings.eval_dir, "eval", ssh, copy_timeout, say)
        labels = _copy_optional(target, who, remote_dir, settings.labels, "labels", ssh, copy_timeout, say)
        args = bench_arguments(settings, [f"{remote_dir}/{n}" for n in names], e2e, eval_dir, labels)
        # Device-side names -> the user's: copies first (longest), then the index-prefixed model names.
        renames = {remote: str(local) for remote, local in ((e2e, settings.e2e_source),
                   (eval_dir, settings.eval_dir), (labels, settings.labels)) if remote and remote != str(local)}
        renames.update({f"{remote_dir}/{n}": spec.label for n, spec in names.items()})
        renames.update({n: spec.label for n, spec in names.items()})
        localize = _localizer(renames)
        remote_cmd = f"cd {shlex.quote(remote_dir)} && {ssh.command} " + " ".join(shlex.quote(a) for a in args)
        say(f"[{who}] running: {ssh.command} bench ...")
        data = _run_bench(who, ssh_command(target, remote_cmd, ssh), ssh, lambda m: say(localize(m)),
                          _bench_timeout(specs, settings))
    finally:
        subprocess.run(ssh_command(target, f"rm -rf {shlex.quote(remote_dir)}", ssh), capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    report = _tag(Report.from_dict(data), who, names, localize)
    report.settings = settings.to_dict()  # the user's paths, not the device's temporary copies
    return report


#: What a device path built here may hold: mktemp's output and the fixed names, nothing a shell would expand.
_SAFE_REMOTE_PATH = re.compile(r"/[A-Za-z0-9_./-]+")


def _safe_suffix(path: Path) -> str:
    """The extension (".mp4") when it is plain letters and digits, which tells the device's reader the format."""
    return path.suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", path.suffix) else ""


def _bench_timeout(specs, settings) -> float:
    per_model = len(settings.threads) * (1 + (settings.e2e_source is not None)) + (4 if settings.eval_dir else 0)
    return 60 + len(specs) * per_model * settings.timeout_s


def _copy_optional(target, who, remote_dir, local, name, ssh, timeout, say) -> Optional[str]:
    """Copy a local --e2e file / --eval folder to the device; a camera index or URL is passed through."""
    if local is None:
        return None
    path = Path(local).expanduser()
    if not path.exists():
        return str(local)  # "0", "rtsp://...": the device's own camera or stream
    say(f"[{who}] copying {path}")
    dest = f"{remote_dir}/{name}{_safe_suffix(path)}"  # a fixed name, like the models'
    _run(scp_command([str(path)], f"{target}:{dest}", ssh, recursive=path.is_dir()), f"copying {path}", who,
         timeout)
    return dest


def _run_bench(target: str, cmd: List[str], ssh: RemoteSettings, say, timeout_s: float) -> Dict:
    """Run the device's bench; stream its stderr as progress; parse the JSON it prints on stdout."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True)
    err_lines: List[str] = []

    def pump():
        for line in proc.stderr:  # type: ignore[union-attr]
            line = line.rstrip("\n")
            err_lines.append(line)
            if PROGRESS_LINE.match(line):
                say(f"[{target}] {line}")

    out_chunks: List[str] = []

    def collect():
        out_chunks.append(proc.stdout.read())  # type: ignore[union-attr]

    # Both pipes drained at once, so neither can fill up and stall the device's process.
    readers = [threading.Thread(target=pump, daemon=True), threading.Thread(target=collect, daemon=True)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        proc.kill()
        proc.wait()
        raise RemoteError(f"{target}: the benchmark did not finish within {timeout_s:g} s") from e
    for reader in readers:
        reader.join(timeout=10)
    out = "".join(out_chunks)
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and "results" in data:
        return data  # exit status 1 only means some model failed; its row says why
    stderr = "\n".join(err_lines)
    if proc.returncode == COMMAND_NOT_FOUND:
        raise RemoteError(
            f"{target}: {ssh.command!r} was not found on the device (non-interactive shells have a short PATH); "
            "install edgevision[edge] there, or pass --remote-command with the full path, e.g. "
            "'~/venv/bin/edgevision' or 'python3 -m edgevision.cli'"
        )
    raise RemoteError(f"{target}: the device's benchmark failed: {_ssh_reason(stderr, proc.returncode)}")


def _localizer(renames: Dict[str, str]) -> Callable[[str], str]:
    order = sorted(renames, key=len, reverse=True)

    def localize(text: str) -> str:
        for remote in order:
            text = text.replace(remote, renames[remote])
        return text

    return localize


def _tag(report, target: str, names: Dict[str, object], localize: Callable[[str], str] = lambda t: t):
    """Rows and header from the device, with local model names and paths, labelled with `target`."""
    for row in report.results:
        for key in ("error", "accuracy_source"):
            if isinstance(row.get(key), str):
                row[key] = localize(row[key])
        remote_path = str(row.get("path", ""))
        spec = names.get(Path(remote_path).name)
        row["remote_path"] = remote_path
        if spec is not None:
            row["model"] = spec.label
            row["path"] = str(spec.path)
        row["device"] = target
    report.machines = {target: report.machine}
    report.notes = [f"{target}: {localize(n)}" for n in report.notes]
    return report


def merge_reports(reports: Sequence) -> object:
    """One report over several devices: results in order, every device's header under `machines`."""
    from edgevision.benchmarks.runner import Report

    first = reports[0]
    merged = Report(machine=first.machine, settings=first.settings, results=[], machines={}, notes=[])
    for rep in reports:
        merged.results += rep.results
        merged.machines.update(rep.machines)
        merged.notes += rep.notes
    return merged
