"""Issue 19, hostile and faulty inputs: every hostile file is made here, by the test.

Full and read-only disks are small tmpfs mounts (skipped, saying why, where mounting is not allowed).
Readers that used to hang or run out of memory are run in a child process with a time limit and an address
space cap, so that a regression fails the test instead of the machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgevision.atomic import TMP_MARK, write_bytes
from edgevision.edge_runtime.images import decode_image, read_image
from edgevision.edge_runtime.recording import VideoSink
from edgevision.errors import EdgeVisionError, ImageError, ModelError, UsageError, WriteError

REPO = Path(__file__).resolve().parents[1]


# --- helpers -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` for the test, or skip saying why it cannot be."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("needs root on Linux to mount a small tmpfs (full and read-only disks)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


def fill(folder: Path) -> None:
    """Write until the file system holding `folder` is full."""
    with open(folder / "filler", "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()


def frames(n: int, size=(240, 320), seed=0):
    rng = np.random.default_rng(seed)  # noise: MPEG-4 cannot squeeze it, so a few MB of disk fill up
    return [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(n)]


def save_video(path: Path, images, fps=25.0) -> Path:
    sink = VideoSink(path, fps=fps)
    for image in images:
        sink.write(image)
    return sink.close()


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def run_hostile(script: str, timeout: float = 60, address_space: int = 3 << 30) -> dict:
    """Run `script` in a child with a time limit and an address-space cap; it prints one JSON object."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, cwd=REPO.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - started < 30, "the issue's bound: every hostile input answered within 30 s"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- 1. a full disk never destroys a saved video ----------------------------------------------------------
@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv"])
def test_full_disk_keeps_the_earlier_video(tmp_path, suffix):
    with tmpfs(tmp_path / "disk", "3m") as disk:
        target = disk / f"out{suffix}"
        save_video(target, frames(5, (48, 64)))
        good = target.read_bytes()
        with pytest.raises(WriteError) as caught:
            save_video(target, frames(300))  # about 9 MB of noise for a 3 MB disk
        message = str(caught.value)
        assert str(target) in message and "disk is full" in message and "earlier" in message
        assert "\n" not in message
        assert target.read_bytes() == good, "the earlier video was replaced"
        assert leftovers(disk) == [], "the partial temporary video was left behind"


def test_classify_save_on_a_full_disk_fails_and_keeps_the_earlier_video(tmp_path):
    """The issue's case, through the CLI: `classify --save` used to exit 0 saying "saved N frames"."""
    clip = save_video(tmp_path / "clip.avi", frames(120))  # noise: the annotated copy needs about 4 MB
    with tmpfs(tmp_path / "disk", "2m") as disk:
        target = disk / "annotated.mp4"
        save_video(target, frames(3, (48, 64)))
        good = target.read_bytes()
        proc = subprocess.run([sys.executable, "-m", "edgevision.cli", "classify", "--model", "cifar10-cnn",
                               "--source", str(clip), "--headless", "--save", str(target)],
                              capture_output=True, text=True, timeout=300, cwd=REPO.parent,
                              env={**os.environ, "EDGEVISION_DEBUG": ""})
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-2000:]
        assert f"cannot save the video {target}" in errors[0] and "disk is full" in errors[0]
        assert "saved" not in proc.stderr.replace("cannot save", "")
        assert target.read_bytes() == good
        assert leftovers(disk) == []


def test_already_full_disk_fails_before_the_run(tmp_path):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        target = disk / "out.mp4"
        save_video(target, frames(3, (48, 64)))
        good = target.read_bytes()
        fill(disk)
        with pytest.raises(WriteError, match="is full"):
            VideoSink(target, fps=25)  # before any frame is classified
        assert target.read_bytes() == good


def test_read_only_disk_keeps_the_earlier_video_and_says_so(tmp_path):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        target = disk / "out.mp4"
        save_video(target, frames(3, (48, 64)))
        good = target.read_bytes()
        remount_read_only(disk)
        with pytest.raises(EdgeVisionError) as caught:
            save_video(target, frames(3, (48, 64)))
        assert str(target) in str(caught.value) and "not writable" in str(caught.value)
        assert target.read_bytes() == good


