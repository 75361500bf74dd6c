"""Loading the model to convert, safely: models are programs.

A `.keras` file's config can name a Lambda layer whose Python bytecode runs when the model is loaded. So the
config is read from the archive and inspected *before* Keras deserialises anything; Keras' own safe mode stays
on as a second line; and only an explicit `unsafe_load=True` (`--unsafe-load`) loads such a model. The config
is read with a cap, checked against its declared size before anything is inflated: a 3 KB file whose config
inflated to 3 GB took the check itself down. A SavedModel's graph is code too: graphs with file, process or
network operations are refused the same way (`convert.saved_model_scan`).

Sources: a run directory from `edgevision train`, a `.keras` file, or a TensorFlow SavedModel directory.
Labels and preprocessing come from the run directory, from files beside the model, or from explicit
`labels=` / `preprocess=` files (which win).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

from edgevision.edge_runtime.files import check_regular_file, read_regular_file
from edgevision.edge_runtime.labels import align_labels, load_labels
from edgevision.edge_runtime.model_ref import RUN, SAVED_MODEL  # one set of kind names (KERAS the third)
from edgevision.edge_runtime.preprocess import PreprocessConfig
from edgevision.errors import EdgeVisionError, LabelsError, ModelError, UsageError, first_line, require


#: Largest model config read from a .keras archive: the configs of large image classifiers are a few MB.
MAX_KERAS_CONFIG_BYTES = 64 * 1024 * 1024
#: A member of a .keras archive may inflate to more than this only at a plausible ratio: weights are floats and
#: compress a few times at most (all-zero layers more), while a zip bomb inflates by a thousand or more.
KERAS_MEMBER_FREE_BYTES = 64 * 1024 * 1024
MAX_KERAS_MEMBER_RATIO = 200
#: Largest saved_model.pb read for the safety check (protobuf's own limit is 2 GB; weights live beside it).
MAX_SAVED_MODEL_PB_BYTES = 1024 * 1024 * 1024

#: Layer classes whose config carries Python code (bytecode or a lambda) that runs on load.
CODE_CARRYING_LAYERS = ("Lambda",)


@dataclass
class SourceModel:
    """The model to convert and what travels with it."""

    path: Path
    kind: str  # KERAS, SAVED_MODEL or RUN
    name: str  # stem for output file names
    labels: List[str]
    preprocess: PreprocessConfig
    keras_model: Any = None  # a Keras 3 model (None for a SavedModel)
    saved_model: Any = None  # the loaded SavedModel (None for Keras sources)
    run: Any = None  # edgevision.train.run_dir.RunInfo for run directories

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path.resolve()), "name": self.name}


def load_source(source, labels: Optional[Path] = None, preprocess: Optional[Path] = None,
                unsafe_load: bool = False) -> SourceModel:
    """Open a run directory, `.keras` file or SavedModel; raise ModelError/LabelsError/UsageError clearly."""
    src = open_source(source, labels, preprocess, unsafe_load)
    load_model(src, unsafe_load)
    return src


def open_source(source, labels: Optional[Path] = None, preprocess: Optional[Path] = None,
                unsafe_load: bool = False) -> SourceModel:
    """Everything but the model itself (cheap: no TensorFlow): format, labels, preprocessing, and for a
    .keras file the safety check of its config, so bad input fails before the slow part."""
    from edgevision.edge_runtime.model_ref import TFLITE, resolve_model_ref

    ref = resolve_model_ref(source)  # the kinds there are KERAS, RUN and SAVED_MODEL here
    path, run, kind, model_path, name = ref.path, None, ref.kind, ref.model_file, ref.name
    if kind == TFLITE:
        raise UsageError(f"{path} is already a TensorFlow Lite model; convert takes a Keras model or a run directory")
    require_keras("converting a model to TensorFlow Lite", tensorflow=True)  # before the slow part, not in it
    if kind == RUN:
        from edgevision.train.run_dir import load_run

        run = load_run(path)
    label_list = _labels(labels, run, ref.labels_file, path)
    config = _preprocess(preprocess, run, ref.preprocess_file, path)
    if kind == SAVED_MODEL:
        check_saved_model(model_path, unsafe_load)
    else:
        check_keras_file(model_path, unsafe_load)
    return SourceModel(path=path, kind=kind, name=name, labels=label_list, preprocess=config, run=run)


def load_model(src: SourceModel, unsafe_load: bool = False) -> SourceModel:
    """Load the model of an opened source and check it against the labels and preprocessing."""
    if src.kind == SAVED_MODEL:
        src.saved_model = load_saved_model(src.path)
    else:
        src.keras_model = load_keras(src.run.model_path if src.run is not None else src.path, unsafe_load=unsafe_load)
    check_model_matches(src)
    return src


def _labels(explicit, run, beside: Optional[Path], path: Path) -> List[str]:
    """The option > the run's > the file beside the model (model_ref found it)."""
    if explicit is not None:
        return load_labels(explicit)
    if run is not None:
        return list(run.labels)
    if beside is not None:
        return load_labels(beside)
    raise UsageError(f"no class labels for {path}: pass --labels FILE (one class name per line, in output order)")


