"""The exceptions edgevision raises for problems a user can fix.

Library code raises these (never `sys.exit`, never `print`); the CLI turns each into one line on
stderr and a non-zero exit status. Messages say what was received, what was expected and how to fix it.
"""

from __future__ import annotations

from typing import Optional, Sequence


class EdgeVisionError(Exception):
    """Base class: a problem with the user's input, files or environment, not a bug."""

    #: Process exit status the CLI uses for this kind of error.
    exit_code = 1


class UsageError(EdgeVisionError):
    """Arguments that cannot work together, or a value out of range."""

    exit_code = 2


class DataError(EdgeVisionError):
    """A dataset or image folder that is missing, empty or unreadable."""


class ImageError(EdgeVisionError):
    """An image that cannot be decoded, or is too large to decode safely."""


class ModelError(EdgeVisionError):
    """A model file that is missing, corrupt, unsafe or not an image classifier."""


class LabelsError(EdgeVisionError):
    """Class labels that do not match the model's outputs."""


class ConversionError(EdgeVisionError):
    """A model that TensorFlow Lite cannot convert as asked."""


class SourceError(EdgeVisionError):
    """A camera, stream or video that cannot be opened or stopped delivering frames."""

    exit_code = 2


class WriteError(EdgeVisionError, OSError):
    """An output that cannot be written (disk full, read-only, no permission); the earlier file is kept.

    Also an OSError, so code that tolerates a failed write (a cache) keeps catching it as one."""


class DependencyError(EdgeVisionError):
    """An optional dependency (an extra) that this command needs is not installed."""


def first_line(error: BaseException, limit: Optional[int] = None, skip: Sequence[str] = ()) -> str:
    """The first meaningful line of an exception from a library (TensorFlow, Keras, h5py, tfmot), for a
    one-line message: their texts run to pages. Lines starting with a `skip` prefix are passed over; an
    exception without text gives its type's name."""
    lines = [line.strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line and not line.startswith(tuple(skip))]
    return lines[0][:limit] if lines else type(error).__name__


def require(module: str, extra: str, purpose: str):
    """Import `module` or raise DependencyError naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DependencyError(
            f"{purpose} needs the Python package '{module}', which is not installed; "
            f"install it with: pip install 'edgevision[{extra}]'"
        ) from e
