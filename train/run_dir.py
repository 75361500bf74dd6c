"""The run directory: everything a user needs after `edgevision train`, in files with fixed names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List

from edgevision.edge_runtime.files import read_regular_file
from edgevision.edge_runtime.labels import load_labels
from edgevision.edge_runtime.preprocess import PreprocessConfig
from edgevision.errors import ModelError

MODEL = "model.keras"  # the best epoch by validation accuracy (what convert, predict and evaluate read)
LAST_MODEL = "last.keras"  # the last epoch's
LABELS = "labels.txt"
PREPROCESS = "preprocess.json"
RUN = "run.json"
HISTORY = "history.csv"
CURVES = "curves.png"
CONFUSION = "confusion_matrix.png"
REPORT_JSON = "report.json"
REPORT_TXT = "report.txt"
CHECKPOINTS = "checkpoints"
CHECKPOINT_STATE = "state.json"
BEST_PREFIX = "best-"  # checkpoints/best-epoch-NNN.keras: the best epoch so far
#: Largest run.json / state.json read: they hold settings, a history and a split record (a few hundred KB for
#: the longest runs); anything bigger is not one of ours, and reading it whole could exhaust memory.
MAX_RECORD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RunInfo:
    path: Path
    model_path: Path
    labels: List[str]
    preprocess: PreprocessConfig
    settings: dict  # run.json (the resolved command settings, data source, status, results)

    @property
    def command(self) -> dict:
        """The settings `edgevision train` ran with: run.json's "settings" (files written by other tools, such
        as the tests' hand-made runs, keep them at the top level instead)."""
        return self.settings.get("settings", self.settings)


def is_run_dir(path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / PREPROCESS).is_file() and (path / LABELS).is_file()


def load_run(path) -> RunInfo:
    """Read a run directory written by `edgevision train` (ModelError naming what is missing)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelError(f"{path} is not a run directory (expected a folder written by `edgevision train`)")
    missing = [name for name in (MODEL, LABELS, PREPROCESS) if not (path / name).is_file()]
    if missing:
        hint = " (training has not finished: re-run the same command to resume)" if (path / CHECKPOINTS).is_dir() else ""
        raise ModelError(f"run directory {path} lacks {', '.join(missing)}{hint}")
    settings = {}
    if (path / RUN).is_file():
        try:
            settings = read_record(path / RUN, "run record")
        except json.JSONDecodeError as e:
            raise ModelError(f"{path / RUN} is not valid JSON: {e}") from e
    return RunInfo(
        path=path,
        model_path=path / MODEL,
        labels=load_labels(path / LABELS),
        preprocess=PreprocessConfig.load(path / PREPROCESS),
        settings=settings,
    )


def read_record(path: Path, what: str):
    """A JSON record of the run directory, read in bounded memory (ModelError for a non-file or a huge one)."""
    return json.loads(read_regular_file(path, MAX_RECORD_BYTES, what, ModelError).decode("utf-8", errors="replace"))
