"""Fixtures of the SAM backend tests: the fixture manifest, deterministic and tiny networks."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def sam_shapes(shared_fixtures) -> dict:
    """Key -> shape of the released SAM-Med3D state dict (shared fixture)."""
    return json.loads((shared_fixtures / "sam_med3d_state_dict.json").read_text())


@pytest.fixture(scope="session")
def sam_reference(shared_fixtures) -> dict:
    with np.load(shared_fixtures / "sam_med3d_reference.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def deterministic_net(sam_shapes):
    """Full-size SAM-Med3D with the fixture's deterministic weights."""
    from napari_medseg.models.sam_med3d import build_sam_med3d
    from napari_medseg.models.sam_med3d.testing import deterministic_state_dict

    net = build_sam_med3d()
    net.load_state_dict(deterministic_state_dict(sam_shapes["state_dict_shapes"]), strict=True)
    return net


@pytest.fixture
def tiny_net():
    """A small SAM-Med3D of the same architecture (fast encoder) with seeded weights."""
    from napari_medseg.models.sam_med3d import build_sam_med3d

    torch.manual_seed(0)
    return build_sam_med3d(embed_dim=48, depth=2, num_heads=2, global_attn_indexes=(1,), prompt_dim=48)
