"""Shared test fixtures. Tests that need ../shared skip cleanly (and say why) where it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEVISION_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the read-only ../shared data folder), which is absent here")
    return path


@pytest.fixture(scope="session")
def reference_model() -> Path:
    """Google's uint8 ImageNet MobileNetV2 (1001 classes, background first): a model nobody here made."""
    return shared_path("models", "reference", "mobilenet_v2_1.0_224_quant.tflite")


@pytest.fixture(scope="session")
def imagenet_labels() -> Path:
    return shared_path("models", "reference", "imagenet_labels.txt")


@pytest.fixture(scope="session")
def cat_image() -> Path:
    return shared_path("images", "cat.bmp")


@pytest.fixture(scope="session")
def grace_hopper_image() -> Path:
    return shared_path("images", "grace_hopper.bmp")


@pytest.fixture(scope="session")
def camera_frame() -> Path:
    return shared_path("images", "cat_720p.jpg")


def run_cli(*args, env=None, timeout=600, input=None, cwd=None) -> subprocess.CompletedProcess:
    """Run the real `edgevision` CLI in a subprocess (no in-process shortcuts)."""
    full_env = {**os.environ, "EDGEVISION_DEBUG": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgevision.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=input,
        cwd=cwd,
    )


@pytest.fixture
def cli():
    return run_cli


# --- added by the camera/classify tests: a tiny real TFLite classifier that needs no ../shared ----------
@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory):
    """A small CNN (32x32x3 -> cat/dog/ship) built and converted by TensorFlow once per session.

    Returns {"tflite": path, "labels": path (labels.txt beside the model), "keras": path}.
    """
    pytest.importorskip("tensorflow", reason="building the tiny model needs the train extra")
    from _bench_helpers import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny-model"))


# --- added for convert/ tests: a tiny *trained* run directory as `edgevision train` writes it ------------
@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """model.keras (small Keras 3 CNN trained a few epochs on drawn shapes), labels.txt, preprocess.json,
    run.json pointing at its image folder (3 classes x 40 images at 32x32, plus two corrupt files)."""
    pytest.importorskip("tensorflow", reason="training the tiny model needs the train extra")
    from _convert_helpers import build_tiny_run, make_shapes_folder

    root = tmp_path_factory.mktemp("tiny-run")
    return build_tiny_run(root / "run", make_shapes_folder(root / "data"))
