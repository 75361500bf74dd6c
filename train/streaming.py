"""Training data that need not fit in memory: where the prepared pixels live, chosen by what the data needs.

`memory` (the fast path, and the default when it fits) holds every image prepared, as uint8 at the input
size, plus the padded copy that pad-and-crop reads. When that does not fit in the memory budget, the images
are read from disk instead, through the same decoding and `prepare_pixels` (a lazily drawn split), so a
streamed run trains on exactly the pixels a cached run would:

- `disk`: the split is decoded once into a file of prepared uint8 pixels in the run directory
  (`cache/`), read back per batch with positioned reads (no mapping, so the process's memory holds only
  the batch being made, not the page cache). A resumed run reuses the file; a completed run deletes it.
- `none`: nothing is cached; every batch decodes its image files again (every epoch), which needs no disk
  space and suits data on fast storage or images already small.

`auto` picks memory when the estimate fits the budget, else disk when the run directory's file system has the
space, else none. The budget is `--memory-budget`, else EDGEVISION_MEMORY_BUDGET, else half of the memory
available now (MemAvailable, or what the cgroup still allows when that is less).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edgevision.errors import DataError, UsageError

CACHE_MODES = ("auto", "memory", "disk", "none")
BUDGET_ENV = "EDGEVISION_MEMORY_BUDGET"
#: Of the memory available when training starts: the model, the framework and the batches in flight need the rest.
MEMORY_FRACTION = 0.5
CACHE_DIR = "cache"
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str, option: str = "--memory-budget") -> int:
    """'512M', '2G', '1.5GiB' or a number of bytes -> bytes (binary units: 1K = 1024)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text).lower())
    if not match:
        raise UsageError(f"{option} must be a size such as 512M or 2G, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def available_memory() -> int:
    """Bytes this process may still take: MemAvailable, capped by a cgroup (v2 or v1) limit when one is set."""
    options = [_meminfo_available()]
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 2**60:  # v1 writes a huge number for "no limit"
            options.append(max(0, cap - used))
    known = [o for o in options if o is not None]
    return min(known) if known else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _meminfo_available() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _read_int(path: str) -> Optional[int]:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):  # absent, or "max" (cgroup v2's "no limit")
        return None


def memory_budget(option: Optional[str] = None) -> int:
    """The bytes the image cache may take: the option, else the environment variable, else a fraction of what
    is available."""
    if option:
        return parse_bytes(option)
    if os.environ.get(BUDGET_ENV):
        return parse_bytes(os.environ[BUDGET_ENV], BUDGET_ENV)
    return int(available_memory() * MEMORY_FRACTION)


def memory_needed(n_train: int, n_val: int, side: Sequence[int], pad: int) -> int:
    """Bytes the in-memory path holds: every image prepared, and the training images' padded copy."""
    h, w = side
    return (n_train + n_val) * h * w * 3 + (n_train * (h + 2 * pad) * (w + 2 * pad) * 3 if pad else 0)


def choose_cache(mode: str, needed: int, budget: int, disk_free: int, on_disk: int) -> str:
    """The data path: `mode` when it is not auto; else memory when it fits, else disk when there is room."""
    check_cache_mode(mode)
    if mode != "auto":
        return mode
    if needed <= budget:
        return "memory"
    return "disk" if on_disk * 1.1 < disk_free else "none"


def check_cache_mode(mode: str) -> None:
    if mode not in CACHE_MODES:
        raise UsageError(f"--cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")


def free_disk(path: Path) -> int:
    """Free bytes on the file system that will hold `path` (its nearest existing parent)."""
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


