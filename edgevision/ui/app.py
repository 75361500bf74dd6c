"""The edgevision web page: upload an image (or take one with the camera) and see what a model thinks.

Run by `edgevision ui` (which starts `streamlit run` on this file with the right server options); not meant
to be imported. It uses only the edge runtime (TensorFlow Lite through edgevision.edge_runtime), so it
works on a device without TensorFlow.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import streamlit as st

from edgevision.edge_runtime.images import IMAGE_EXTENSIONS, MAX_PIXELS, decode_image
from edgevision.errors import EdgeVisionError, ImageError
from edgevision.ui.settings import ModelEntry, UiSettings, discover_models, hide_paths, md_escape, recognises
from edgevision.ui.slots import DECODE_SLOTS

TOP_K = 5
UPLOAD_TYPES = sorted({ext.lstrip(".") for ext in IMAGE_EXTENSIONS})
#: Longest side of the picture sent back to the browser: a 50 Mpx photo need not travel back at full size.
DISPLAY_MAX_SIDE = 1280
MIN_DISPLAY_WIDTH = 320
#: Most classifiers kept loaded at once (each holds its interpreter and tensors in memory).
MAX_LOADED_MODELS = 8
MB = 1024 * 1024
#: Class lists longer than this scroll inside a box of CLASS_LIST_HEIGHT pixels (ImageNet has 1001).
CLASS_LIST_ROWS = 12
CLASS_LIST_HEIGHT = 300
#: Width of a sample photo's thumbnail under the uploader.
SAMPLE_WIDTH = 120


@dataclass(frozen=True)
class LoadedModel:
    classifier: object
    # Streamlit serves each browser session from its own thread and the cached classifier is shared:
    # one image at a time per model, so that the times shown are this image's and not a queue's.
    lock: threading.Lock
    load_ms: float


@dataclass(frozen=True)
class Timing:
    prepare_ms: float  # resize, colour order, normalisation / quantization of the input
    invoke_ms: float  # the TensorFlow Lite interpreter
    total_ms: float  # prepare + invoke + dequantize and top-k


@st.cache_resource(show_spinner="Loading model…", max_entries=MAX_LOADED_MODELS)
def load_model(
    path: str, labels: Optional[str], trusted: bool, num_threads: Optional[int], stamp: tuple
) -> LoadedModel:
    """One Classifier per model file (and per version of it: `stamp` is its mtime and size)."""
    from edgevision.edge_runtime import Classifier

    start = time.perf_counter()  # load time shown on the model card: file read, safety check, warm-up
    classifier = Classifier(path, num_threads=num_threads, labels=labels, trusted=trusted)
    # The first invoke pays for delegate set-up and memory planning; pay it here so that the time shown
    # for the user's first image is the model's, not the start-up's.
    height, width = classifier.input_size
    classifier.classify(np.zeros((height, width, 3), np.uint8), top_k=1)
    return LoadedModel(classifier, threading.Lock(), (time.perf_counter() - start) * 1000)


def file_stamp(path) -> tuple:
    try:
        st_ = os.stat(path)
        return (st_.st_mtime_ns, st_.st_size)
    except OSError:
        return (0, 0)


# --- formatting ----------------------------------------------------------------------------------
def human_size(n: int) -> str:
    if n >= MB:
        return f"{n / MB:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


def origin_label(entry: ModelEntry) -> str:
    return {"bundled": "bundled", "given": "command line", "folder": "models folder"}.get(entry.origin, entry.origin)


#: Where a model's preprocessing came from, as the model card says it.
PREPROCESS_SOURCES = {"metadata": "from the model", "inferred": "guessed from its input", "argument": "given"}


def input_text(classifier) -> str:
    _, height, width, channels = classifier.input_shape
    return f"{height}×{width}×{channels} {classifier.input_dtype}"


# --- sidebar -------------------------------------------------------------------------------------
def choose_model(entries: List[ModelEntry]) -> ModelEntry:
    """The sidebar's model switch; the general model is chosen until the visitor picks another."""
    from edgevision.bundled import DEFAULT_MODEL

    by_key = {e.key: e for e in entries}
    if st.session_state.get("model") not in by_key:  # a models-folder file went away since the last run
        st.session_state.pop("model", None)
    keys = list(by_key)
    default = f"bundled:{DEFAULT_MODEL}"
    key = st.sidebar.radio(
        "Model",
        keys,
        index=keys.index(default) if default in by_key else 0,
        # Names may come from file names in a models folder: shown as text, never as Markdown.
        format_func=lambda k: md_escape(by_key[k].name),
        captions=[md_escape(" · ".join(filter(None, [e.title, origin_label(e), human_size(e.bytes)])))
                  for e in entries],
        key="model",
    )
    return by_key[key]


