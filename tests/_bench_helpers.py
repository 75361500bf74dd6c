"""Helpers for the benchmark tests: a tiny real Keras model converted to a real .tflite file."""

from __future__ import annotations

from pathlib import Path

TINY_SIZE = 32
TINY_CLASSES = ("cat", "dog", "ship")


def build_tiny_models(out_dir: Path) -> dict:
    """A small CNN (32x32x3 -> 3 classes) as model.keras, its float32 .tflite and labels.txt.

    Real TensorFlow conversion (Keras 3: export a SavedModel, then convert it), seconds on a CPU.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((TINY_SIZE, TINY_SIZE, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(TINY_CLASSES), activation="softmax"),
        ]
    )
    model(np.zeros((1, TINY_SIZE, TINY_SIZE, 3), np.float32))
    keras_path = out_dir / "tiny.keras"
    model.save(keras_path)
    saved = out_dir / "saved_model"
    model.export(str(saved), verbose=False)
    tflite = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
    tflite_path = out_dir / "tiny.tflite"
    tflite_path.write_bytes(tflite)
    labels_path = out_dir / "labels.txt"
    labels_path.write_text("\n".join(TINY_CLASSES) + "\n")
    return {"keras": keras_path, "tflite": tflite_path, "labels": labels_path}


# --- a real sshd on 127.0.0.1 for the --remote test ---------------------------------------------------------
SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sshd_unavailable_reason():
    """None if a test sshd can be started here, else why not (the test skips with it)."""
    import os
    import shutil

    if not Path(SSHD).is_file():
        return f"{SSHD} is not installed (apt-get install -y openssh-server openssh-client)"
    for tool in ("ssh", "scp", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y openssh-client)"
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        try:
            Path("/run/sshd").mkdir(mode=0o755)  # sshd's privilege-separation directory, needed as root
        except OSError as e:
            return f"cannot create /run/sshd for sshd: {e.strerror}"
    return None


def start_sshd(work: Path):
    """Start sshd on a free port with a throwaway host key and client key. Returns (proc, ssh_options)."""
    import getpass
    import socket
    import subprocess
    import time

    work.mkdir(parents=True, exist_ok=True)
    host_key, client_key = work / "host_ed25519", work / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (work / "authorized_keys").write_text((work / "client_ed25519.pub").read_text())
    port = free_port()
    host_pub = (work / "host_ed25519.pub").read_text().split()
    (work / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    config = work / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {work / 'authorized_keys'}",
                f"PidFile {work / 'sshd.pid'}",
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {getpass.getuser()}",
                "Subsystem sftp internal-sftp",  # scp speaks SFTP since OpenSSH 9
                "LogLevel ERROR",
            ]
        )
        + "\n"
    )
    log = open(work / "sshd.log", "wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(work / 'sshd.log').read_text()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("sshd did not start listening within 10 s")
    options = {
        "port": port,
        "identity": client_key,
        "options": [f"UserKnownHostsFile={work / 'known_hosts'}", "StrictHostKeyChecking=yes",
                    "GlobalKnownHostsFile=/dev/null"],
        "target": f"{getpass.getuser()}@127.0.0.1",
    }
    return proc, options
