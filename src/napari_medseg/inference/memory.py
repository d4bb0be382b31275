"""Memory estimates and a check that refuses jobs that cannot fit.

Reads ``MemAvailable`` from ``/proc/meminfo`` and the cgroup (v2 or v1) limit, so
a job in a container is judged by what the container may use. No psutil needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InsufficientMemoryError

__all__ = ["available_memory", "check_memory", "estimate_nnunet_bytes", "format_gib"]

GIB = 2**30


def format_gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _meminfo_available() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> Optional[int]:
    """Limit minus usage of this process's memory cgroup, if it has a limit."""
    candidates = [
        (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
        (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
         Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
    ]
    for limit_file, usage_file in candidates:
        try:
            raw = limit_file.read_text().strip()
            if raw == "max":
                continue
            limit = int(raw)
            if limit >= 2**60:  # "unlimited" in cgroup v1
                continue
            usage = int(usage_file.read_text().strip())
            return max(0, limit - usage)
        except (OSError, ValueError):
            continue
    return None


def available_memory() -> Optional[int]:
    """Bytes this process can still allocate, or None when it cannot be told.

    ``MEDSEG_AVAILABLE_MEMORY`` (bytes) overrides the detection (tests, schedulers).
    """
    override = os.environ.get("MEDSEG_AVAILABLE_MEMORY")
    if override:
        return int(float(override))
    values = [v for v in (_meminfo_available(), _cgroup_headroom()) if v is not None]
    return min(values) if values else None


def check_memory(bytes_needed: float, what: str, *, available: Optional[int] = None) -> None:
    """Raise :class:`InsufficientMemoryError` when ``bytes_needed`` exceeds what is available.

    Parameters
    ----------
    bytes_needed : float
        Estimated peak bytes of the job.
    what : str
        What the job is, for the message (e.g. "nnU-Net prediction of a 512x512x300 CT").
    available : int, optional
        Override the detected free memory.
    """
    free = available_memory() if available is None else available
    if free is None:
        return
    if bytes_needed > free:
        raise InsufficientMemoryError(
            f"{what} needs about {format_gib(bytes_needed)} of memory, {format_gib(free)} available. "
            "Close other programs, crop the image to the region of interest, or run on a machine "
            "with more memory."
        )


def estimate_nnunet_bytes(original_shape: Sequence[int], network_shape: Sequence[int],
                          num_classes: int, patch_size: Sequence[int], n_channels: int = 1,
                          features: int = 32) -> int:
    """Rough peak bytes of one nnU-Net prediction on the CPU with this engine.

    Counts: the input as float32 (original and resampled), the class-score
    accumulator (float32, classes x network grid), the weight map, the output
    labels, one resampling slab and the activations of one window (about six
    full-resolution feature maps of ``features`` channels, twice for the skips).
    """
    orig = int(np.prod(original_shape))
    net = int(np.prod([max(a, b) for a, b in zip(network_shape, patch_size)]))
    patch = int(np.prod(patch_size))
    total = 0
    total += orig * n_channels * 4 * 2  # float32 copy + crop
    total += net * n_channels * 4 * 2  # resampled + padded
    total += net * num_classes * 4  # score accumulator
    total += net * 4  # weights
    total += orig * 2  # labels (uint8/uint16)
    total += min(orig, 192 * 2**20 // 4) * 4  # resampling slab budget
    total += patch * features * 4 * 12  # activations of one window
    return int(total * 1.15) + 300 * 2**20  # interpreter, torch, weights
