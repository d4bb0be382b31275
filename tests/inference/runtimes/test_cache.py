"""Cache keys of converted networks (inference/runtimes/cache.py): weights, shape, version, precision."""

from __future__ import annotations

import pytest

from napari_medseg.inference.runtimes.cache import cache_key, compiled_cache_dir, weights_hash

torch = pytest.importorskip("torch")


def _key(module, shape=(1, 1, 8, 8, 8), version="1", precision="f32"):
    return cache_key(module, shape, runtime="openvino", runtime_version=version,
                     precision=precision, weights_key=weights_hash(module))


def test_every_part_of_the_key_changes_it():
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 2, 3)
    base = _key(net)
    assert _key(net) == base  # deterministic
    assert _key(net, shape=(1, 1, 16, 8, 8)) != base
    assert _key(net, version="2") != base
    assert _key(net, precision="bf16") != base
    with torch.no_grad():
        net.weight[0, 0, 0, 0, 0] += 1e-3  # one weight: another checkpoint
    assert _key(net) != base
    other = torch.nn.Conv3d(1, 2, 3, padding=1)  # same weights, another structure
    other.load_state_dict(net.state_dict())
    assert _key(other) != _key(net)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path / "c"))
    assert compiled_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MEDSEG_COMPILED_DIR")
    assert compiled_cache_dir().parts[-2:] == ("napari-medseg", "compiled")