def test_video_check_accepts_every_container(tmp_path):
    """The written-file check must not refuse good videos (one frame, a few, many; each container)."""
    for suffix in (".mp4", ".m4v", ".mov", ".avi", ".mkv"):
        for n in (1, 2, 40):
            target = tmp_path / f"v{n}{suffix}"
            assert save_video(target, frames(n, (48, 64), seed=n)) == target
            import cv2

            capture = cv2.VideoCapture(str(target))
            assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == n
            capture.release()


# --- 11. late and temporary-file-naming errors; leftovers -------------------------------------------------
def test_atomic_write_on_a_read_only_disk_names_the_target(tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        target = disk / "model.tflite"
        write_bytes(target, b"good model")
        remount_read_only(disk)
        with pytest.raises(WriteError) as caught:
            write_bytes(target, b"new model")
        message = str(caught.value)
        assert message.startswith(f"cannot write {target}: the file system is read-only")
        assert "unchanged" in message and TMP_MARK not in message and ".model.tflite." not in message
        assert isinstance(caught.value, OSError)  # callers that tolerate a failed write still catch it
        assert target.read_bytes() == b"good model"


def test_outputs_can_be_checked_before_a_long_run(tmp_path):
    from edgevision.atomic import check_writable

    check_writable(tmp_path / "sub" / "model.tflite")  # fine: creates the folder, leaves no file
    assert leftovers(tmp_path / "sub") == []
    with tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk)
        with pytest.raises(WriteError, match=f"cannot write {disk / 'model.tflite'}: the disk is full"):
            check_writable(disk / "model.tflite")
        (disk / "filler").unlink()
        remount_read_only(disk)
        with pytest.raises(WriteError, match="read-only"):
            check_writable(disk / "model.tflite")


def test_atomic_write_on_a_full_disk_names_the_target(tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        target = disk / "report.json"
        write_bytes(target, b"{}")
        with pytest.raises(WriteError) as caught:
            write_bytes(target, b"x" * (3 << 20))
        assert str(caught.value).startswith(f"cannot write {target}: the disk is full")
        assert target.read_bytes() == b"{}"
        assert leftovers(disk) == []


KILLED_SAVE = """
import os, signal, sys
import numpy as np
from edgevision.edge_runtime.recording import VideoSink
sink = VideoSink(sys.argv[1], fps=25)
for i in range(5):
    sink.write(np.full((48, 64, 3), 40 * i, np.uint8))
os.kill(os.getpid(), signal.SIGKILL)  # as a kill -9 or the OOM killer would, mid-save
"""


def test_a_killed_save_leaves_no_temporary_video_after_the_next_run(tmp_path):
    target = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(target)], capture_output=True, timeout=120,
                          cwd=REPO.parent)
    assert proc.returncode == -signal.SIGKILL
    stale = leftovers(tmp_path)
    assert len(stale) == 1 and TMP_MARK in stale[0] and not target.exists()
    # A live process's temporary file in the same folder must survive the clean-up.
    live = tmp_path / f".other.mp4.{TMP_MARK}{os.getpid()}.abc.mp4"
    live.write_bytes(b"in progress")
    save_video(target, frames(2, (48, 64)))
    assert leftovers(tmp_path) == [live.name]
    assert target.is_file()


def test_stale_export_folders_of_killed_conversions_are_removed(tmp_path, monkeypatch):
    from edgevision.convert.quantize import EXPORT_PREFIX, remove_stale_exports

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f"{EXPORT_PREFIX}{dead_pid}-abc123"
    (stale / "saved_model" / "variables").mkdir(parents=True)
    (stale / "saved_model" / "saved_model.pb").write_bytes(b"x" * 1000)
    mine = tmp_path / f"{EXPORT_PREFIX}{os.getpid()}-def456"
    mine.mkdir()
    unrelated = tmp_path / "edgevision-export-notapid"
    unrelated.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert remove_stale_exports() == [stale]
    assert not stale.exists() and mine.is_dir() and unrelated.is_dir()


