"""Safe loading of PyTorch checkpoints from untrusted sources.

A ``.pth`` file is a pickle: loaded naively it can import and call anything (a
``__reduce__`` payload runs ``os.system`` the moment it is unpickled). This module
only ever uses ``torch.load(..., weights_only=True)``, PyTorch's restricted
unpickler, which refuses every global that is not on an allow-list *before*
calling it, so a payload never runs.

Published nnU-Net checkpoints hold more than tensors: training logs with NumPy
scalars (``np.float64`` Dice values), ``init_args`` with a ``torch.device``, the
mirroring axes as a tuple, optimizer state. For those we extend PyTorch's default
allow-list with exactly the NumPy reconstruction helpers that data-only values
need (:data:`NUMPY_GLOBALS`), for the duration of one load. Anything else (a
trainer class, ``os.system``, ``builtins.eval``, ...) is refused with
:class:`~napari_medseg.errors.UnsafeCheckpointError` naming the global.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Union

from ..errors import CheckpointMismatchError, ImageReadError, MedsegError, UnsafeCheckpointError

__all__ = [
    "load_checkpoint",
    "load_state_dict_strict",
    "allowed_numpy_globals",
    "NUMPY_GLOBALS",
]

#: Fully qualified names of the NumPy globals a data-only checkpoint may reference.
#: ``numpy.core`` is NumPy 1's name of ``numpy._core``: checkpoints written with
#: NumPy 1 (most published nnU-Net weights) use it.
NUMPY_GLOBALS = (
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
)

_MAX_KEYS_SHOWN = 8


def allowed_numpy_globals() -> list:
    """The ``(object, qualified name)`` pairs passed to ``torch.serialization.safe_globals``.

    Each pair maps a name that may appear in a pickle to the real object, so a
    NumPy-1 pickle (``numpy.core...``) resolves under NumPy 2 without importing the
    deprecated module. The dtype classes (``numpy.dtypes.Float64DType``, ...) are
    included because NumPy 2 pickles a dtype through its class.
    """
    import numpy as np

    try:  # NumPy 2
        from numpy._core import multiarray as _ma
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core import multiarray as _ma  # type: ignore[no-redef]

    pairs: list = []
    for name in NUMPY_GLOBALS:
        attr = name.rsplit(".", 1)[1]
        if name.startswith("numpy.core.multiarray.") or name.startswith("numpy._core.multiarray."):
            pairs.append((getattr(_ma, attr), name))
        elif name == "numpy.ndarray":
            pairs.append((np.ndarray, name))
        elif name == "numpy.dtype":
            pairs.append((np.dtype, name))
    dtypes_mod = getattr(np, "dtypes", None)
    if dtypes_mod is not None:
        for attr in dir(dtypes_mod):
            obj = getattr(dtypes_mod, attr)
            if isinstance(obj, type) and issubclass(obj, np.dtype) and obj is not np.dtype:
                pairs.append((obj, f"numpy.dtypes.{attr}"))
    return pairs


def _unsupported_global(message: str) -> str | None:
    """The global the restricted unpickler refused, from torch's message (None if not a refusal)."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    if match:
        return match.group(1)
    match = re.search(r"Unsupported class ([\w.]+)", message)
    return match.group(1) if match else None