class PixelSource:
    """A split part's prepared images as an array-like that holds none of them: `source[idx]` decodes just
    those images, through the same decoding and `prepare_pixels` as the in-memory path, in the order asked."""

    dtype = np.dtype(np.uint8)

    def __init__(self, part):
        self.part = part
        self.shape = (len(part),) + tuple(part.pixels(np.arange(min(1, len(part)))).shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        index = np.arange(len(self))[key]
        if np.ndim(index) == 0:
            return self._read(np.asarray([index]))[0]
        if len(index) == 0:
            return np.zeros((0,) + self.shape[1:], np.uint8)
        return self._parallel(index)

    def _parallel(self, index: np.ndarray) -> np.ndarray:
        """The images of one request read by several threads at once (decoding and pread release the GIL).
        Parallel within a batch, not ahead of it: Keras' read-ahead workers draw the batch order once more
        when fit() starts and keep batches from that draw, so with them a streamed epoch would differ from
        a cached one and a resumed run from an uninterrupted one."""
        threads = min(8, os.cpu_count() or 1, max(1, len(index) // 16))
        if threads == 1:
            return self._read(index)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            return np.concatenate(list(pool.map(self._read, np.array_split(index, threads))))

    def _read(self, index: np.ndarray) -> np.ndarray:
        return self.part.pixels(index)


class DiskCache(PixelSource):
    """The prepared pixels of a split part in one file, row by row, written once and read with pread."""

    def __init__(self, part, folder: Path, key: dict, chunk: Optional[int] = None):
        super().__init__(part)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{part.which}.uint8"
        self.row = int(np.prod(self.shape[1:]))
        meta_path = folder / f"{part.which}.json"
        meta = {**key, "which": part.which, "shape": list(self.shape)}
        if not (_same_meta(meta_path, meta) and _size(self.path) == self.row * len(self)):
            meta_path.unlink(missing_ok=True)
            # Decoded a few 64-image tasks at a time (decode_folder's unit of work): parallel, and bounded.
            self._write(chunk or 64 * min(4, os.cpu_count() or 1))
            meta_path.write_text(json.dumps(meta, sort_keys=True))
        self.fd = os.open(self.path, os.O_RDONLY)

    def _write(self, chunk: int) -> None:
        from edgevision import atomic

        with atomic.atomic_path(self.path, suffix=".uint8") as tmp, open(tmp, "wb") as f:
            for start in range(0, len(self), chunk):
                pixels = np.ascontiguousarray(self.part.pixels(np.arange(start, min(start + chunk, len(self)))))
                f.write(pixels.tobytes())

    def _read(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index),) + self.shape[1:], np.uint8)
        flat = out.reshape(len(index), self.row)
        for k, i in enumerate(index):
            data = os.pread(self.fd, self.row, int(i) * self.row)
            if len(data) != self.row:
                raise DataError(f"the image cache {self.path} is shorter than it should be; delete it and re-run")
            flat[k] = np.frombuffer(data, np.uint8)
        return out

    def close(self) -> None:
        os.close(self.fd)


def _same_meta(path: Path, meta: dict) -> bool:
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(meta, sort_keys=True))
    except (OSError, ValueError):
        return False


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else -1


def remove_cache(out: Path) -> None:
    """A completed run needs no image cache: it is as large as the data set."""
    shutil.rmtree(Path(out) / CACHE_DIR, ignore_errors=True)


def streamed_split(spec, preprocess, mode: str, cache_dir: Path):
    """`spec`'s split with its pixels read on demand (`none`) or from a cache file in `cache_dir` (`disk`):
    a SplitData whose x_train and x_val are array-likes over the same pixels `load_split` would hold."""
    from edgevision.train.data import SplitData, draw_split

    split = draw_split(spec, preprocess, lazy=True)
    if mode == "disk":
        key = {"data_source": spec.record(), "input_size": list(preprocess.input_size),
               "color_order": preprocess.color_order, "resize": preprocess.resize}
        train, val = (DiskCache(part, Path(cache_dir), key) for part in (split.train, split.val))
    elif mode == "none":
        train, val = PixelSource(split.train), PixelSource(split.val)
    else:
        raise UsageError(f"streamed data is read from disk or decoded, not {mode!r}")
    return SplitData(train, split.train.labels, val, split.val.labels, split.classes, spec.record(), split.skipped)