def _preprocess(explicit, run, beside: Optional[Path], path: Path) -> PreprocessConfig:
    if explicit is not None:
        return PreprocessConfig.load(explicit)
    if run is not None:
        return run.preprocess
    if beside is not None:
        return PreprocessConfig.load(beside)
    raise UsageError(
        f"no preprocessing settings for {path}: pass --preprocess FILE.json (input_size, color_order, mean, std "
        "in pixel units) so that the .tflite file says how to feed it"
    )


# --- Keras ---------------------------------------------------------------------------------------------
def keras_config(path: Path, max_bytes: int = MAX_KERAS_CONFIG_BYTES) -> dict:
    """The model config inside a .keras archive, read without deserialising anything and never inflating more
    than `max_bytes` (ModelError for a config declaring more, or inflating past what it declares)."""
    check_regular_file(path, "model", ModelError)  # a FIFO or a device would block or never end
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo("config.json")
            except KeyError:
                raise ModelError(f"{path} is not a Keras model archive (config.json is missing); the file is corrupt or not a .keras file") from None
            if info.file_size > max_bytes:
                raise ModelError(f"{path}: its config.json declares {info.file_size} bytes, more than the "
                                 f"{max_bytes} a model config may be; the file is damaged or not a model")
            check_keras_members(archive, path)
            with archive.open(info) as member:
                # read(n) inflates at most n bytes (read() would inflate all, then cut to the declared size),
                # and a member holding more than its header says fails zipfile's checksum.
                return json.loads(member.read(info.file_size + 1))
    except zipfile.BadZipFile as e:
        raise ModelError(f"{path} is not a valid .keras file (not a zip archive): it is corrupt or truncated") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: the model config inside the archive is not valid JSON (corrupt file)") from e
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror or e}") from e


def check_keras_members(archive: zipfile.ZipFile, path: Path) -> None:
    """ModelError for a member (the weights, usually) that would inflate like a zip bomb when Keras loads it.

    Declared sizes are what count: zipfile inflates a member no further than its header says.
    """
    for info in archive.infolist():
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > KERAS_MEMBER_FREE_BYTES and ratio > MAX_KERAS_MEMBER_RATIO:
            raise ModelError(
                f"{path}: its member {info.filename!r} would inflate {info.compress_size} bytes to "
                f"{info.file_size} ({ratio:.0f} times; weights compress a few times at most): the file is a zip "
                "bomb or damaged, refusing to load it")


def iter_layer_configs(config: Any) -> Iterator[dict]:
    """Every layer config in a (possibly nested) Keras config."""
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            yield config
        for value in config.values():
            yield from iter_layer_configs(value)
    elif isinstance(config, list):
        for value in config:
            yield from iter_layer_configs(value)


def code_carrying_layers(config: dict) -> List[Tuple[str, str]]:
    """(layer name, class) of layers that would run Python code from the file when loaded."""
    out = []
    for layer in iter_layer_configs(config):
        if layer.get("class_name") in CODE_CARRYING_LAYERS:
            out.append((str(layer["config"].get("name", "?")), layer["class_name"]))
    return out


def check_keras_file(path: Path, unsafe_load: bool = False) -> None:
    """ModelError for a corrupt archive, or for code-carrying layers unless `unsafe_load`."""
    config = keras_config(path)
    risky = code_carrying_layers(config)
    if risky and not unsafe_load:
        names = ", ".join(f"{n} ({c})" for n, c in risky[:3])
        raise ModelError(
            f"{path} contains {len(risky)} Lambda layer(s) ({names}): a Lambda layer stores Python code that runs "
            "when the model is loaded, so a model from someone else could run anything on this machine; "
            "refusing to load it. If you trust where it came from, pass --unsafe-load"
        )


def load_keras(path: Path, unsafe_load: bool = False):
    """Load a .keras model with safe mode on; refuse code-carrying layers unless `unsafe_load`."""
    check_keras_file(path, unsafe_load)
    require_keras("loading a Keras model")
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=not unsafe_load)
    except EdgeVisionError:
        raise
    except Exception as e:  # Keras raises ValueError/TypeError/OSError/KeyError for broken or foreign files
        raise ModelError(f"cannot load Keras model {path}: {first_line(e, 300)}") from e
    return in_float32(model)


