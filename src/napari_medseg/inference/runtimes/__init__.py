"""Where a network's forward pass runs: PyTorch (the reference) or a compiled OpenVINO model.

OpenVINO's CPU plugin runs a network's 3D convolutions with the same oneDNN direct
convolution kernel as PyTorch (``brgconv_avx2_f32`` on an AVX2 CPU) and fuses what lies
between them (norms, activations), which PyTorch runs as separate memory passes: a window
takes 0.73-0.79x PyTorch's time on an idle AVX2 machine (float32, results equal to float
rounding: the parity tests compare voxel labels against nnunetv2; see docs/nnunet.md,
"Why OpenVINO gains only ~25 %").

* :func:`resolve_runtime` turns ``"auto" | "openvino" | "torch"`` and the torch device
  into the runtime to use (CUDA and MPS keep PyTorch; on the CPU ``auto`` takes
  OpenVINO for the network families in :data:`AUTO_OPENVINO_FAMILIES`, those whose
  parity gates pass on every benchmark row, and PyTorch for the others);
* :func:`conversion_pays` is ``auto``'s rule for the one-off conversion: a network
  already in the cache runs compiled; one not converted yet is converted only when the
  run has enough window passes to repay it (:data:`AUTO_MIN_PASSES`), else this run
  stays PyTorch with the reason reported;
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

__all__ = ["RUNTIMES", "AUTO_OPENVINO_FAMILIES", "AUTO_MIN_PASSES", "RuntimeReport",
           "check_runtime", "resolve_runtime", "conversion_pays", "compile_module",
           "openvino_available", "describe_runtime"]

log = logging.getLogger(__name__)

#: The choices offered to users (CLI ``--runtime``, the Python API, the widgets).
RUNTIMES = ("auto", "openvino", "torch")

#: Network families for which ``auto`` takes OpenVINO on the CPU: those whose parity gates
#: pass in every test and on every benchmark row run (nnU-Net: >= 99.999 % of voxels
#: identical to nnUNetPredictor, Dice >= 0.999, see docs/nnunet.md). The other callers
#: (prompt sessions, the liver cascade) keep PyTorch under ``auto``; ``openvino`` opts in.
AUTO_OPENVINO_FAMILIES = frozenset({"nnunet"})

#: Under ``auto``, a network not yet in the disk cache is converted only when one run
#: makes at least this many window passes with it (windows x mirrored variants, per
#: compiled model). On an AVX2 CPU OpenVINO saves 21-27 % of a window (the same oneDNN
#: convolutions as PyTorch, fused norms), so a conversion costs what it saves on 5-9 window
#: passes under load (5 stages 32..320 at 96^3: 35-39 s against 4.2-7.5 s per window) and,
#: idle, on ~20 passes of a 6-stage 128^3 network (2.46 s saved per window) or ~64 of the
#: 96^3 one (0.77 s), against a 49 s idle conversion (docs/nnunet.md, "How auto chooses").
#: A smaller run stays PyTorch and says why; ``openvino`` converts regardless, and from
#: then on ``auto`` finds the model cached.
AUTO_MIN_PASSES = 48


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

    def choose_torch(self, reason: str) -> None:
        """``auto``'s own decision for PyTorch (not a failure): logged at info level."""
        log.info("running the network with PyTorch: %s", reason)
        self.used = "torch"
        self.reason = self.reason or reason

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


def resolve_runtime(runtime: Optional[str], device: Any, *, family: str = "") -> RuntimeReport:
    """Decide which runtime runs networks on ``device``.

    Parameters
    ----------
    runtime : {"auto", "openvino", "torch"}
        ``auto``: OpenVINO on the CPU when installed and ``family`` is in
        :data:`AUTO_OPENVINO_FAMILIES` (then :func:`conversion_pays` decides about a
        model not converted yet), else PyTorch. ``openvino`` on a GPU device, or
        without OpenVINO installed, falls back to PyTorch with the reason in the report
        (a GPU is faster than any CPU runtime).
    device : torch.device or str
        Where the torch network lives.
    family : str
        The network family asking (``"nnunet"``); ``auto`` takes OpenVINO only for the
        families whose parity gates pass everywhere.

    Returns
    -------
    RuntimeReport
        ``used`` is the runtime to try; compilation may still fall back.
    """
    name = check_runtime(runtime)
    report = RuntimeReport(requested=name, used="torch")
    if name == "torch" or (name == "auto" and family not in AUTO_OPENVINO_FAMILIES):
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


def conversion_pays(report: RuntimeReport, module: Any, input_shape: Sequence[int], *,
                    passes: int, weights_key: Optional[str] = None) -> bool:
    """Whether to compile ``module`` now; under ``auto`` switch the report to PyTorch if not.

    ``openvino`` (asked for explicitly): always, the user accepted the conversion.
    ``auto``: when the converted model is already in the disk cache (reading it back
    costs ~2 s), or when this run makes at least :data:`AUTO_MIN_PASSES` window passes
    with it; otherwise the report switches to ``torch`` with the reason (shown in
    ``--json``, the notes, the docks and the log) and the model is not converted.

    Parameters
    ----------
    report : RuntimeReport
        From :func:`resolve_runtime`; ``used`` must be ``openvino`` for ``True``.
    module : torch.nn.Module
        What :func:`compile_module` would compile.
    input_shape : sequence of int
        Its input shape.
    passes : int
        Forward passes this run makes with the compiled model (windows x mirrored
        variants; per fold for an ensemble, each fold being its own model).
    weights_key : str, optional
        As for :func:`compile_module`.
    """
    if report.used != "openvino":
        return False
    if report.requested != "auto":
        return True
    try:
        from .openvino import is_cached

        cached = is_cached(module, tuple(int(s) for s in input_shape), weights_key=weights_key)
    except Exception as exc:  # a broken install: compile_module reports the failure itself
        log.debug("cache lookup failed (%s); deciding on the window count", exc)
        cached = False
    if cached or int(passes) >= AUTO_MIN_PASSES:
        return True
    report.choose_torch(
        f"auto converts a network for OpenVINO once it runs >= {AUTO_MIN_PASSES} window passes "
        f"(this run: {int(passes)}); converting would cost more than it saves here, so it "
        "runs PyTorch (use --runtime openvino to convert it once; later runs then use "
        "the cached model)")
    return False


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
