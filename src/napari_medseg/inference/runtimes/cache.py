"""The disk cache of converted networks: where it is and what a cache key holds.

A converted model is valid for one network structure, one set of weights, one
runtime version, one input shape and one precision; the key hashes all five (plus
:data:`FORMAT_VERSION`, bumped when the conversion itself changes, and the source
files that define the network's layers), so a new checkpoint, an OpenVINO upgrade,
another patch size or an edited ``forward`` never reads a stale model.
"""

from __future__ import annotations

import hashlib
import os
import sys
from functools import lru_cache
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


@lru_cache(maxsize=256)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    # keyed on the file's time and size too, so an edited file is read again
    with open(path, "rb") as f:
        return hashlib.blake2b(f.read(), digest_size=16).hexdigest()


def source_digest(module: Any) -> str:
    """A digest of the source files that define the classes of ``module``'s layers.

    The structure (``repr``) and the weights do not see a changed ``forward``: a model
    converted from the old code would compute the old maths. Files are read once per
    process while their time and size stay the same.
    """
    modules = module.modules() if hasattr(module, "modules") else [module]
    files = set()
    for m in modules:
        path = getattr(sys.modules.get(type(m).__module__), "__file__", None)
        if path:
            files.add(path)
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(files):
        try:
            st = os.stat(path)
            digest = _file_digest(path, st.st_mtime_ns, st.st_size)
        except OSError:  # a frozen or zipped module: its name is all we can use
            digest = ""
        h.update(f"{os.path.basename(path)}:{digest}".encode())
    return h.hexdigest()


def cache_key(module: Any, input_shape: Sequence[int], *, runtime: str, runtime_version: str,
              precision: str, weights_key: str) -> str:
    """The file stem a converted model is stored under."""
    h = hashlib.blake2b(digest_size=16)
    for part in (FORMAT_VERSION, type(module).__qualname__, repr(module), source_digest(module),
                 weights_key, runtime, runtime_version, "x".join(map(str, input_shape)),
                 precision):
        h.update(str(part).encode())
        h.update(b"\0")
    return f"{runtime}-{h.hexdigest()}"