def load_checkpoint(path: Union[str, Path], *, map_location: Any = "cpu") -> dict:
    """Load a checkpoint without ever running code from it.

    Parameters
    ----------
    path : str or Path
        The ``.pth``/``.pt`` file.
    map_location : str or torch.device, optional
        Where tensors go (default ``"cpu"``).

    Returns
    -------
    dict
        The unpickled checkpoint (for nnU-Net: ``network_weights``, ``init_args``,
        ``trainer_name``, ``inference_allowed_mirroring_axes``, ...). A bare state
        dict is returned as it is.

    Raises
    ------
    ImageReadError
        The file is missing, empty, truncated or not a PyTorch checkpoint.
    UnsafeCheckpointError
        The pickle references a global outside the allow-list (e.g. a trainer class
        or ``os.system``); nothing from it was executed.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError(f"checkpoint {path} is empty (0 bytes); download or copy it again")
    try:
        with torch.serialization.safe_globals(allowed_numpy_globals()):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        name = _unsupported_global(str(exc))
        if name is not None:
            raise UnsafeCheckpointError(
                f"refused to load {path}: it references '{name}', which is not on the "
                "allow-list of data-only types (tensors, numbers, strings, containers, NumPy "
                "scalars). Loading it would run code from the file; nothing was executed. "
                "Only use checkpoints from a source you trust, re-saved as plain state dicts."
            ) from None
        raise ImageReadError(
            f"checkpoint {path} could not be read safely: {_first_line(exc)}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as exc:
        raise ImageReadError(
            f"checkpoint {path} is corrupt, truncated or not a PyTorch file: {_first_line(exc)}"
        ) from exc
    if not isinstance(obj, Mapping):
        raise ImageReadError(
            f"checkpoint {path} holds a {type(obj).__name__}, expected a dict of weights"
        )
    return dict(obj)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _fmt_keys(keys: list, limit: int = _MAX_KEYS_SHOWN) -> str:
    shown = ", ".join(keys[:limit])
    if len(keys) > limit:
        shown += f", ... ({len(keys) - limit} more)"
    return shown


def load_state_dict_strict(module: Any, state_dict: Mapping[str, Any], what: str) -> None:
    """Load ``state_dict`` into ``module``, refusing any mismatch with a readable message.

    Parameters
    ----------
    module : torch.nn.Module
        The network built from the model's configuration.
    state_dict : mapping
        Parameter name -> tensor.
    what : str
        What is being loaded, for the message (e.g. ``"fold_0/checkpoint_final.pth"``).

    Raises
    ------
    CheckpointMismatchError
        Listing missing, unexpected and mis-shaped keys (long lists are truncated).
    """
    import torch

    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = []
    for key, ref in expected.items():
        if key in state_dict:
            value = state_dict[key]
            if not isinstance(value, torch.Tensor):
                misshaped.append(f"{key} (not a tensor: {type(value).__name__})")
            elif tuple(value.shape) != tuple(ref.shape):
                misshaped.append(f"{key} (checkpoint {tuple(value.shape)} vs model {tuple(ref.shape)})")
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_fmt_keys(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_fmt_keys(unexpected)}")
        if misshaped:
            parts.append(f"{len(misshaped)} mis-shaped: {_fmt_keys(misshaped)}")
        raise CheckpointMismatchError(
            f"{what} does not fit the network built from the plans ("
            + "; ".join(parts)
            + "). The checkpoint belongs to a different architecture or configuration: "
            "check that plans.json and the fold folders come from the same trained model."
        )
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # dtype or other torch-level refusal
        raise CheckpointMismatchError(f"{what} could not be loaded: {_first_line(exc)}") from exc


def assign_state_dict(module: Any, state_dict: Mapping[str, Any], *, what: str, architecture: str,
                      advice: str) -> None:
    """Check ``state_dict`` against a network built on the meta device, then assign it (float32).

    For published checkpoints loaded without first allocating a random network: the
    strict check (:func:`load_state_dict_strict`) runs on meta tensors, a mismatch keeps
    its key listing with ``architecture`` named and ``advice`` (what the user should do)
    instead of the nnU-Net wording, and the tensors are then assigned as float32.

    Raises
    ------
    CheckpointMismatchError
        Missing, unexpected or mis-shaped keys (listed), followed by ``advice``.
    """
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # copying into meta tensors is a no-op; the check is the point
            load_state_dict_strict(module, state_dict, what=what)
    except CheckpointMismatchError as exc:
        detail = str(exc).split(" The checkpoint belongs", 1)[0]
        detail = detail.replace("the network built from the plans", architecture)
        raise CheckpointMismatchError(f"{detail}. {advice}") from None
    module.load_state_dict({k: v.to(torch.float32) for k, v in state_dict.items()}, strict=True,
                           assign=True)


def read_checkpoint(path: Union[str, Path]) -> dict:
    """:func:`load_checkpoint` on the CPU, any unexpected unpickling failure reported as unreadable.

    For published checkpoint files (SAM-Med3D, 3DSAM-adapter): a malformed pickle can fail
    in many ways inside torch; the user gets one :class:`ImageReadError` naming the file.

    Raises
    ------
    UnsafeCheckpointError
        The file asks to run code.
    ImageReadError
        Corrupt, truncated or not a PyTorch file.
    """
    try:
        return load_checkpoint(path, map_location="cpu")
    except MedsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed pickle fails in many ways inside torch
        raise ImageReadError(
            f"checkpoint {path} is corrupt, truncated or not a PyTorch file ({type(exc).__name__}: "
            f"{str(exc).strip()[:200]}); download or copy it again"
        ) from exc

