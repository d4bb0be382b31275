"""The disk cache of converted networks: where it is and what a cache key holds.

A converted model is valid for one network structure, one set of weights, one
runtime version, one input shape and one precision; the key hashes all five (plus
:data:`FORMAT_VERSION`, bumped when the conversion itself changes), so a new
checkpoint, an OpenVINO upgrade or another patch size never reads a stale model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

__all__ = ["compiled_cache_dir", "weights_hash", "cache_key"]

#: Bumped whenever what is traced or how it is converted changes.
FORMAT_VERSION = "2"  # 2: instance norms converted as pooled averages


def compiled_cache_dir() -> Path:
    """``$MEDSEG_COMPILED_DIR`` or ``~/.cache/napari-medseg/compiled``."""
    env = os.environ.get("MEDSEG_COMPILED_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "napari-medseg" / "compiled"


def weights_hash(module: Any) -> str:
    """A hash of every parameter and buffer of a torch module (names, shapes, bytes).

    Tensors registered under two names (nnU-Net's ``all_modules`` aliases) are
    hashed once. About 0.1 s per 100 MB of weights.
    """
    import torch

    h = hashlib.blake2b(digest_size=16)
    seen = set()
    for name, tensor in module.state_dict(keep_vars=False).items():
        h.update(name.encode())
        h.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
        ptr = (tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() == 0 or ptr in seen:
            continue
        seen.add(ptr)
        t = tensor.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def cache_key(module: Any, input_shape: Sequence[int], *, runtime: str, runtime_version: str,
              precision: str, weights_key: str) -> str:
    """The file stem a converted model is stored under."""
    h = hashlib.blake2b(digest_size=16)
    for part in (FORMAT_VERSION, type(module).__qualname__, repr(module), weights_key, runtime,
                 runtime_version, "x".join(map(str, input_shape)), precision):
        h.update(str(part).encode())
        h.update(b"\0")
    return f"{runtime}-{h.hexdigest()}"
