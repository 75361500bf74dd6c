"""Several devices and several hosts, through the frameworks' own data parallelism.

- JAX backend: Keras' `DataParallel` over the chosen devices; with several hosts, `jax.distributed` joins the
  processes first (`--coordinator HOST:PORT --num-hosts N --host-index I`, or what SLURM / Open MPI / a
  JAX_COORDINATOR_ADDRESS environment tell JAX), and the devices are every host's.
- TensorFlow backend: `tf.distribute.MirroredStrategy` over the chosen GPUs of one host.

`--batch-size` is the global batch: the images of one optimizer step over all devices and hosts, so the learning
rate (which the recipes derive from the batch size) and the batches themselves are the same whatever the device
count. Each host prepares every global batch (the augmentation's random draws are made for all of it) and feeds
its own share, so N hosts train on exactly the batches one host would. Only host 0 writes the run directory; the
others take part in gathering the weights for each checkpoint (a collective) and then drop their copy.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from edgevision.errors import UsageError, first_line

#: Environment variables that mean "this process is one of several" to JAX's own cluster detection.
_SCHEDULER_SIZES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
#: Host 0 finishes the run alone (final model, reports) while the others wait at JAX's shutdown barrier.
SHUTDOWN_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Cluster:
    """Where this process stands: its index among the processes and the devices training together."""

    process_index: int = 0
    process_count: int = 1
    devices: int = 1  # devices training, all hosts together
    backend: str = "tensorflow"

    @property
    def writer(self) -> bool:
        """Only the first process writes the run directory."""
        return self.process_index == 0

    @property
    def batch_multiple(self) -> int:
        """JAX shards each batch evenly over the devices, so every batch is cut to a multiple of their count
        (TensorFlow's strategy splits uneven batches itself)."""
        return self.devices if self.backend == "jax" else 1


def check_devices_option(devices: Optional[str]) -> None:
    if devices is not None and devices != "all" and not (str(devices).isdigit() and int(devices) >= 1):
        raise UsageError(f"--devices must be a number of devices (1 or more) or 'all', got {devices!r}")


def start_hosts(coordinator: Optional[str], num_hosts: Optional[int], host_index: Optional[int]) -> None:
    """Join a multi-host run before anything touches a device; nothing to do on one host."""
    given = [v is not None for v in (coordinator, num_hosts, host_index)]
    if not any(given) and not _scheduler_launched():
        return
    if any(given) and not all(given):
        raise UsageError("--coordinator, --num-hosts and --host-index go together (or set none of them)")
    if all(given):
        _check_hosts(coordinator, num_hosts, host_index)
        if num_hosts == 1:
            return
    import keras

    if keras.backend.backend() != "jax":
        raise UsageError("training on several hosts needs the JAX backend: set KERAS_BACKEND=jax "
                         "(pip install 'jax[cuda12]' on GPU hosts)")
    import jax

    if jax.distributed.is_initialized():
        return
    try:
        jax.distributed.initialize(coordinator, num_hosts, host_index, shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"could not join the other hosts through {coordinator or 'the scheduler'}: "
                         f"{first_line(e)}") from e


def _scheduler_launched() -> bool:
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    return any(os.environ.get(name, "1").isdigit() and int(os.environ.get(name, "1")) > 1 for name in _SCHEDULER_SIZES)


def _check_hosts(coordinator: str, num_hosts: int, host_index: int) -> None:
    if not re.fullmatch(r"\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}", coordinator):
        raise UsageError(f"--coordinator must be HOST:PORT (host 0's address), got {coordinator!r}")
    if num_hosts < 1:
        raise UsageError(f"--num-hosts must be at least 1, got {num_hosts}")
    if not 0 <= host_index < num_hosts:
        raise UsageError(f"--host-index must be between 0 and {num_hosts - 1}, got {host_index}")


def plan_devices(devices: Optional[str], batch_size: int) -> Cluster:
    """The devices to train on (`devices`: a count per host, 'all', or None: every GPU when there are
    several, as before the option existed). UsageError when they cannot split the global batch."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        cluster = Cluster(jax.process_index(), jax.process_count(), len(_jax_devices(devices)), backend)
        if batch_size % cluster.devices:
            raise UsageError(f"--batch-size {batch_size} does not split evenly over {cluster.devices} devices: "
                             "the batch size is the global batch, make it a multiple of the device count")
        return cluster
    if backend == "tensorflow":
        return Cluster(devices=len(_tf_gpus(devices)) or 1, backend=backend)
    if devices not in (None, "1"):
        raise UsageError(f"--devices: several devices need the JAX or TensorFlow backend, not {backend}")
    return Cluster(backend=backend)


def _jax_devices(option: Optional[str]) -> List:
    """The chosen devices of every process: the first N of each host's own."""
    import jax

    local = jax.local_devices()
    if option is None:
        several = jax.process_count() > 1 or (len(local) > 1 and local[0].platform != "cpu")
        per_host = len(local) if several else 1
    else:
        per_host = len(local) if option == "all" else int(option)
    if per_host > len(local):
        raise UsageError(f"--devices {option}: this host has {len(local)} {local[0].platform} device(s)")
    by_host = {}
    for device in jax.devices():
        by_host.setdefault(device.process_index, []).append(device)
    return [d for host in sorted(by_host) for d in sorted(by_host[host], key=lambda d: d.id)[:per_host]]


def _tf_gpus(option: Optional[str]) -> List[str]:
    import tensorflow as tf  # TensorFlow-specific: MirroredStrategy has no Keras 3 equivalent

    gpus = tf.config.list_physical_devices("GPU")
    if option is None:
        count = len(gpus) if len(gpus) > 1 else 0
    else:
        count = len(gpus) if option == "all" else int(option)
        if count > max(1, len(gpus)):
            raise UsageError(f"--devices {option}: TensorFlow sees {len(gpus)} GPU(s) here")
    return [f"/gpu:{i}" for i in range(count)] if count > 1 else []


def distribution_scope(cluster: Cluster, devices: Optional[str]):
    """The context training runs in: the framework's data parallelism when several devices train."""
    if cluster.devices <= 1:
        return contextlib.nullcontext()
    if cluster.backend == "jax":
        import keras

        parallel = keras.distribution.DataParallel(devices=_jax_devices(devices))
        parallel.auto_shard_dataset = False  # each process's batches are its share already (data.BatchPlan)
        keras.distribution.set_distribution(parallel)
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices=_tf_gpus(devices)).scope()


