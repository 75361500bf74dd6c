"""`Classifier`: a `.tflite` image classifier on a device, in a few lines and without TensorFlow.

    clf = Classifier("model.tflite")            # or a bundled model name, e.g. "cifar10-cnn"
    clf.classify(frame_bgr, top_k=3)            # -> [Classification(index, label, score), ...]

Labels and preprocessing travel inside models made by `edgevision convert`; third-party models (Google's
MobileNets, say) get them from `labels=` / a `labels.txt` beside the file and from their input tensor.

The work is split into stages: `prepare` (pixels -> input tensor), `invoke` (the interpreter),
`scores_from_output` (dequantize, softmax if needed) and `top_k`. Callers use `classify` (pass a
`ClassifyTimings` to have each stage timed, as the camera pipeline and the web page do), `classify_batch`
and `scores_batch`, which take the fast path: ranking raw outputs and decoding only the winners. Everything between the interpreter and the caller is a handful of vectorised OpenCV /
numpy calls on the model-sized frame: the runtime is meant to cost next to nothing beside `invoke()`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import cv2
import numpy as np

from edgevision.edge_runtime.images import decode_image, read_image, to_bgr
from edgevision.edge_runtime.preprocess import (
    COLOR_ORDERS,
    MINUS_ONE_TO_ONE,
    PreprocessConfig,
    prepare_pixels,
)
from edgevision.edge_runtime.quantization import input_encoder, output_decoder, tensor_quantization
from edgevision.errors import ImageError, ModelError, UsageError

# Quantized outputs with these (scale, zero point) come from a softmax: TFLite requires exactly these
# parameters for a quantized SOFTMAX's output, so such a tensor holds probabilities.
_SOFTMAX_QUANTIZATION = {"uint8": (1 / 256, 0), "int8": (1 / 256, -128), "int16": (1 / 32768, 0)}
# How far a row may stray from a probability distribution and still be taken as one (float outputs sum
# to 1 within rounding; other quantized outputs carry up to half a step of error per class).
_FLOAT_PROB_TOLERANCE = 1e-3
_QUANT_PROB_TOLERANCE = 0.05

_UINT8 = np.dtype(np.uint8)  # numpy's built-in dtypes are singletons: `is` is the cheapest test
ImageLike = Union[np.ndarray, str, os.PathLike, bytes]


@dataclass(frozen=True)
class Classification:
    """One labelled score: output `index`, its `label`, and the probability `score` in [0, 1]."""

    index: int
    label: str
    score: float

    def to_dict(self) -> dict:
        """The one JSON shape of a prediction (`predict --json`, `classify`'s JSON lines, the benchmarks)."""
        return {"index": int(self.index), "label": self.label, "score": round(float(self.score), 6)}


@dataclass
class ClassifyTimings:
    """Where one `Classifier.classify` call spent its time (perf_counter_ns), filled in by that call."""

    prepare_ns: int = 0  # pixels -> input tensor (resize, colour order, normalise or quantize)
    invoke_ns: int = 0  # the interpreter
    postprocess_ns: int = 0  # dequantize, softmax if needed, score adjustment, top-k

    @property
    def prepare_ms(self) -> float:
        return self.prepare_ns / 1e6

    @property
    def invoke_ms(self) -> float:
        return self.invoke_ns / 1e6

    @property
    def postprocess_ms(self) -> float:
        return self.postprocess_ns / 1e6

    @property
    def total_ms(self) -> float:
        return (self.prepare_ns + self.invoke_ns + self.postprocess_ns) / 1e6


class Classifier:
    """A TFLite image classifier opened safely, with its labels and preprocessing.

    model_path: a `.tflite` file or a bundled model name (see `edgevision models`).
    num_threads: interpreter threads (None: every usable core).
    backend: "auto" (ai-edge-litert if installed, else tflite-runtime), "ai-edge-litert", "tflite-runtime" or
        "tflite-micro" (TensorFlow Lite Micro's interpreter; `num_threads` does not apply, it runs on one).
    labels: class names (a list, or a labels file); default: the model's metadata, a labels file packed
        in the model, `labels.txt` beside it, else "class_<i>".
    trusted: skip the child-process check (only for models you made or have opened before).
    preprocess: a PreprocessConfig (or its dict, or a preprocess.json path) overriding the metadata, e.g.
        for a third-party float model that does not expect MobileNet's [-1, 1] input.
    delegate: an external delegate, "PATH[:key=value,...]" (or an edge_runtime.delegates.DelegateSpec).
    arena_size: TFLite Micro's arena in bytes (None: measured; see `interpreter.arena_used_bytes`).
    """

    def __init__(self, model_path, num_threads: Optional[int] = None, backend: str = "auto",
                 labels: Union[None, str, os.PathLike, Sequence[str]] = None, trusted: bool = False,
                 preprocess: Union[None, PreprocessConfig, dict, str, os.PathLike] = None,
                 delegate=None, arena_size: Optional[int] = None):
        from edgevision.edge_runtime.delegates import as_delegate
        from edgevision.edge_runtime.model_ref import tflite_ref
        from edgevision.edge_runtime import safety
        from edgevision.edge_runtime.interpreter import (
            check_num_threads,
            make_interpreter,
            resolve_backend,
        )
        from edgevision.edge_runtime.model_metadata import read_model_metadata

        self._num_threads = check_num_threads(num_threads)
        self._path = tflite_ref(model_path, "the Classifier").model_file
        name = str(model_path)
        data = _read_model(self._path, name)
        self._model_bytes = len(data)
        self._sha256 = safety.sha256_of(data)
        self._backend = resolve_backend(backend)
        delegate = as_delegate(delegate)
        if trusted:
            safety.precheck(data, name)
            self._verification = "trusted"
        else:
            self._verification = safety.verify_model(data, name, self._backend, sha256=self._sha256,
                                                     delegate=delegate, arena_size=arena_size).source
        self._meta = read_model_metadata(data)
        self._notes: List[str] = []
        self._interpreter = make_interpreter(data, self._num_threads, self._backend, name, delegate, arena_size)
        self._delegate = delegate
        self._signature = safety.check_signature(self._interpreter, name)
        input_detail = self._interpreter.get_input_details()[0]
        output_detail = self._interpreter.get_output_details()[0]
        self._input_index = input_detail["index"]
        self._output_index = output_detail["index"]
        self._input_quant = tensor_quantization(input_detail, "input", name)
        self._output_quant = tensor_quantization(output_detail, "output", name)
        self._channels = self._signature.input_shape[3]

        self._preprocess, self._preprocess_source = self._resolve_preprocess(preprocess, name)
        self._encode = input_encoder(self._preprocess, self._input_quant, self._channels)
        self._encode_copies = self._encode.kind == "copy"  # the pixels are the input tensor
        self._input_hw = self._signature.input_size
        self._swapped_order = "BGR" if self._preprocess.color_order == "RGB" else "RGB"
        self._decode = output_decoder(self._output_quant)
        # Raw 8-bit output byte -> score, as Python floats for the k winners (None: float outputs).
        self._score_table = None if self._decode.table is None else self._decode.table.tolist()
        self._labels, self._labels_source = self._resolve_labels(labels, name)
        self._output_kind = self._resolve_output_kind()
        self._lock = threading.Lock()  # one interpreter, one invoke at a time (the web page shares models)

    # --- set-up ----------------------------------------------------------------------------------
    # Precedence, the same for labels and preprocessing: the argument > what the file says > a file beside
    # it (labels only) > an assumption, which is said in `notes`.
    def _resolve_preprocess(self, override, name: str):
        from edgevision.edge_runtime.quantization import pixel_normalization_from_quantization

        model_size = self._signature.input_size
        if override is not None:
            config = _as_preprocess(override)
            if config.input_size != model_size:
                raise UsageError(
                    f"preprocess input_size is {list(config.input_size)} but {name} takes "
                    f"{list(model_size)} (height, width) images; use the model's input size"
                )
            return config, "argument"
        try:
            config = self._meta.preprocess(model_size)
        except ModelError as e:
            raise ModelError(f"{name}: {e}") from e
        if config is not None:
            return config, "metadata"
        # The file says nothing: 8-bit inputs say the pixel range through their quantization; float ones
        # are assumed to be MobileNet-style [-1, 1].
        if self._input_quant is not None and self._input_quant.dtype in (np.uint8, np.int8):
            mean, std = pixel_normalization_from_quantization(self._input_quant)
        else:
            mean, std = MINUS_ONE_TO_ONE
        config = PreprocessConfig(input_size=model_size, color_order="RGB", mean=mean, std=std)
        self._notes.append(
            f"{Path(name).name} does not say how to normalise its input: assuming {config.input_size[0]}x"
            f"{config.input_size[1]} RGB, mean {mean[0]:g}, std {std[0]:g}; pass a preprocess file if that is wrong"
        )
        return config, "inferred"

    def _resolve_labels(self, labels, name: str):
        """(labels, where they came from: "argument", "metadata", "beside" or "assumed")."""
        from edgevision.edge_runtime.labels import align_labels, labels_beside, load_labels

        n = self._signature.num_classes
        if labels is not None:
            if isinstance(labels, (str, os.PathLike)):
                return align_labels(load_labels(labels), n, source=f"labels file {labels}"), "argument"
            if isinstance(labels, (bytes, dict)) or not isinstance(labels, Sequence):
                raise UsageError(f"labels must be a list of class names or a labels file path, got {type(labels).__name__}")
            return align_labels([str(x) for x in labels], n, source="the labels given"), "argument"
        if self._meta.labels:
            return align_labels(list(self._meta.labels), n, source=f"the labels inside {name}"), "metadata"
        sibling = labels_beside(self._path)
        if sibling is not None:
            return align_labels(load_labels(sibling), n, source=f"labels file {sibling}"), "beside"
        self._notes.append(f"{Path(name).name} carries no labels and has no labels file beside it: showing "
                           "class_<index> (pass a labels file)")
        return [f"class_{i}" for i in range(n)], "assumed"

    def _resolve_output_kind(self) -> str:
        """"probabilities", "logits", or "auto": decided from the first output the model produces."""
        if self._meta.output in ("probabilities", "logits"):
            return self._meta.output
        q = self._output_quant
        if q is not None:
            expected = _SOFTMAX_QUANTIZATION.get(np.dtype(q.dtype).name)
            if expected and abs(q.scale - expected[0]) < 1e-9 and q.zero_point == expected[1]:
                return "probabilities"
        return "auto"

    # --- the stages ------------------------------------------------------------------------------
    def prepare(self, image: ImageLike, color_order: str = "BGR") -> np.ndarray:
        """An image of any size -> the model's input tensor (1, H, W, C) in the model's dtype.

        `image` is a uint8 HxWx3 array in `color_order` (gray, alpha and 16-bit arrays are converted),
        or a file path / encoded bytes (decoded as BGR). The result may share memory with `image`.
        """
        pixels, color_order = _as_pixels(image, color_order)
        if color_order == self._swapped_order and pixels.shape[:2] == self._input_hw and self._channels == 3:
            # A frame already at the input size: prepare_pixels would only swap the channels. Done here
            # directly because after a big model has run every extra Python/numpy call is a cache miss.
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
        else:
            pixels = prepare_pixels(pixels, self._preprocess, color_order)
        if self._channels == 1:
            code = cv2.COLOR_RGB2GRAY if self._preprocess.color_order == "RGB" else cv2.COLOR_BGR2GRAY
            pixels = cv2.cvtColor(pixels, code)[:, :, np.newaxis]
        if not pixels.flags.c_contiguous:  # only when neither resize nor colour swap made a new array
            pixels = np.ascontiguousarray(pixels)
        if self._encode_copies:
            return pixels[np.newaxis]
        return self._encode(pixels[np.newaxis])

    def invoke(self, input_tensor: np.ndarray) -> np.ndarray:
        """Run the interpreter on a prepared input tensor; the raw output (still quantized, if it is)."""
        interpreter = self._interpreter
        with self._lock:
            try:
                interpreter.set_tensor(self._input_index, input_tensor)
            except ValueError as e:
                raise self._input_error(input_tensor) from e
            interpreter.invoke()
            return interpreter.get_tensor(self._output_index)

    def invoke_batch(self, input_tensors: Sequence[np.ndarray]) -> np.ndarray:
        """`invoke` on each prepared tensor in turn (edge models take one image per call); the raw
        outputs stacked, shape (N, classes). Holds the lock once for the whole batch."""
        out = np.empty((len(input_tensors), self.num_classes), dtype=np.dtype(self.output_dtype))
        interpreter = self._interpreter
        set_tensor, run, get_tensor = interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor
        in_index, out_index = self._input_index, self._output_index
        with self._lock:
            for i, tensor in enumerate(input_tensors):
                try:
                    set_tensor(in_index, tensor)
                except ValueError as e:
                    raise self._input_error(tensor) from e
                run()
                out[i] = get_tensor(out_index).reshape(-1)
        return out

    def _input_error(self, tensor) -> UsageError:
        got = getattr(tensor, "shape", None), getattr(tensor, "dtype", None)
        return UsageError(
            f"input tensor has shape {got[0]} and dtype {got[1]}; the model takes "
            f"{list(self.input_shape)} {self.input_dtype} (build it with Classifier.prepare)"
        )

    def scores_from_output(self, raw: np.ndarray) -> np.ndarray:
        """Raw output(s) -> float32 probabilities of shape (N, classes)."""
        scores = self._decode(raw).reshape(-1, self._signature.output_shape[-1])
        if self._output_kind == "probabilities":
            return scores
        if self._output_kind == "logits":
            return softmax(scores)
        # A model without metadata: decided once, from its first output, so that every frame is treated
        # alike and later calls skip the check.
        is_prob = looks_like_probabilities(scores, quantized=self._output_quant is not None)
        self._output_kind = "probabilities" if is_prob else "logits"
        return scores if is_prob else softmax(scores)

    def top_k(self, scores_row: np.ndarray, k: int = 5) -> List[Classification]:
        """The k best classes of one row of scores, best first (ties: lower index first)."""
        row = np.asarray(scores_row).reshape(-1)
        if row.shape[0] != self.num_classes:
            raise UsageError(f"scores row has {row.shape[0]} values; the model has {self.num_classes} classes")
        return rank(row, self._labels, _check_k(k))

    # --- one-call API ----------------------------------------------------------------------------
    def scores(self, image: ImageLike, color_order: str = "BGR") -> np.ndarray:
        """Probabilities of every class for one image (1-D float32)."""
        return self.scores_from_output(self.invoke(self.prepare(image, color_order)))[0]

    def scores_batch(self, images: Sequence, color_order: str = "BGR", prepared: bool = False) -> np.ndarray:
        """Probabilities (N, classes) of several images, decoded in one call after the last invoke.

        prepared: the items are already input tensors from `prepare` (e.g. made on other threads).
        """
        tensors = images if prepared else [self.prepare(image, color_order) for image in images]
        if not len(tensors):
            return np.zeros((0, self.num_classes), np.float32)
        return self.scores_from_output(self.invoke_batch(tensors))

    def classify(self, image: ImageLike, top_k: int = 5, color_order: str = "BGR", *,
                 timings: Optional["ClassifyTimings"] = None,
                 adjust_scores: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> List[Classification]:
        """The `top_k` most likely classes of one image, best first (ties: lower index first).

        timings: a ClassifyTimings that this call fills with its prepare / invoke / postprocess times.
        adjust_scores: applied to the probabilities before ranking (the camera's smoothing over frames).
        """
        k = _check_k(top_k)
        if timings is None:
            return self._ranked(self.invoke(self.prepare(image, color_order)), k, adjust_scores)
        clock = time.perf_counter_ns
        t0 = clock()
        tensor = self.prepare(image, color_order)
        t1 = clock()
        raw = self.invoke(tensor)
        t2 = clock()
        top = self._ranked(raw, k, adjust_scores)
        timings.prepare_ns, timings.invoke_ns, timings.postprocess_ns = t1 - t0, t2 - t1, clock() - t2
        return top

    def classify_batch(self, images: Sequence[ImageLike], top_k: int = 5,
                       color_order: str = "BGR") -> List[List[Classification]]:
        """`classify` for several images (one interpreter call each: edge models have batch size 1)."""
        k = _check_k(top_k)
        return [self.classify(image, k, color_order) for image in images]

    def _ranked(self, raw: np.ndarray, k: int, adjust) -> List[Classification]:
        if adjust is None and self._output_kind == "probabilities" and (
            self._score_table is not None or self._output_quant is None
        ):
            # Dequantization is monotonic (scale > 0): rank the raw outputs, decode only the winners.
            return rank(raw.reshape(-1), self._labels, k, self._score_table)
        scores = self.scores_from_output(raw)[0]
        if adjust is not None:
            scores = np.asarray(adjust(scores)).reshape(-1)
        return rank(scores, self._labels, k)

    # --- what the model is -----------------------------------------------------------------------
    @property
    def labels(self) -> List[str]:
        return list(self._labels)

    @property
    def num_classes(self) -> int:
        return self._signature.num_classes

    @property
    def preprocess(self) -> PreprocessConfig:
        return self._preprocess

    @property
    def preprocess_source(self) -> str:
        """"metadata", "argument" or "inferred" (a third-party model's input tensor)."""
        return self._preprocess_source

    @property
    def metadata(self) -> Optional[dict]:
        """edgevision's JSON document inside the file (None for models made elsewhere)."""
        return dict(self._meta.document) if self._meta.document else None

    @property
    def model_metadata(self):
        """Everything the file says about itself (edge_runtime.model_metadata.ModelMetadata)."""
        return self._meta

    @property
    def labels_source(self) -> str:
        """"argument", "metadata", "beside" (a labels file next to the model) or "assumed"."""
        return self._labels_source

    @property
    def notes(self) -> List[str]:
        """What was assumed rather than read from the model or given, one sentence each."""
        return list(self._notes)

    @property
    def signature(self):
        return self._signature

    @property
    def input_shape(self) -> tuple:
        return tuple(self._signature.input_shape)

    @property
    def input_size(self) -> tuple:
        return self._signature.input_size

    @property
    def input_dtype(self) -> str:
        return self._signature.input_dtype

    @property
    def output_dtype(self) -> str:
        return self._signature.output_dtype

    @property
    def output_kind(self) -> str:
        return self._output_kind

    @cached_property
    def quantization(self) -> str:
        """The metadata's quantization, else read off the tensors: int8, uint8, int16x8, float16, float32..."""
        declared = self._meta.quantization
        if isinstance(declared, str) and declared:
            return declared
        if self.input_dtype in ("int8", "uint8"):
            return self.input_dtype
        if self.input_dtype == "int16":
            return "int16x8"
        types = {np.dtype(d["dtype"]).name for d in self._interpreter.get_tensor_details()}
        if "float16" in types:
            return "float16"
        if types & {"int8", "uint8"}:
            return "quantized (float input/output)"
        return "float32"

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def delegate(self):
        """The external delegate (edge_runtime.delegates.DelegateSpec) the interpreter was given, or None."""
        return self._delegate

    @cached_property
    def backend_version(self) -> str:
        # Looked up on first use: importlib.metadata costs more start-up than `predict` spends classifying.
        from edgevision.edge_runtime.interpreter import backend_version

        return backend_version(self._backend)

    @property
    def num_threads(self) -> int:
        """Interpreter threads (None at construction resolves to every usable core)."""
        return self._num_threads

    @property
    def model_path(self) -> Path:
        return self._path

    @property
    def model_bytes(self) -> int:
        """Size of the model file in bytes."""
        return self._model_bytes

    @property
    def sha256(self) -> str:
        return self._sha256

    @property
    def verification(self) -> str:
        """How the model was found safe to open: "child", "cache" (an earlier child) or "trusted"."""
        return self._verification

    @property
    def interpreter(self):
        """The underlying interpreter (for benchmarks; do not call it while another thread classifies)."""
        return self._interpreter

    def __repr__(self) -> str:
        return (
            f"Classifier({str(self._path)!r}, {self.num_classes} classes, input {list(self.input_shape)} "
            f"{self.input_dtype}, {self.quantization}, backend={self._backend} {self.backend_version})"
        )


# --- helpers ---------------------------------------------------------------------------------------
def _read_model(path: Path, name: str) -> bytes:
    from edgevision.edge_runtime.files import MAX_MODEL_BYTES, read_regular_file

    if path.is_dir():
        raise ModelError(f"{name} is a directory; expected a .tflite file")
    return read_regular_file(path, MAX_MODEL_BYTES, "model", ModelError)


def _as_preprocess(value) -> PreprocessConfig:
    if isinstance(value, PreprocessConfig):
        return value
    if isinstance(value, dict):
        return PreprocessConfig.from_dict(value)
    if isinstance(value, (str, os.PathLike)):
        return PreprocessConfig.load(value)
    raise UsageError(f"preprocess must be a PreprocessConfig, a dict or a JSON file path, got {type(value).__name__}")


def _as_pixels(image: ImageLike, color_order: str):
    """-> (uint8 HxWx3 array, its colour order). Paths and bytes are decoded (as BGR)."""
    if type(image) is np.ndarray and image.dtype is _UINT8 and image.ndim == 3 and image.shape[2] == 3 and image.size:
        return image, color_order  # the camera's case, checked first; prepare_pixels checks the order
    if isinstance(image, (str, os.PathLike)):
        return read_image(image), "BGR"
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image)), "BGR"
    if color_order not in COLOR_ORDERS:
        raise UsageError(f"color_order must be one of {COLOR_ORDERS}, got {color_order!r}")
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected an image as a numpy array, a path or encoded bytes, got {type(image).__name__}")
    if image.ndim not in (2, 3) or image.size == 0 or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ImageError(f"expected an HxWx3 image array, got shape {image.shape}")
    if image.dtype != np.uint8 or image.ndim == 2 or image.shape[2] != 3:
        image = to_bgr(image)  # gray -> 3 channels, alpha dropped, 16-bit -> 8-bit: order-neutral
    return image, color_order


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"top_k must be a positive integer, got {k!r}")
    return int(k)