# --- 3. paths that are not regular files of sane size -------------------------------------------------
HOSTILE_READERS = """
import json, os, sys
from pathlib import Path
from edgevision.edge_runtime.images import read_image
from edgevision.edge_runtime.labels import load_labels
from edgevision.edge_runtime.preprocess import PreprocessConfig
from edgevision.edge_runtime.classifier import _read_model
from edgevision.convert.loading import keras_config
from edgevision.errors import EdgeVisionError

readers = {"image": read_image, "labels": load_labels, "preprocess": PreprocessConfig.load,
           "model": lambda p: _read_model(Path(p), str(p)), "keras": lambda p: keras_config(Path(p))}
out = {}
for path in sys.argv[1:]:
    for name, read in readers.items():
        try:
            read(path)
            out[f"{name} {path}"] = "accepted"
        except EdgeVisionError as e:
            out[f"{name} {path}"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
"""


def test_devices_fifos_and_huge_files_are_refused_before_reading(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.jpg"  # sparse: 20 GB by its size, nothing on disk
    with open(huge, "wb") as f:
        f.truncate(20 << 30)
    paths = ["/dev/zero", str(fifo), str(huge), str(tmp_path)]
    result = run_hostile(HOSTILE_READERS.replace("sys.argv[1:]", repr(paths)), timeout=120)
    for key, message in result.items():
        assert message != "accepted", key
        assert "\n" not in message
    for name in ("image", "labels", "preprocess", "model", "keras"):
        assert "a device; expected a regular file" in result[f"{name} /dev/zero"]
        assert "named pipe (FIFO)" in result[f"{name} {fifo}"]
        assert "a directory" in result[f"{name} {tmp_path}"]
    for name in ("image", "labels", "preprocess", "model"):
        assert "20480.0 MB" in result[f"{name} {huge}"] and "limit" in result[f"{name} {huge}"]
    assert result[f"image {fifo}"].startswith("ImageError") and result[f"model {fifo}"].startswith("ModelError")
    assert result[f"labels {fifo}"].startswith("LabelsError") and result[f"preprocess {fifo}"].startswith("UsageError")


def test_a_file_that_grows_while_it_is_read_is_cut_at_the_limit(tmp_path):
    from edgevision.edge_runtime.files import read_regular_file

    path = tmp_path / "labels.txt"
    path.write_bytes(b"a\n" * 10)
    assert read_regular_file(path, 20, "labels file") == b"a\n" * 10
    with pytest.raises(EdgeVisionError, match="more than the 19 bytes limit"):
        read_regular_file(path, 19, "labels file")


# --- 2. a .keras whose config.json inflates to far more than any model config -----------------------------
def _keras_archive(path: Path, config: bytes, declared=None, weights: bytes = b"") -> Path:
    """A .keras zip whose config.json holds `config` (deflated); `declared` rewrites the size its headers state."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        archive.writestr("config.json", config)
        archive.writestr("model.weights.h5", weights)
    if declared is not None:  # a header that lies, so that a check of declared sizes alone is not enough
        data = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
        struct.pack_into("<I", data, info.header_offset + 22, declared)  # local header: uncompressed size
        central = data.find(b"PK\x01\x02")
        while data[central + 46:central + 46 + 11] != b"config.json":
            central = data.find(b"PK\x01\x02", central + 4)
            assert central >= 0
        struct.pack_into("<I", data, central + 24, declared)  # central directory: uncompressed size
        path.write_bytes(bytes(data))
        with zipfile.ZipFile(path) as archive:
            assert archive.getinfo("config.json").file_size == declared
    return path


BOMB_CHECK = """
import json, sys, resource
from pathlib import Path
from edgevision.convert.loading import check_keras_file
from edgevision.errors import ModelError
try:
    check_keras_file(Path(sys.argv[1]))
    outcome = "accepted"
except ModelError as e:
    outcome = "ModelError: " + str(e)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest, with TensorFlow loaded)