def end_distribution(cluster: Cluster) -> None:
    """After training: the model is scored and saved on one device, by host 0 alone."""
    if cluster.backend == "jax" and cluster.devices > 1:
        import keras

        keras.distribution.set_distribution(None)


def check_same_start(cluster: Cluster, resumed_from: int) -> None:
    """Every host must resume from the same epoch as host 0 (which sees the run directory); a host that cannot
    see it would start over and the hosts' steps would no longer pair up."""
    if cluster.process_count <= 1:
        return
    import numpy as np
    from jax.experimental import multihost_utils

    host0 = int(multihost_utils.broadcast_one_to_all(np.int32(resumed_from)))
    if host0 != resumed_from:
        raise UsageError(f"host 0 resumes after epoch {host0} but host {cluster.process_index} sees epoch "
                         f"{resumed_from} in --out: resuming on several hosts needs the run directory on a file "
                         "system they all see (or start the run over in a new --out)")


def save_elsewhere(model) -> None:
    """A host that does not write: saving gathers the weights from every process, so it saves too, then drops it."""
    with tempfile.TemporaryDirectory(prefix="edgevision-host-") as folder:
        model.save(Path(folder) / "checkpoint.keras")


def scratch_cache_dir() -> Path:
    """Where a host that does not write the run directory keeps its disk cache of the images."""
    return Path(tempfile.gettempdir()) / f"edgevision-cache-{os.getpid()}"  # made only if it is used
