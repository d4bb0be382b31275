"""Where a network's forward pass runs: PyTorch (the reference) or a compiled OpenVINO model.

PyTorch's 3D convolutions on the CPU are close to dense-GEMM speed; OpenVINO's CPU
plugin has faster 3D convolution algorithms, so on a CPU a network compiled with it
runs the same maths in a fraction of the time (float32, results equal to float
rounding: the parity tests compare voxel labels against nnunetv2).

* :func:`resolve_runtime` turns ``"auto" | "openvino" | "torch"`` and the torch device
  into the runtime to use (CUDA and MPS keep PyTorch; ``auto`` is PyTorch until the
  parity gate passes on every benchmark row, see :data:`AUTO_PICKS_OPENVINO`);
* :func:`compile_module` converts a torch module for one input shape, caches the
  result on disk (:mod:`.cache`) and returns a callable, or ``None`` with the reason
  logged and stored in the :class:`RuntimeReport`: every failure (runtime absent,
  conversion error, unsupported op) falls back to PyTorch, never fails the run.

The module imports neither torch nor openvino at import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ...errors import InvalidInputError

__all__ = ["RUNTIMES", "RuntimeReport", "check_runtime", "resolve_runtime", "compile_module",
           "openvino_available", "describe_runtime"]

log = logging.getLogger(__name__)

#: The choices offered to users (CLI ``--runtime``, the Python API, the widgets).
RUNTIMES = ("auto", "openvino", "torch")

#: Whether ``auto`` takes OpenVINO on the CPU. Off: the parity gate (>= 99.9 % of voxels
#: identical to nnUNetPredictor) fails for a full-size 6-stage, 118-class random-weight
#: network compiled by OpenVINO 2026.4 (99.77 %; PyTorch 99.999 %), so the automatic choice
#: stays the reference until every row of the benchmark matrix passes. ``openvino`` opts in.
AUTO_PICKS_OPENVINO = False


@dataclass
class RuntimeReport:
    """What ran a network and what that cost, for ``--json`` timings and notes.

    Attributes
    ----------
    requested : str
        The user's choice (``auto``, ``openvino``, ``torch``).
    used : str
        ``openvino`` or ``torch`` (after any fallback).
    reason : str
        Why ``torch`` ran although OpenVINO was asked for or ``auto`` (empty otherwise).
    convert_s : float
        Seconds spent converting/compiling (0 when every model came from the cache).
    compiled : int
        Models converted in this process (cache misses).
    cache_hits : int
        Models read back from the disk or memory cache.
    """

    requested: str = "auto"
    used: str = "torch"
    reason: str = ""
    convert_s: float = 0.0
    compiled: int = 0
    cache_hits: int = 0
    shapes: list = field(default_factory=list)

    def fall_back(self, reason: str) -> None:
        """Switch to torch and keep the first reason."""
        if self.used != "torch" or not self.reason:
            log.warning("running the network with PyTorch instead of OpenVINO: %s", reason)
        self.used = "torch"
        self.reason = self.reason or reason

    def as_dict(self) -> dict:
        return {"requested": self.requested, "used": self.used, "reason": self.reason,
                "convert_s": round(self.convert_s, 3), "compiled": self.compiled,
                "cache_hits": self.cache_hits}


def describe_runtime(info: Any) -> str:
    """One sentence for users: what ran the network, and why not OpenVINO after a fallback.

    Parameters
    ----------
    info : RuntimeReport or dict or None
        A report or its :meth:`RuntimeReport.as_dict` (``SegmentResult.runtime``).
        ``None`` or empty (no network ran, e.g. a weights-free model): ``""``.
    """
    if isinstance(info, RuntimeReport):
        info = info.as_dict()
    if not info or not info.get("used"):
        return ""
    names = {"openvino": "OpenVINO", "torch": "PyTorch"}
    used = names.get(info["used"], info["used"])
    text = f" Network: {used} (runtime {info.get('requested', 'auto')}"
    if info["used"] == "openvino":
        text += ", compiled now" if info.get("compiled") else ", compiled model reused"
    text += ")."
    if info["used"] == "torch" and info.get("reason") and info.get("requested") != "torch":
        text += f" Not OpenVINO: {info['reason']}."
    return text


def check_runtime(runtime: Optional[str]) -> str:
    """Normalise a runtime name; raise a clear error for an unknown one."""
    name = (runtime or "auto").strip().lower()
    if name not in RUNTIMES:
        raise InvalidInputError(
            f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}",
            hints={"cli": "Use --runtime auto, openvino or torch."},
        )
    return name


def openvino_available() -> tuple:
    """``(True, version)`` when OpenVINO imports, else ``(False, reason)``."""
    try:
        import openvino  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything
        return False, f"OpenVINO is not installed ({type(exc).__name__}: {exc}); " \
                      "pip install 'napari-medseg[openvino]'"
    return True, str(openvino.__version__)


def resolve_runtime(runtime: Optional[str], device: Any) -> RuntimeReport:
    """Decide which runtime runs networks on ``device``.

    Parameters
    ----------
    runtime : {"auto", "openvino", "torch"}
        ``auto``: PyTorch while :data:`AUTO_PICKS_OPENVINO` is off (see there why),
        else OpenVINO on the CPU when installed. ``openvino`` on a
        GPU device, or without OpenVINO installed, falls back to PyTorch with the
        reason in the report (a GPU is faster than any CPU runtime).
    device : torch.device or str
        Where the torch network lives.

    Returns
    -------
    RuntimeReport
        ``used`` is the runtime to try; compilation may still fall back.
    """
    name = check_runtime(runtime)
    report = RuntimeReport(requested=name, used="torch")
    if name == "torch" or (name == "auto" and not AUTO_PICKS_OPENVINO):
        return report
    kind = getattr(device, "type", str(device).split(":", 1)[0])
    if kind != "cpu":
        if name == "openvino":
            report.fall_back(f"the network runs on {kind}: OpenVINO is used on the CPU only")
        return report
    ok, detail = openvino_available()
    if not ok:
        if name == "openvino":
            report.fall_back(detail)
        else:
            report.reason = detail  # auto without OpenVINO: torch, said once in notes
        return report
    report.used = "openvino"
    return report


def compile_module(module: Any, input_shape: Sequence[int], *, report: RuntimeReport,
                   what: str = "network", weights_key: Optional[str] = None):
    """Compile ``module`` (torch, eval mode) for one input shape; ``None`` on any failure.

    Parameters
    ----------
    module : torch.nn.Module
        Called with one float32 tensor of ``input_shape``; returns one tensor or a
        list/tuple of tensors (then the compiled callable returns a list).
    input_shape : sequence of int
        The static input shape to compile for.
    report : RuntimeReport
        Updated with timings, cache hits and, on failure, the fallback reason.
    what : str
        Name used in log messages.
    weights_key : str, optional
        Precomputed hash of the module's weights (see :func:`.cache.weights_hash`).

    Returns
    -------
    callable or None
        ``f(tensor) -> tensor`` running the compiled model, or ``None`` (use torch).
    """
    if report.used != "openvino":
        return None
    try:
        from .openvino import compile_torch_module

        return compile_torch_module(module, tuple(int(s) for s in input_shape), report=report,
                                    what=what, weights_key=weights_key)
    except Exception as exc:  # conversion failure, unsupported op, broken install: fall back
        report.fall_back(f"OpenVINO could not compile the {what} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})")
        return None
