"""Shared set-up of the torch-backed prompt sessions (SAM-Med3D, 3DSAM-adapter).

Each such session takes either a checkpoint (resolved through the weights manager, so a
missing file gives the usual "run `medseg weights download ...`" message at construction)
or an already built ``network`` (tests, benchmarks); picks the device on first use; and
loads the network there, in float32 (the precision their parity is established in), on
first use too, so constructing a session stays cheap.
"""

from __future__ import annotations

from typing import Any, Callable

from .base import PromptSession


class TorchPromptSession(PromptSession):
    """A :class:`PromptSession` whose backend is a torch network loaded lazily."""

    def __init__(self, weights: Any, device: str, model_name: str, network: Any,
                 loader: Callable[..., Any]) -> None:
        super().__init__()
        self._device_pref = device
        self._device = None
        self._network = network
        self._network_ready = False
        self._loader = loader
        self._checkpoint = None
        if network is None:
            from ..models.weights import resolve_weights

            self._checkpoint = resolve_weights(model_name, weights)

    @property
    def device(self):
        """The torch device (chosen by :func:`~napari_medseg.inference.device.choose_device`)."""
        if self._device is None:
            from ..inference.device import choose_device

            self._device = choose_device(self._device_pref)
        return self._device

    def _model(self):
        """The network on :attr:`device`, in float32, in eval mode (loaded on first use)."""
        if not self._network_ready:
            import torch

            if self._network is None:
                self._network = self._loader(self._checkpoint, device=self.device)
            self._network = self._network.to(device=self.device, dtype=torch.float32).eval()
            self._network_ready = True
        return self._network
