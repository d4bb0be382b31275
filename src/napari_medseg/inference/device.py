"""Choosing the torch device: CUDA, then Apple MPS, then CPU.

Imported lazily (it imports torch).
"""

from __future__ import annotations

from ..errors import InvalidInputError

__all__ = ["choose_device", "device_summary", "autocast_enabled"]

_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(preference: str = "auto"):
    """Pick the device to run a model on.

    Parameters
    ----------
    preference : {"auto", "cpu", "cuda", "mps"} or "cuda:N"
        ``"auto"`` takes CUDA if present, then MPS, then the CPU. Any other value
        forces that device.

    Returns
    -------
    torch.device

    Raises
    ------
    InvalidInputError
        Unknown name, or a forced device that this machine does not have.
    """
    import torch

    pref = (preference or "auto").strip().lower()
    base = pref.split(":", 1)[0]
    if base not in _CHOICES:
        raise InvalidInputError(
            f"unknown device '{preference}'; use one of {', '.join(_CHOICES)} (or cuda:N)"
        )
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(
                "device 'cuda' was requested but no CUDA GPU is usable here (torch "
                f"{torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA).",
                hints={"cli": "Use --device cpu or auto.", "gui": "Choose cpu or auto under Device."},
            )
        if ":" in pref:
            index = int(pref.split(":", 1)[1])
            if index >= torch.cuda.device_count():
                raise InvalidInputError(
                    f"device '{preference}' requested but only {torch.cuda.device_count()} CUDA "
                    "device(s) exist"
                )
        return torch.device(pref)
    if base == "mps":
        if not _mps_available(torch):
            raise InvalidInputError("device 'mps' was requested but Apple MPS is not available; use cpu or auto")
        return torch.device("mps")
    return torch.device("cpu")


def autocast_enabled(device) -> bool:
    """Mixed precision is used on CUDA only (CPU autocast is slow or unsupported on many CPUs)."""
    return getattr(device, "type", str(device)) == "cuda"


def device_summary(device) -> str:
    """A one-line description for logs and the widget."""
    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.1f} GiB, CUDA)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"