# across exec, while VmHWM is this process's own high-water mark.
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
peak_mb = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"outcome": outcome, "peak_mb": peak_mb}))
"""


def _bomb_config(inflated: int) -> bytes:
    """Valid JSON ('{}' and whitespace) of `inflated` bytes: what the old check read whole and accepted."""
    return b"{}" + b" " * (inflated - 2)


@pytest.mark.parametrize("declared", [None, 4096], ids=["honest-header", "lying-header"])
def test_keras_config_bomb_is_refused_in_bounded_memory(tmp_path, declared):
    bomb = _keras_archive(tmp_path / "bomb.keras", _bomb_config(600 << 20), declared=declared)
    assert bomb.stat().st_size < 1 << 20  # a small file that inflates to 600 MB
    script = BOMB_CHECK.replace("sys.argv[1]", repr(str(bomb)))
    result = run_hostile(script, timeout=120, address_space=2 << 30)
    assert result["outcome"].startswith("ModelError"), result
    assert "\n" not in result["outcome"]
    assert result["peak_mb"] < 300, result  # the bound is 800 MB; the old check peaked at 1.2 GB here


def test_keras_weights_bomb_is_refused_before_keras_inflates_it(tmp_path):
    config = {"class_name": "Functional", "config": {"layers": []}}
    bomb = _keras_archive(tmp_path / "weights-bomb.keras", json.dumps(config).encode(), weights=bytes(600 << 20))
    assert bomb.stat().st_size < 2 << 20  # a small file whose weights inflate to 600 MB
    script = BOMB_CHECK.replace("sys.argv[1]", repr(str(bomb)))
    result = run_hostile(script, timeout=120, address_space=2 << 30)
    assert result["outcome"].startswith("ModelError") and "model.weights.h5" in result["outcome"], result
    assert "zip bomb" in result["outcome"] and "\n" not in result["outcome"]
    assert result["peak_mb"] < 300, result


def test_ordinary_keras_config_still_reads(tmp_path):
    from edgevision.convert.loading import keras_config

    config = {"class_name": "Functional", "config": {"layers": [{"class_name": "Dense", "config": {"name": "d"}}]}}
    path = _keras_archive(tmp_path / "m.keras", json.dumps(config).encode())
    assert keras_config(path) == config


# --- 4. a SavedModel's graph is code ---------------------------------------------------------------------
def _pb_field(number: int, payload) -> bytes:
    """One protobuf field: a length-delimited message/string, or a varint for ints."""
    if isinstance(payload, int):
        return _varint((number << 3) | 0) + _varint(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _node(name: str, op: str, calls: str = "") -> bytes:
    body = _pb_field(1, name) + _pb_field(2, op)
    if calls:  # attr {key: "f" value {func {name: calls}}}
        body += _pb_field(5, _pb_field(1, "f") + _pb_field(2, _pb_field(10, _pb_field(1, calls))))
    return body


def _function(name: str, *nodes: bytes) -> bytes:
    return _pb_field(1, _pb_field(1, name)) + b"".join(_pb_field(3, n) for n in nodes)


def _saved_model_pb(nodes, functions=(), saver=None) -> bytes:
    graph = b"".join(_pb_field(1, n) for n in nodes)
    if functions:
        graph += _pb_field(2, b"".join(_pb_field(1, f) for f in functions))
    meta = _pb_field(2, graph)
    if saver:
        meta += _pb_field(3, _pb_field(2, f"{saver[0]}:0") + _pb_field(3, saver[1]))
    return _pb_field(1, 1) + _pb_field(2, meta)


def test_graph_scan_finds_unsafe_ops_in_nodes_and_functions():
    from edgevision.convert.saved_model_scan import unsafe_operations

    serve = _function("serve", _node("r", "ReadFile"), _node("m", "MatMul"), _node("c", "PartitionedCall", "py"))
    py = _function("py", _node("p", "EagerPyFunc"))
    save = _function("__inference__traced_save_9", _node("s", "SaveV2"), _node("m", "MergeV2Checkpoints"))
    restore = _function("__inference__traced_restore_9", _node("r", "RestoreV2"))
    pb = _saved_model_pb([_node("x", "Placeholder"), _node("call", "StatefulPartitionedCall", "serve"),
                          _node("w", "WriteFile"), _node("sv", "StatefulPartitionedCall", "__inference__traced_save_9"),
                          _node("rs", "StatefulPartitionedCall", "__inference__traced_restore_9")],
                         [serve, py, save, restore], saver=("sv", "rs"))
    assert unsafe_operations(pb) == ["EagerPyFunc", "ReadFile", "WriteFile"]
    # The saver's own checkpoint ops are every SavedModel's; the same ops called from serving are not.
    evil = _function("serve", _node("s", "StatefulPartitionedCall", "__inference__traced_save_9"))
    pb = _saved_model_pb([_node("call", "StatefulPartitionedCall", "serve"),
                          _node("sv", "StatefulPartitionedCall", "__inference__traced_save_9"),
                          _node("rs", "StatefulPartitionedCall", "__inference__traced_restore_9")],
                         [evil, save, restore], saver=("sv", "rs"))
    assert unsafe_operations(pb) == ["MergeV2Checkpoints", "SaveV2"]


def _side_files(folder: Path) -> None:
    (folder / "labels.txt").write_text("a\nb\nc\n")
    (folder / "preprocess.json").write_text(json.dumps({"input_size": [8, 8]}))


def test_convert_refuses_a_savedmodel_that_reads_and_writes_files(tmp_path):
    """A real SavedModel (TensorFlow builds it in a child) whose serving function reads and writes files."""
    pytest.importorskip("tensorflow", reason="building a SavedModel needs the train extra")
    from edgevision.convert.loading import open_source

    evil, clean, witness = tmp_path / "evil", tmp_path / "clean", tmp_path / "pwned.txt"
    build = f"""
