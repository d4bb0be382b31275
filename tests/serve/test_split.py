"""SAM-Med3D through the server: full remote and split mode give the local session's masks."""

from __future__ import annotations

import numpy as np
import pytest

from ._helpers import TOKEN_A, same_mask

torch = pytest.importorskip("torch")


def _tiny_net():
    from napari_medseg.models.sam_med3d import build_sam_med3d

    torch.manual_seed(0)  # the same weights on the server, here and in the reference
    return build_sam_med3d(embed_dim=48, depth=2, num_heads=2, global_attn_indexes=(1,), prompt_dim=48)


def test_sam_med3d_remote_and_split_equal_local(start_server, phantom, liver_click):
    from napari_medseg.prompts.sam_med3d_session import SamMed3DSession
    from napari_medseg.serve.client import RemotePromptSession
    from napari_medseg.serve.split import SplitSamMed3DSession

    handle = start_server(session_factory=lambda backend, device: SamMed3DSession(network=_tiny_net(), device="cpu"))
    volume = phantom.ct
    local = SamMed3DSession(network=_tiny_net(), device="cpu")
    local.set_volume(volume)
    remote = RemotePromptSession("sam-med3d", url=handle.url, token=TOKEN_A)
    remote.set_volume(volume)
    split = SplitSamMed3DSession(network=_tiny_net(), url=handle.url, token=TOKEN_A)
    split.set_volume(volume)
    z, y, x = liver_click
    steps = [((z, y, x), True), ((z, y, min(x + 4, 127)), True), ((z, max(y - 30, 0), x), False)]
    for point, positive in steps:
        lu = local.add_point(point, positive)
        remote.add_point(point, positive)
        before = split.client.last_bytes
        split.add_point(point, positive)
        assert same_mask(remote.mask, local.mask) and same_mask(split.mask, local.mask)
        assert remote.message == local.message and split.message == local.message
        assert lu.mask.any()
        if split.fetched == 1 and point != steps[0][0]:
            assert split.client.last_bytes == before  # no request: the click stayed here
    assert split.fetched == 1  # one embedding for the crop, fetched once
    local.undo(), remote.undo(), split.undo()
    assert same_mask(remote.mask, local.mask) and same_mask(split.mask, local.mask)
    remote.close(), split.close()
    assert len(handle.app.state.sessions) == 0
