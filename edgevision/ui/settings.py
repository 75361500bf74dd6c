"""What `edgevision ui` hands to the Streamlit page, and the page's catalogue of models.

The CLI validates the command line, then passes these settings to the page (a separate process started by
`streamlit run`) as one JSON document in an environment variable. Nothing here imports Streamlit, so the CLI
stays light and the catalogue can be tested without a browser.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from edgevision.errors import UsageError

#: Environment variable that carries the settings from `edgevision ui` to the page.
SETTINGS_ENV = "EDGEVISION_UI_SETTINGS"
#: Largest upload the server accepts (Streamlit's server.maxUploadSize, in MB). Phone photos are 3-12 MB.
DEFAULT_MAX_UPLOAD_MB = 20
DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"
MODEL_SUFFIX = ".tflite"

#: What each bundled model is, in words the page shows beside the switch: (title, what it recognises).
MODEL_GUIDE = {
    "imagenet-mobilenetv2": ("General: MobileNetV2 (ImageNet)",
                             "Recognises 1000 everyday objects, animals and foods (the ImageNet classes), one "
                             "answer per photo. People are not a class: it names what they wear or hold."),
    "cifar10-mobilenetv2": ("CIFAR-10: MobileNetV2",
                            "Recognises only CIFAR-10's 10 classes: airplane, automobile, bird, cat, deer, dog, "
                            "frog, horse, ship, truck. Anything else gets one of these."),
    "cifar10-cnn": ("CIFAR-10: small CNN",
                    "Recognises only CIFAR-10's 10 classes (airplane, automobile, bird, cat, deer, dog, frog, "
                    "horse, ship, truck) from a 32x32 thumbnail. Anything else gets one of these."),
    "cifar10-micro": ("CIFAR-10: microcontroller CNN",
                      "Recognises only CIFAR-10's 10 classes (airplane, automobile, bird, cat, deer, dog, frog, "
                      "horse, ship, truck) from a 32x32 thumbnail, with a model small enough for a "
                      "microcontroller. Anything else gets one of these."),
}
#: Class names listed in the words for a model the guide does not know.
LISTED_CLASSES = 10


@dataclass(frozen=True)
class UiSettings:
    """models_dirs: folders scanned for `.tflite` files (each page load, so new files appear).
    references: (model path, labels path or None) pairs given on the command line, e.g. an ImageNet model.
    """

    models_dirs: Tuple[str, ...] = ()
    references: Tuple[Tuple[str, Optional[str]], ...] = ()
    num_threads: Optional[int] = None
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB

    def to_json(self) -> str:
        return json.dumps(
            {
                "models_dirs": list(self.models_dirs),
                "references": [list(r) for r in self.references],
                "num_threads": self.num_threads,
                "max_upload_mb": self.max_upload_mb,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "UiSettings":
        try:
            d = json.loads(text)
            return cls(
                models_dirs=tuple(str(p) for p in d.get("models_dirs", ())),
                references=tuple((str(m), None if lab is None else str(lab)) for m, lab in d.get("references", ())),
                num_threads=d.get("num_threads"),
                max_upload_mb=int(d.get("max_upload_mb", DEFAULT_MAX_UPLOAD_MB)),
            )
        except (ValueError, TypeError, AttributeError) as e:
            raise UsageError(f"invalid {SETTINGS_ENV}: {e}; start the page with `edgevision ui`") from e

    @classmethod
    def from_env(cls) -> "UiSettings":
        text = os.environ.get(SETTINGS_ENV)
        return cls.from_json(text) if text else cls()


@dataclass(frozen=True)
class ModelEntry:
    """One model the page offers. `key` is stable across reruns and unique (it is the widget value)."""

    key: str
    name: str
    origin: str  # "bundled", "given" (command line) or "folder"
    path: Path
    labels_path: Optional[Path] = None
    trusted: bool = False  # bundled models ship with the package: no child-process check needed
    bytes: int = 0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def title(self) -> str:
        """The switch's caption: what kind of model this is."""
        return MODEL_GUIDE.get(self.name, ("", ""))[0] if self.origin == "bundled" else ""


def recognises(entry: ModelEntry, labels) -> str:
    """What the model can recognise, in words: the guide's for a bundled model, else from its labels."""
    if entry.origin == "bundled" and entry.name in MODEL_GUIDE:
        return MODEL_GUIDE[entry.name][1]
    labels = list(labels)
    shown = ", ".join(labels[:LISTED_CLASSES]) + (", …" if len(labels) > LISTED_CLASSES else "")
    return f"Recognises {len(labels)} classes: {shown}. Anything else gets one of these."


#: Characters with a meaning in Markdown (or in Streamlit's additions to it: `:icon:`, `:red[text]`, `$math$`).
MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:=^&\"'")
WORD_JOINER = "\u2060"  # invisible; after a colon it keeps Streamlit from reading `:name:` as an icon or colour


def hide_paths(text, *paths) -> str:
    """`text` with each of `paths` (the server's files) shown by file name only: a visitor learns nothing of
    the server's folders from an error message."""
    out = str(text)
    for p in sorted((Path(p) for p in paths if p), key=lambda p: -len(str(p))):
        out = out.replace(str(p.resolve()), p.name).replace(str(p), p.name)
    return out


def md_escape(text) -> str:
    """`text` shown as itself by st.markdown and friends: model-supplied strings (labels, names, paths) are
    data, never Markdown or HTML. Newlines become spaces (one label, one line)."""
    out = []
    for ch in " ".join(str(text).splitlines()):
        if ch == ":":
            out.append("\\:" + WORD_JOINER)
        elif ch in MARKDOWN_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def discover_models(settings: UiSettings) -> Tuple[List[ModelEntry], List[str]]:
    """All models the page can offer, bundled first, and warnings about folders that could not be read."""
    from edgevision.bundled import list_bundled

    entries: List[ModelEntry] = []
    warnings: List[str] = []
    seen = set()

    def add(entry: ModelEntry) -> None:
        resolved = (entry.path.resolve(), entry.labels_path)
        if resolved in seen:
            return
        seen.add(resolved)
        entries.append(entry)

    for m in list_bundled():
        add(
            ModelEntry(
                key=f"bundled:{m.name}",
                name=m.name,
                origin="bundled",
                path=m.path,
                trusted=True,
                bytes=m.bytes,
                extra={"accuracy": m.accuracy},
            )
        )
    for model, labels in settings.references:
        path = Path(model)
        add(
            ModelEntry(
                key=f"given:{path}",
                name=path.stem,
                origin="given",
                path=path,
                labels_path=Path(labels) if labels else None,
                bytes=_size(path),
            )
        )
    for folder in settings.models_dirs:
        try:
            files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == MODEL_SUFFIX and p.is_file())
        except OSError as e:
            warnings.append(f"cannot list models folder {folder}: {e.strerror}")
            continue
        for path in files:
            add(
                ModelEntry(
                    key=f"folder:{path}",
                    name=path.stem,
                    origin="folder",
                    path=path,
                    labels_path=None,  # the Classifier finds a labels file beside the model
                    bytes=_size(path),
                )
            )
    return entries, warnings


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