import tensorflow as tf, keras
class Evil(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
    def serve(self, x):
        tf.io.write_file({str(witness)!r}, tf.io.read_file("/etc/hostname"))
        return {{"out": tf.nn.softmax(tf.reshape(x, [-1, 192])[:, :3])}}
e = Evil()
tf.saved_model.save(e, {str(evil)!r}, signatures={{"serving_default": e.serve}})
inp = keras.Input((8, 8, 3))
keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp))).export(
    {str(clean)!r}, format="tf_saved_model", verbose=False)
"""
    proc = subprocess.run([sys.executable, "-c", build], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for folder in (evil, clean):
        _side_files(folder)
    with pytest.raises(ModelError) as caught:
        open_source(evil)
    message = str(caught.value)
    assert "ReadFile" in message and "WriteFile" in message and "--unsafe-load" in message
    assert open_source(evil, unsafe_load=True).kind == "saved_model"  # the user's explicit opt-in
    assert open_source(clean).kind == "saved_model"  # a Keras export has only its saver's checkpoint ops
    assert not witness.exists()


# --- 6. EXIF orientation --------------------------------------------------------------------------------
def _oriented(fmt: str, orientation: int, pixels: np.ndarray) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {"quality": 100} if fmt == "JPEG" else {}
    Image.fromarray(pixels).save(buf, fmt, exif=exif.tobytes(), **extra)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_honoured(fmt):
    """Each of the 8 orientations gives the upright pixels PIL's exif_transpose gives."""
    pytest.importorskip("PIL")
    from PIL import Image, ImageOps

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (6, 10, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        data = _oriented(fmt, orientation, pixels)
        upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))[..., ::-1]
        got = decode_image(data, name=f"{fmt}-{orientation}")
        assert got.shape == upright.shape, (fmt, orientation)
        assert int(np.abs(got.astype(int) - upright).max()) <= 2, (fmt, orientation)


def test_big_endian_exif_and_damaged_exif(tmp_path):
    """A Motorola-order (big-endian) EXIF block turns the image; a damaged one leaves it as stored."""
    import cv2

    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[:, :4] = 255
    jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
    turned = jpeg[:2] + app1 + jpeg[2:]
    (tmp_path / "turned.jpg").write_bytes(turned)
    image = read_image(tmp_path / "turned.jpg")
    assert image.shape[:2] == (8, 4) and image[0, 0].min() > 200 and image[-1, 0].max() < 50  # rotated 90 cw
    damaged = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", 40) + b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff" + bytes(24) + jpeg[2:]
    assert decode_image(damaged).shape[:2] == (4, 8)


