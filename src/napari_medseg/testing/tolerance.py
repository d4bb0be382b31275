"""Float32 parity measured relative to each output's scale.

The same float32 code gives different last bits on different CPUs (oneDNN and MKL pick
kernels per instruction set: AVX2, AVX-512, AMX), so a fixed absolute tolerance that holds
on one processor fails on another. Every parity check here compares the maximum absolute
error with the output's own scale, ``max |reference|``: ``1e-4`` of the scale holds on
every CPU seen (Intel AVX2, AMD EPYC AVX-512), while a real implementation mismatch shows
up at ``1e-2`` of the scale or more.
"""

from __future__ import annotations

import numpy as np

#: default allowed max abs error, as a fraction of ``max |reference|``
PARITY_REL = 1e-4


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def scaled_error(actual, reference) -> tuple[float, float]:
    """``(max abs error, scale)`` with ``scale = max |reference|`` (1.0 when the reference is all zero)."""
    a, r = _as_numpy(actual), _as_numpy(reference)
    if a.shape != r.shape:
        raise AssertionError(f"shape {a.shape} differs from the reference's {r.shape}")
    scale = float(np.abs(r).max()) if r.size else 0.0
    err = float(np.abs(a - r).max()) if r.size else 0.0
    return err, (scale if scale > 0 else 1.0)


def assert_close_to_scale(actual, reference, rel: float = PARITY_REL, name: str = "output") -> None:
    """Assert ``max |actual - reference| <= rel * max |reference|``.

    Parameters
    ----------
    actual, reference : array-like or torch.Tensor
        Same shape.
    rel : float
        Allowed error as a fraction of the reference's largest magnitude.
    name : str
        Named in the failure message.
    """
    err, scale = scaled_error(actual, reference)
    if not np.isfinite(err) or err > rel * scale:
        raise AssertionError(f"{name}: max abs error {err:.3g} > {rel:g} x scale {scale:.3g} "
                             f"(= {rel * scale:.3g})")
