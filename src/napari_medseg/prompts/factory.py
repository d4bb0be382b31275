"""Which interactive backends exist, whether they can run here, and how to make one.

The widget's backend picker and ``medseg prompt --model`` both go through this
module. Backends other than the weights-free default live in their own modules and
are imported lazily, by name, only when asked for: listing backends never imports
torch, and a backend whose module is missing says so instead of breaking the list.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional

from ..errors import InvalidInputError, MedsegError
from .base import PromptSession

DEFAULT_BACKEND = "region-growing"


@dataclass(frozen=True)
class BackendSpec:
    """How to build one backend."""

    name: str
    module: str  # relative to napari_medseg.prompts
    cls: str
    description: str
    weights_card: Optional[str] = None  # registry card of its weights (None: weights-free)
    requires: tuple = ()  # extra importable packages it needs
    install: str = ""  # what to pip install when one of them is missing (default: its name)
    remote: bool = False  # runs on a server of its own (make_session's ``server``), not here


BACKENDS: dict = {
    spec.name: spec
    for spec in (
        BackendSpec(
            "region-growing", "region_growing", "RegionGrowingSession",
            "Edge-aware region growing from clicks (weights-free; CT and MRI)",
        ),
        BackendSpec(
            "sam-med3d", "sam_med3d_session", "SamMed3DSession",
            "SAM-Med3D (turbo) 3D promptable segmentation", weights_card="sam-med3d-turbo",
            requires=("torch",),
        ),
        BackendSpec(
            "3dsam-adapter", "sam3d_adapter_session", "Sam3DAdapterSession",
            "3DSAM-adapter (SAM ViT-B with 3D adapters)", weights_card="3dsam-adapter-kits",
            requires=("torch",),
        ),
        BackendSpec(
            "nninteractive", "nninteractive_session", "NnInteractiveSession",
            "nnInteractive (through the nninteractive package)", weights_card="nninteractive",
            requires=("torch", "nnInteractive"),
        ),
        BackendSpec(
            "nninteractive-remote", "nninteractive_remote", "NnInteractiveRemoteSession",
            "nnInteractive on a running nninteractive-server (its URL under Server)",
            requires=("nnInteractive.inference.remote",), install="nninteractive-client", remote=True,
        ),
    )
}


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can be used here, and why not."""

    name: str
    description: str
    needs_weights: bool
    available: bool  # its code can be imported
    weights_installed: Optional[bool]  # None: needs no weights
    reason: str = ""  # why it is not usable, or ""

    @property
    def ready(self) -> bool:
        """True when a session can be made without passing ``weights``."""
        return self.available and self.weights_installed is not False


def _module_exists(spec: BackendSpec) -> tuple:
    import importlib.util

    full = f"{__package__}.{spec.module}"
    try:
        if importlib.util.find_spec(full) is None:
            return False, f"its module napari_medseg.prompts.{spec.module} is not installed"
    except (ImportError, ValueError) as exc:  # a parent package failed to import
        return False, f"its module cannot be found ({exc})"
    for package in spec.requires:
        try:
            if importlib.util.find_spec(package) is None:
                return False, f"it needs the Python package '{package}' (pip install {spec.install or package.lower()})"
        except (ImportError, ValueError):
            return False, f"it needs the Python package '{package}' (pip install {spec.install or package.lower()})"
    return True, ""


def _weights_installed(spec: BackendSpec) -> Optional[bool]:
    if spec.weights_card is None:
        return None
    try:
        from ..models.weights import installed
    except ImportError:  # pragma: no cover - the weights manager is part of the package
        return False
    try:
        return bool(installed(spec.weights_card))
    except MedsegError:
        return False


def backend_status(name: str) -> BackendStatus:
    """Availability of one backend (cheap: nothing heavy is imported)."""
    spec = _spec(name)
    ok, reason = _module_exists(spec)
    weights = _weights_installed(spec) if ok else None
    if ok and weights is False:
        # shown in the widgets' backend list (a tooltip): say what to do there, no CLI flags
        reason = (
            f"no weights installed for '{spec.weights_card}': install them with "
            f"`medseg weights download {spec.weights_card}`, or give a checkpoint under Weights"
        )
    return BackendStatus(spec.name, spec.description, spec.weights_card is not None, ok, weights, reason)


def backend_statuses() -> list:
    """:class:`BackendStatus` of every known backend, the default first."""
    return [backend_status(name) for name in BACKENDS]


def available_backends() -> list:
    """Names of the backends whose code can be imported here (default first).

    A backend that needs weights is listed even when they are not installed (it can
    still be used with an explicit ``weights`` path); :func:`backend_statuses` says
    which ones are ready as they are. A backend that runs on a server of its own
    (``nninteractive-remote``) is not listed: it does not run here, and a ``medseg serve``
    machine, which offers this list, does not relay to another server.
    """
    return [s.name for s in backend_statuses() if s.available and not BACKENDS[s.name].remote]


def _spec(name: str) -> BackendSpec:
    key = str(name).strip().lower()
    if key not in BACKENDS:
        raise InvalidInputError(
            f"unknown interactive backend {name!r}; choose one of: {', '.join(BACKENDS)}"
        )
    return BACKENDS[key]


