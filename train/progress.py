"""How Keras reports training progress: a live bar on a terminal, one line per epoch anywhere else.

Keras' default (verbose="auto") draws its progress bar whatever stdout is, so a log piped to a file or a CI
console fills with carriage returns and ANSI codes, one rewrite per step. Both the training loop and the
QAT/pruning fine-tunes of `edgevision convert` ask here instead. No Keras import: this only decides a number.
"""

from __future__ import annotations

import sys
from typing import Union

BAR, LINE_PER_EPOCH = 1, 2  # Keras' verbose values


def keras_verbose(requested: Union[int, str] = "auto", stream=None) -> int:
    """Keras' `verbose` for `fit`: `requested` itself unless it is "auto", which becomes the bar when
    `stream` (default: sys.stdout, where Keras writes) is a terminal and one line per epoch otherwise."""
    if requested != "auto":
        return int(requested)
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return BAR if isatty is not None and isatty() else LINE_PER_EPOCH
    except ValueError:  # a closed stream: nothing will be seen either way
        return LINE_PER_EPOCH
