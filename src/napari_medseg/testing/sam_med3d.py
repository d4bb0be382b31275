"""Deterministic weights and inputs that reproduce the shared parity fixture.

The recipe is the one of ``../shared/fixtures/README.md``: each tensor is drawn from a
generator seeded with the CRC32 of its key, so any implementation with the same keys
and shapes gets the same weights without the 400 MB checkpoint. Used by the parity
tests, the benchmark and the GPU check.
"""

from __future__ import annotations

import zlib

import numpy as np


def deterministic_state_dict(shapes: dict) -> dict:
    """Weights for ``{key: shape}`` following the fixture recipe.

    Parameters
    ----------
    shapes : dict
        ``{state-dict key: shape}`` of the released checkpoint.

    Returns
    -------
    dict
        ``{key: float32 tensor}`` drawn from a generator seeded with ``crc32(key)``.
    """
    import torch

    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        t = torch.randn(shape, generator=g, dtype=torch.float32)
        if key.endswith("positional_encoding_gaussian_matrix"):
            out[key] = t
        elif len(shape) == 1 and key.endswith(".weight"):
            out[key] = 1 + 0.02 * t
        else:
            out[key] = 0.02 * t
    return out


def fixture_input(size: int = 128) -> "torch.Tensor":
    """The smooth synthetic 1 x 1 x size^3 input of the fixture (a float32 tensor)."""
    import torch

    z, y, x = np.meshgrid(*(np.arange(size, dtype=np.float64),) * 3, indexing="ij")
    v = np.exp(-((z - 60) ** 2 + (y - 70) ** 2 + (x - 64) ** 2) / (2 * 20**2)) + 0.1 * np.sin(z / 5) * np.cos(y / 7)
    v = (v - v.mean()) / v.std()
    return torch.from_numpy(v.astype(np.float32))[None, None]