def show_model_card(entry: ModelEntry, loaded: LoadedModel) -> None:
    c = loaded.classifier
    labels = list(c.labels)
    with st.sidebar.container(key="model-card"):
        st.markdown(f"**{md_escape(entry.name)}**")
        st.markdown(md_escape(recognises(entry, labels)))
        st.caption(md_escape(entry.path.name))  # the file, never the server's folders
        pre = c.preprocess
        preprocess_origin = PREPROCESS_SOURCES.get(c.preprocess_source, c.preprocess_source)
        rows = [
            ("Size", human_size(c.model_bytes)),
            ("Quantization", c.quantization),
            ("Input", input_text(c)),
            ("Classes", str(c.num_classes)),
            ("Preprocessing", f"{pre.color_order}, {pre.resize.replace('_', ' ')} ({preprocess_origin})"),
            ("Interpreter", f"{c.backend} {c.backend_version}"),
            ("Loaded in", f"{loaded.load_ms:.0f} ms"),
        ]
        accuracy = entry.extra.get("accuracy")
        if accuracy is not None:
            rows.append(("Accuracy", f"{accuracy:.2%}"))
        st.markdown("\n".join(f"- {k}: **{md_escape(v)}**" for k, v in rows))
        with st.expander(f"{len(labels)} classes"):
            text = "\n".join(f"{i:>4}  {label}" for i, label in enumerate(labels))
            st.code(text, language=None, height=CLASS_LIST_HEIGHT if len(labels) > CLASS_LIST_ROWS else "content")


# --- main area -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Picture:
    data: bytes
    name: str
    from_camera: bool


def get_picture(settings: UiSettings) -> Optional[Picture]:
    """The uploaded file or the camera's photo, or None while there is nothing yet."""
    source = st.radio("Image source", ["Upload", "Camera"], horizontal=True, key="source", label_visibility="collapsed")
    limit_text = f"{settings.max_upload_mb} MB and {MAX_PIXELS / 1e6:.0f} megapixels"
    if source == "Camera":
        # Only asked for when chosen, so that opening the page does not ask for the camera.
        shot = st.camera_input("Take a picture")
        return Picture(shot.getvalue(), "camera.jpg", True) if shot is not None else None
    upload = st.file_uploader(
        "Choose an image",
        type=UPLOAD_TYPES,
        # A sample click starts a fresh, empty uploader, so the sample is what is shown until the next upload.
        key=f"upload-{st.session_state.get('upload_generation', 0)}",
        on_change=_forget_sample,
        help=f"{', '.join(t.upper() for t in UPLOAD_TYPES)}; at most {limit_text}.",
    )
    st.caption(f"JPEG, PNG, BMP or WebP, up to {limit_text}. Images are classified on this server and not stored.")
    if upload is not None:
        return Picture(upload.getvalue(), upload.name, False)
    return sample_picker()


def _forget_sample() -> None:
    st.session_state.pop("sample", None)


def _pick_sample(file: str) -> None:
    st.session_state["sample"] = file
    st.session_state["upload_generation"] = st.session_state.get("upload_generation", 0) + 1


def sample_picker() -> Optional[Picture]:
    """Thumbnails of the photos shipped with edgevision, each with a button; the chosen one, if any."""
    from edgevision.samples import sample_photos

    samples = sample_photos()
    if not samples:
        return None
    st.caption("Or try a sample photo:")
    with st.container(key="samples"):
        for column, s in zip(st.columns(len(samples)), samples):
            with column:
                st.image(str(s.path), width=SAMPLE_WIDTH)
                st.button(s.file, key=f"sample-{s.file}", help=s.shows, on_click=_pick_sample, args=(s.file,))
    chosen = next((s for s in samples if s.file == st.session_state.get("sample")), None)
    return Picture(chosen.path.read_bytes(), chosen.file, False) if chosen else None


def decode_picture(picture: Picture, settings: UiSettings) -> Optional[np.ndarray]:
    """BGR pixels, or None after saying on the page why the picture cannot be used."""
    if len(picture.data) > settings.max_upload_mb * MB:  # the server refuses these already; belt and braces
        st.error(f"**{md_escape(picture.name)}** is {human_size(len(picture.data))}; the limit is "
                 f"{settings.max_upload_mb} MB.")
        return None
    try:
        return decode_image(picture.data, name=picture.name)
    except ImageError as e:
        st.error(f"Could not read this image. {md_escape(e)}", icon=":material/block:")
        return None


@dataclass(frozen=True)
class Answer:
    shown: np.ndarray  # the picture at display size
    size: Tuple[int, int]  # the picture's own width and height
    results: list
    timing: "Timing"


