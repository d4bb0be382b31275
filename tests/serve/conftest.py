"""Fixtures of the server tests: a real uvicorn server on loopback, tokens, a phantom CT."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi, uvicorn, httpx) is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")
pytest.importorskip("httpx", reason="the [serve] extra is not installed")

from ._helpers import TOKEN_A, TOKEN_B  # noqa: E402  (after the skips)


@pytest.fixture(scope="session")
def phantom():
    """A small synthetic abdominal CT (int16 HU) with its ground-truth labels."""
    from napari_medseg.phantom import make_phantom

    return make_phantom(shape=(40, 128, 128), spacing_zyx=(2.5, 1.6, 1.6), n_lesions=1)


@pytest.fixture(scope="session")
def liver_click(phantom) -> tuple:
    """The liver's deepest voxel (a radiologist's first click)."""
    from scipy import ndimage as ndi

    liver = phantom.labels == phantom.label_ids["liver"]
    dist = ndi.distance_transform_edt(liver, sampling=phantom.ct.spacing_zyx)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(dist)), dist.shape))


@pytest.fixture
def start_server():
    """``start_server(**config) -> handle`` (``url``, ``app``, ``stop()``); stopped after the test."""
    from napari_medseg.serve.app import ServeConfig, serve_in_thread

    handles = []

    def start(**kwargs):
        kwargs.setdefault("tokens", [TOKEN_A, TOKEN_B])
        handle = serve_in_thread(ServeConfig(**kwargs))
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def server(start_server):
    """A server with the default configuration and two tokens."""
    return start_server()