def in_float32(model):
    """`model` with float32 maths throughout. One saved under a mixed-precision policy (`train
    --mixed-precision`) computes in bfloat16 or float16, which the converter and int8 calibration cannot take
    (a float32 tensor reaches a bfloat16 convolution); its variables are float32 already, so the copy is exact."""
    if all(layer.dtype_policy.name == "float32" for layer in _layers_within(model)):
        return model
    copy = model.__class__.from_config(_float32_policies(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def _layers_within(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # a nested model (MobileNetV2's base)
            yield from _layers_within(layer)


def _float32_policies(config):
    if isinstance(config, list):
        return [_float32_policies(item) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy" and str(config.get("config", {}).get("name")).startswith("mixed_"):
        return "float32"
    return {key: _float32_policies(value) for key, value in config.items()}


def require_keras(purpose: str, tensorflow: bool = False) -> None:
    """DependencyError with the install hint `train` gives when Keras (with `tensorflow`, TensorFlow too) is not
    installed, instead of `internal error: No module named 'keras'` from deep inside a command. Checked
    without importing either, so a command can ask first and fail before its slow part."""
    import importlib.util

    for module in ("keras", "tensorflow") if tensorflow else ("keras",):
        if importlib.util.find_spec(module) is None:
            require(module, "train", purpose)  # raises the DependencyError naming the extra


# --- SavedModel ----------------------------------------------------------------------------------------
def check_saved_model(path: Path, unsafe_load: bool = False) -> None:
    """ModelError for a SavedModel whose graph has file, process or network operations, unless `unsafe_load`."""
    from edgevision.convert.saved_model_scan import GraphFormatError, unsafe_operations

    pb = path / "saved_model.pb"
    data = read_regular_file(pb, MAX_SAVED_MODEL_PB_BYTES, "SavedModel graph", ModelError)
    try:
        risky = unsafe_operations(data)
    except GraphFormatError as e:
        raise ModelError(f"{pb} is not a SavedModel graph ({e}); the file is corrupt") from e
    if risky and not unsafe_load:
        raise ModelError(
            f"SavedModel {path} has operations that reach outside the model ({', '.join(risky[:6])}): its graph "
            "runs when it is converted and evaluated, so a model from someone else could read or write files or "
            "run code on this machine; refusing to load it. If you trust where it came from, pass --unsafe-load"
        )


def load_saved_model(path: Path):
    tf = require("tensorflow", "train", "loading a SavedModel")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:
        raise ModelError(f"cannot load SavedModel {path}: {first_line(e, 300)}") from e
    if "serving_default" not in getattr(loaded, "signatures", {}):
        raise ModelError(f"SavedModel {path} has no 'serving_default' signature; export it with model.export(dir)")
    return loaded


def saved_model_function(loaded):
    """A callable float batch -> probabilities for a SavedModel's serving signature (one input, one output)."""
    fn = loaded.signatures["serving_default"]
    _, kwargs = fn.structured_input_signature
    if len(kwargs) != 1 or len(fn.structured_outputs) != 1:
        raise ModelError("the SavedModel's serving signature must have exactly one input and one output (an image classifier)")
    in_name = next(iter(kwargs))
    out_name = next(iter(fn.structured_outputs))

    def call(x):
        import tensorflow as tf

        return fn(**{in_name: tf.constant(x)})[out_name].numpy()

    return call, tuple(kwargs[in_name].shape), tuple(fn.structured_outputs[out_name].shape)


# --- consistency ---------------------------------------------------------------------------------------
def model_io_shapes(src: SourceModel) -> Tuple[tuple, tuple]:
    if src.keras_model is not None:
        model = src.keras_model
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ModelError(
                f"{src.path}: the model has {len(model.inputs)} input(s) and {len(model.outputs)} output(s); "
                "an image classifier has one image input and one class-probability output"
            )
        return tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    _, in_shape, out_shape = saved_model_function(src.saved_model)
    return in_shape, out_shape


def check_model_matches(src: SourceModel) -> None:
    """The model must take one HxWx3 image of the configured size and give one score per label."""
    in_shape, out_shape = model_io_shapes(src)
    if len(in_shape) != 4 or in_shape[-1] != 3:
        raise ModelError(f"{src.path}: the model's input has shape {in_shape}; expected (batch, height, width, 3)")
    size = tuple(in_shape[1:3])
    if None not in size and size != tuple(src.preprocess.input_size):
        raise ModelError(
            f"{src.path}: the model takes {size[0]}x{size[1]} images but preprocess.json says "
            f"{src.preprocess.input_size[0]}x{src.preprocess.input_size[1]}; fix the preprocessing settings"
        )
    if len(out_shape) != 2 or out_shape[-1] is None:
        raise ModelError(f"{src.path}: the model's output has shape {out_shape}; expected (batch, classes)")
    if len(src.labels) + 1 == int(out_shape[-1]):
        # align_labels would add a 'background' class here (TFLite's 1001-output ImageNet models); a model
        # being converted has the labels it was trained with, so one missing name is a mistake, not a convention.
        raise LabelsError(
            f"the labels file has {len(src.labels)} class names but the model has {out_shape[-1]} outputs; "
            f"give a labels file with {out_shape[-1]} lines (one class name per output, in output order)"
        )
    src.labels = align_labels(src.labels, int(out_shape[-1]), source="the labels file")