def answer_picture(picture: Picture, settings: UiSettings, loaded: LoadedModel) -> Optional[Answer]:
    """Decode, classify and shrink for display inside one slot, or None after saying why not.

    The full-size pixels exist only inside the slot (they are most of a big upload's memory), so the page's
    peak memory is bounded by the number of slots, not by the number of visitors uploading at once.
    """
    with DECODE_SLOTS:
        image = decode_picture(picture, settings)
        if image is None:
            return None
        try:
            results, timing = classify_timed(loaded, image)
        except EdgeVisionError as e:
            st.error(f"Could not classify this image: {md_escape(e)}", icon=":material/block:")
            return None
        h, w = image.shape[:2]
        return Answer(for_display(image), (w, h), results, timing)


def for_display(image_bgr: np.ndarray) -> np.ndarray:
    import cv2

    h, w = image_bgr.shape[:2]
    scale = DISPLAY_MAX_SIDE / max(h, w)
    if scale >= 1:
        return image_bgr
    return cv2.resize(image_bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def show_picture(answer: Answer, picture: Picture) -> None:
    w, h = answer.size
    caption = f"{md_escape(picture.name)} · {w}×{h}"
    if picture.from_camera:  # the camera widget already shows the photo
        st.caption(caption)
        return
    shown = answer.shown
    # Small images (CIFAR's are 32x32) are drawn larger so that there is something to see; others at
    # their own size, never wider than the column.
    width = MIN_DISPLAY_WIDTH if shown.shape[1] < MIN_DISPLAY_WIDTH else "content"
    st.image(shown, channels="BGR", caption=caption, width=width)


def show_answer(results, timing: Timing, loaded: LoadedModel) -> None:
    top = results[0]
    with st.container(key="prediction"):
        st.markdown(f"### {md_escape(top.label)}")
        st.caption(f"{top.score:.1%} confident · class {top.index}")
    with st.container(key="top5"):
        for r in results:
            st.progress(min(max(float(r.score), 0.0), 1.0), text=f"{md_escape(r.label)} · {r.score:.1%}")
    threads = loaded.classifier.num_threads
    st.metric(
        "Inference time",
        f"{timing.invoke_ms:.1f} ms",
        help="The TensorFlow Lite interpreter's invoke() for this image, on this server's CPU"
        + (f" with {threads} threads." if threads else " (the backend's default threads)."),
    )
    st.caption(f"preprocessing {timing.prepare_ms:.1f} ms · total {timing.total_ms:.1f} ms")


def classify_timed(loaded: LoadedModel, image_bgr: np.ndarray):
    """Top-k classes and how long each stage took (timed inside the classifier's one classify call)."""
    from edgevision.edge_runtime.classifier import ClassifyTimings

    timings = ClassifyTimings()
    with loaded.lock:
        results = loaded.classifier.classify(image_bgr, TOP_K, timings=timings)
    return results, Timing(timings.prepare_ms, timings.invoke_ms, timings.total_ms)


def main_area(settings: UiSettings, loaded: LoadedModel) -> None:
    """Input and picture on the left, the answer on the right, side by side."""
    left, right = st.columns([3, 2], gap="large")
    with left:
        picture = get_picture(settings)
    with right:
        if picture is None:
            st.caption("The model's five most likely classes will appear here.")
            return
        answer = answer_picture(picture, settings, loaded)
        if answer is None:
            return
        show_answer(answer.results, answer.timing, loaded)
    with left:
        show_picture(answer, picture)


def main() -> None:
    st.set_page_config(page_title="edgevision", page_icon=":material/image_search:", layout="wide")
    settings = UiSettings.from_env()
    st.title("edgevision")
    st.caption("Upload an image, take one with the camera or click a sample photo, and see what the model thinks. "
               "Runs on TensorFlow Lite, without TensorFlow.")

    entries, warnings = discover_models(settings)
    for warning in warnings:
        st.sidebar.warning(warning)
    if not entries:
        st.info(
            "No models to choose from yet. Start the page with `edgevision ui --reference MODEL.tflite` or "
            "`--models DIR`, or drop `.tflite` files into the models folder and reload."
        )
        return
    entry = choose_model(entries)
    try:
        loaded = load_model(
            str(entry.path),
            str(entry.labels_path) if entry.labels_path else None,
            entry.trusted,
            settings.num_threads,
            file_stamp(entry.path),
        )
    except EdgeVisionError as e:
        st.error(
            f"Cannot use the model **{md_escape(entry.name)}**: {md_escape(hide_paths(e, entry.path, entry.labels_path))}. "
            "Choose another one in the sidebar.",
            icon=":material/block:",
        )
        return
    show_model_card(entry, loaded)
    main_area(settings, loaded)


try:
    main()
except Exception as e:  # a bug, not bad input: say so on the page and keep serving
    if os.environ.get("EDGEVISION_DEBUG"):
        raise
    st.error(
        f"Internal error: {type(e).__name__}: {md_escape(e)}. This is a bug in edgevision; "
        "restart with EDGEVISION_DEBUG=1 to see the traceback.",
        icon=":material/error:",
    )
