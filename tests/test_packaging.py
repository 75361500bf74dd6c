"""The wheel a user installs: licence, metadata, typing marker and bundled files in; maintainer scripts out.

The wheel is built by pip from a copy of the tracked (and new, not ignored) files, so a stale `build/` folder or
egg-info in the working tree cannot put files into it that a fresh checkout would not.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # a real pip build: a few seconds, more on a cold pip cache


def _source_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know which files a fresh checkout holds")
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                         check=True).stdout.decode()
    return [name for name in out.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src")
    for name in _source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-cache-dir", "-w", str(out),
                            str(src)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0 and "No matching distribution" in build.stdout + build.stderr:
        pytest.skip("pip cannot fetch the build backend (setuptools>=77) here")
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    # setuptools warned about the deprecated licence table on every install (seen with -v); it must not any more.
    log = build.stdout + build.stderr
    assert "project.license" not in log and "SetuptoolsDeprecationWarning" not in log, log[-3000:]
    (path,) = out.glob("edgevision-*.whl")
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_the_wheel_carries_the_full_apache_licence(wheel):
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    text = wheel.read(name).decode()
    assert text == (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "9. Accepting Warranty or Additional Liability" in text


def test_the_metadata_has_an_spdx_licence_classifiers_and_urls(wheel):
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get("License") is None  # the deprecated field is gone
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert "Topic :: Scientific/Engineering :: Image Recognition" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639 forbids them beside the expression
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Repository", "Issues"} <= set(urls)
    assert all(u.startswith("https://edgevision.example/") for u in urls.values())


def test_the_metadata_matches_pyproject(wheel):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    meta = _metadata(wheel)
    assert meta.get_all("Classifier") == project["classifiers"]
    assert meta["Requires-Python"] == project["requires-python"]
    assert sorted(meta.get_all("Provides-Extra")) == sorted(project["optional-dependencies"])


def test_the_wheel_carries_the_typing_marker_models_and_samples(wheel):
    names = set(wheel.namelist())
    assert "edgevision/py.typed" in names
    for model in ("cifar10-cnn", "cifar10-mobilenetv2", "imagenet-mobilenetv2"):
        assert f"edgevision/models/{model}.tflite" in names and f"edgevision/models/{model}.md" in names
        assert wheel.getinfo(f"edgevision/models/{model}.tflite").file_size == (
            REPO / "edgevision" / "models" / f"{model}.tflite").stat().st_size
    shipped_samples = {p.name for p in (REPO / "edgevision" / "samples").iterdir() if p.suffix in (".jpg", ".md")}
    assert shipped_samples and {f"edgevision/samples/{s}" for s in shipped_samples} <= names
    for sub in ("train", "convert", "edge_runtime", "benchmarks"):
        assert f"edgevision/{sub}/__init__.py" in names  # the top-level folders, installed as subpackages
    assert "edgevision/cli.py" in names


def test_the_wheel_leaves_out_the_maintainer_scripts_and_tests(wheel):
    names = wheel.namelist()
    assert not [n for n in names if "/maintainer/" in n or n.startswith(("tests/", "benchmarks/"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_console_script_is_declared(wheel):
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "edgevision = edgevision.cli:main" in wheel.read(name).decode()
