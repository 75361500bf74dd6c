"""What the user typed as a model -> which model it is: the one place that decides, for every command.

A model argument may be a bundled model's name, a `.tflite` file, a `.keras` file, a run directory from
`edgevision train`, or a SavedModel folder. `resolve_model_ref` says which, finds the files that travel with
it (a run's model, labels and preprocessing, or those beside a `.keras` file), and refuses what no command
can open, with one message. Labels and preprocessing are then read with one precedence everywhere (the
option > the file > a file beside it > an assumption, said in a note): by the Classifier for `.tflite`
files, by `convert.loading` for Keras models. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgevision.errors import ModelError

TFLITE, KERAS, RUN, SAVED_MODEL = "tflite", "keras", "run", "saved_model"
RUN_MODEL, LABELS_FILE, PREPROCESS_FILE = "model.keras", "labels.txt", "preprocess.json"
SAVED_MODEL_FILE = "saved_model.pb"
EXPECTED = "a bundled model name, a .tflite file, a .keras file, a run directory from `edgevision train` or a SavedModel folder"


@dataclass(frozen=True)
class ModelRef:
    """A resolved model argument.

    path: the file or folder the user named (the bundled file for a bundled name).
    model_file: what is loaded: the .tflite, the .keras (a run's model.keras), or the SavedModel folder.
    labels_file, preprocess_file: the run's, or those beside a .keras file / SavedModel; None if absent.
    bundled: shipped inside the package (verified when it was bundled).
    """

    ref: str
    kind: str
    path: Path
    model_file: Path
    name: str
    labels_file: Optional[Path] = None
    preprocess_file: Optional[Path] = None
    bundled: bool = False

    @property
    def is_keras(self) -> bool:
        return self.kind in (KERAS, RUN)


def resolve_model_ref(ref) -> ModelRef:
    """The ModelRef for `ref`, or ModelError saying what was given and what is accepted."""
    from edgevision.bundled import BUNDLED, MODELS_DIR, bundled_path

    text = str(ref)
    if text in BUNDLED and not Path(text).exists():
        path = bundled_path(text)
        return ModelRef(text, TFLITE, path, path, text, bundled=True)
    path = Path(text).expanduser()
    if not path.exists():
        hint = f" (bundled models: {', '.join(BUNDLED)})" if "/" not in text and "." not in text else ""
        raise ModelError(f"model {text!r} does not exist{hint}; expected {EXPECTED}")
    if path.is_dir():
        return _folder(text, path)
    if not path.is_file():
        raise ModelError(f"{path} is not a regular file (a device, pipe or socket); expected {EXPECTED}")
    bundled = path.resolve().parent == MODELS_DIR
    if path.suffix.lower() == ".tflite" or _looks_like_tflite(path):
        return ModelRef(text, TFLITE, path, path, path.stem, bundled=bundled)
    if path.suffix.lower() == ".keras":
        return ModelRef(text, KERAS, path, path, path.stem, *_beside(path.parent))
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise ModelError(f"{path}: legacy HDF5 models are not accepted (their loader has no safe mode); "
                         "re-save the model in the .keras format (model.save('model.keras'))")
    raise ModelError(f"{path}: unknown model format {path.suffix or '(no extension)'!r}; expected {EXPECTED}")


def tflite_ref(ref, what: str) -> ModelRef:
    """`ref` resolved, where only a .tflite file will do (`what` names the caller for the message)."""
    resolved = resolve_model_ref(ref)
    if resolved.kind != TFLITE:
        raise ModelError(f"{what} runs .tflite files and {resolved.path} is a {resolved.kind.replace('_', ' ')} "
                         "model; convert it first (edgevision convert), or use edgevision predict / evaluate")
    return resolved


def _folder(text: str, path: Path) -> ModelRef:
    if (path / SAVED_MODEL_FILE).is_file():
        return ModelRef(text, SAVED_MODEL, path, path, path.name, *_beside(path))
    if (path / RUN_MODEL).is_file():
        return ModelRef(text, RUN, path, path / RUN_MODEL, path.name, *_beside(path))
    raise ModelError(f"{path} is a folder without {RUN_MODEL} or {SAVED_MODEL_FILE}; expected {EXPECTED}")


def _beside(folder: Path):
    labels, preprocess = folder / LABELS_FILE, folder / PREPROCESS_FILE
    return (labels if labels.is_file() else None), (preprocess if preprocess.is_file() else None)


def _looks_like_tflite(path: Path) -> bool:
    from edgevision.edge_runtime.metadata import is_tflite

    try:
        with open(path, "rb") as f:
            return bool(is_tflite(f.read(8)))
    except OSError:
        return False