def make_session(backend: str = DEFAULT_BACKEND, *, weights=None, device: str = "auto",
                 runtime: str = "auto", bias_correct: bool = False, server: Optional[str] = None,
                 token: Optional[str] = None) -> PromptSession:
    """A new :class:`~napari_medseg.prompts.base.PromptSession` of ``backend``.

    Parameters
    ----------
    backend : str
        ``"region-growing"`` (default, weights-free), ``"sam-med3d"``,
        ``"3dsam-adapter"``, ``"nninteractive"`` or ``"nninteractive-remote"``.
    weights : path, optional
        Checkpoint for backends that need one (default: the installed weights).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"`` (region growing runs on the CPU:
        it accepts only ``"auto"`` and ``"cpu"``).
    runtime : {"auto", "openvino", "torch"}
        What runs the network backends' heavy calls on the CPU (see
        :mod:`napari_medseg.inference.runtimes`); ignored by weights-free backends.
    server : str, optional
        For ``"nninteractive-remote"`` (required there, refused elsewhere): the URL of a
        running ``nninteractive-server``.
    token : str, optional
        That server's API key (default: ``NN_INTERACTIVE_API_KEY``, else none).
    bias_correct : bool
        Region growing only: grow on the MR volume's N4 bias-corrected intensities
        (:class:`~napari_medseg.prompts.bias_corrected.BiasCorrectedRegionGrowing`;
        computed once per volume and cached). ``set_volume`` then refuses CT.

    Raises
    ------
    InvalidInputError
        Unknown backend, or weights or a GPU device given to a weights-free backend, or
        ``bias_correct`` with a network backend (they normalise the image themselves),
        weights or a GPU device given to a remote backend, a server URL missing (remote
        backend) or given to a backend that runs here.
    MedsegError
        The backend's module or a package it needs is missing (the message says which),
        or its weights are not installed (:class:`~napari_medseg.errors.WeightsNotFoundError`).
    """
    from ..inference.runtimes import check_runtime

    runtime = check_runtime(runtime)
    spec = _spec(backend)
    if bias_correct and spec.name != DEFAULT_BACKEND:
        raise InvalidInputError(
            f"bias-field correction applies to the '{DEFAULT_BACKEND}' backend only; "
            f"'{spec.name}' normalises the image itself;",
            hints={"cli": "drop --bias-correct.", "gui": "untick Bias-field correction (N4)."},
        )
    if spec.remote:
        return _remote_session(spec, weights=weights, device=device, server=server, token=token)
    if server is not None or token is not None:
        raise InvalidInputError(
            f"the '{spec.name}' backend runs here; a server URL or token applies only to "
            f"{', '.join(s.name for s in BACKENDS.values() if s.remote)}")
    if spec.weights_card is None:
        if weights is not None:
            raise InvalidInputError(
                f"the '{spec.name}' backend needs no weights (got {weights!s});",
                hints={"cli": "drop --weights.", "gui": "clear the Weights field."},
            )
        if str(device or "auto").strip().lower() not in ("auto", "cpu"):
            raise InvalidInputError(
                f"the '{spec.name}' backend runs on the CPU only; device {device!r} does not "
                "apply: use auto or cpu"
            )
        if bias_correct:
            from .bias_corrected import BiasCorrectedRegionGrowing

            return BiasCorrectedRegionGrowing()
        module = importlib.import_module(f"{__package__}.{spec.module}")
        return getattr(module, spec.cls)()
    ok, reason = _module_exists(spec)
    if not ok:
        raise MedsegError(f"the '{spec.name}' backend is not available: {reason}")
    try:
        module = importlib.import_module(f"{__package__}.{spec.module}")
    except ImportError as exc:
        raise MedsegError(
            f"the '{spec.name}' backend could not be loaded: {exc}. Check that its "
            f"dependencies are installed, or use the '{DEFAULT_BACKEND}' backend."
        ) from exc
    cls = getattr(module, spec.cls, None)
    if cls is None:
        raise MedsegError(
            f"the '{spec.name}' backend module napari_medseg.prompts.{spec.module} has no "
            f"class {spec.cls}; this installation is incomplete"
        )
    session = cls(weights=weights, device=device)
    if hasattr(session, "runtime"):
        session.runtime = runtime
    return session


def _remote_session(spec: BackendSpec, *, weights, device, server, token) -> PromptSession:
    """A backend that runs on its own server: the server has the weights and the device."""
    if weights is not None:
        raise InvalidInputError(
            f"the '{spec.name}' backend uses the model its server loaded (got weights {weights!s});",
            hints={"cli": "drop --weights.", "gui": "clear the Weights field."})
    if str(device or "auto").strip().lower() not in ("auto", "cpu"):
        raise InvalidInputError(
            f"the '{spec.name}' backend runs where its server runs (the server's --device); "
            f"device {device!r} does not apply: drop it")
    ok, reason = _module_exists(spec)
    if not ok:
        raise MedsegError(f"the '{spec.name}' backend is not available: {reason}")
    module = importlib.import_module(f"{__package__}.{spec.module}")
    return getattr(module, spec.cls)(server=server, token=token)