def test_training_and_folder_decoding_see_upright_images(tmp_path):
    """The training/evaluation folder reader decodes through the same function."""
    pytest.importorskip("PIL")
    from edgevision.edge_runtime.datasets import decode_folder, scan_image_folder

    pixels = np.zeros((6, 10, 3), np.uint8)
    for name, orientation in (("a", 6), ("b", 1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.jpg").write_bytes(_oriented("JPEG", orientation, pixels))
    folder = scan_image_folder(tmp_path)
    decoded = decode_folder(folder, lambda image: np.asarray(image.shape))
    assert sorted(tuple(s) for s in decoded.pixels) == [(6, 10, 3), (10, 6, 3)]


# --- 12. false positives and rough edges -----------------------------------------------------------------
def _os2_bmp(pixels: np.ndarray) -> bytes:
    """An OS/2 1.x bitmap (12-byte BITMAPCOREHEADER, 16-bit width and height), 24-bit, bottom-up rows."""
    h, w = pixels.shape[:2]
    row = (w * 3 + 3) // 4 * 4
    body = b"".join(pixels[h - 1 - y].tobytes().ljust(row, b"\0") for y in range(h))
    offset = 14 + 12
    return (b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset)
            + struct.pack("<IHHHH", 12, w, h, 1, 24) + body)


def test_os2_bitmaps_decode(tmp_path):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 255, (7, 13, 3), dtype=np.uint8)
    (tmp_path / "os2.bmp").write_bytes(_os2_bmp(pixels))
    assert np.array_equal(read_image(tmp_path / "os2.bmp"), pixels)
    # The header check still catches a real bomb in that format: 65535 x 65535.
    bomb = bytearray(_os2_bmp(pixels))
    struct.pack_into("<HH", bomb, 18, 65535, 65535)
    with pytest.raises(ImageError, match="Mpx"):
        decode_image(bytes(bomb))


@pytest.mark.parametrize("content,kind", [
    (b"PK\x03\x04" + bytes(200), "zip archive"),
    (b"hello, I am a text file\n" * 20, "text file"),
    (bytes(range(256)) * 4, "not a TFLite flatbuffer"),
])
def test_a_non_model_file_is_described_not_echoed(tmp_path, content, kind):
    from edgevision.edge_runtime.safety import precheck

    with pytest.raises(ModelError) as caught:
        precheck(content, "thing.tflite")
    message = str(caught.value)
    assert kind in message and "TFL3" in message
    assert "b'" not in message and "\\x" not in message


# --- missing TensorFlow: the install hint, not a traceback ------------------------------------------------
NO_TENSORFLOW_CLI = """
import runpy, sys
for name in ("tensorflow", "keras", "tf_keras", "tensorflow_model_optimization"):
    sys.modules[name] = None  # as on an install without the train extra: importing them fails
sys.argv = ["edgevision"] + sys.argv[1:]
runpy.run_module("edgevision.cli", run_name="__main__")
"""


def test_keras_commands_without_tensorflow_give_the_install_hint(tmp_path):
    import cv2

    model = _keras_archive(tmp_path / "model.keras", json.dumps({"class_name": "Functional", "config": {}}).encode())
    _side_files(tmp_path)
    (tmp_path / "data" / "a").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "data" / "a" / "x.png"), np.zeros((8, 8, 3), np.uint8))
    commands = [["convert", str(model), "--quant", "float32", "--out", str(tmp_path / "m.tflite")],
                ["predict", str(model), str(tmp_path / "data" / "a" / "x.png")],
                ["evaluate", str(model), "--data", str(tmp_path / "data")]]
    for args in commands:
        proc = subprocess.run([sys.executable, "-c", NO_TENSORFLOW_CLI, *args], capture_output=True, text=True,
                              timeout=120, cwd=REPO.parent, env={**os.environ, "EDGEVISION_DEBUG": ""})
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode != 0 and len(lines) == 1, (args, proc.stderr[-2000:])
        assert "internal error" not in lines[0] and "pip install 'edgevision[train]'" in lines[0], (args, lines)


# --- 8. streams and videos whose frames are larger than images may be ----------------------------------
def test_a_video_of_frames_over_the_pixel_cap_is_refused_before_reading(tmp_path):
    import cv2

    from conftest import run_cli

    video = tmp_path / "big.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (400, 300))
    for _ in range(3):
        writer.write(np.zeros((300, 400, 3), np.uint8))
    writer.release()
    capped = run_cli("classify", "--model", "cifar10-cnn", "--source", video, "--headless",
                     env={"EDGEVISION_MAX_IMAGE_PIXELS": "100000"})  # 400x300 is 0.12 Mpx
    assert capped.returncode != 0 and "400x300" in capped.stderr and "Mpx limit" in capped.stderr
    assert len(capped.stderr.strip().splitlines()) == 1 and capped.stdout == ""
    ok = run_cli("classify", "--model", "cifar10-cnn", "--source", video, "--headless")
    assert ok.returncode == 0 and len(ok.stdout.strip().splitlines()) == 3