def rank(row: np.ndarray, labels: Sequence[str], k: int, table: Optional[list] = None) -> List[Classification]:
    """The k largest of `row` as Classifications, best first; ties: the lower index first.

    `row` holds scores, or raw 8-bit outputs that `table` maps to scores. After a large model has run each
    numpy call is a cache miss, so this is one argpartition (O(N)) and plain Python for the k winners.
    """
    n = row.shape[0]
    k = min(k, n)
    if k == n:
        best, values = list(range(n)), row.tolist()
    else:
        best = np.argpartition(row, n - k)[n - k :].tolist()
        values = [row.item(i) for i in best]
        kth = min(values)
        if int(np.count_nonzero(row == kth)) > values.count(kth):
            # The cut went through a tie, where argpartition keeps any of the equals: keep the lowest indices.
            above = np.flatnonzero(row > kth).tolist()
            best = above + np.flatnonzero(row == kth)[: k - len(above)].tolist()
            values = [row.item(i) for i in best]
    ranked = sorted(zip(values, best), key=lambda vi: (-vi[0], vi[1]))
    if table is None:
        return [Classification(i, labels[i], float(v)) for v, i in ranked]
    return [Classification(i, labels[i], table[v & 0xFF]) for v, i in ranked]


def looks_like_probabilities(scores: np.ndarray, quantized: bool = False) -> bool:
    """Whether rows of model outputs already are probability distributions (a softmax's output).

    Logits would have to lie in [0, 1] and sum to 1 by chance. Float rows sum to 1 within rounding;
    quantized ones carry up to half a step of error per class, hence the wider tolerance.
    """
    scores = np.asarray(scores)
    if not scores.size:
        return True
    tolerance = _QUANT_PROB_TOLERANCE if quantized else _FLOAT_PROB_TOLERANCE
    return bool(
        scores.min() >= -tolerance
        and scores.max() <= 1 + tolerance
        and np.all(np.abs(scores.sum(axis=-1) - 1) <= tolerance)
    )


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32, copy=False)


__all__ = ["Classification", "ClassifyTimings", "Classifier", "looks_like_probabilities", "rank", "softmax"]
