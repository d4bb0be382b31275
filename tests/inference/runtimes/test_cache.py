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


def test_an_edited_forward_changes_the_key(tmp_path, monkeypatch):
    """Same structure, same weights, other code: a converted model of the old code is stale."""
    import importlib
    import os

    src = tmp_path / "medseg_keytest_net.py"
    body = ("import torch\n\nclass Net(torch.nn.Module):\n"
            "    def __init__(self):\n        super().__init__()\n"
            "        self.conv = torch.nn.Conv3d(1, 2, 3)\n\n"
            "    def forward(self, x):\n        return {}\n")
    src.write_text(body.format("self.conv(x)"))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("medseg_keytest_net")
    torch.manual_seed(0)
    net = mod.Net()
    base = _key(net)
    assert _key(net) == base
    src.write_text(body.format("torch.relu(self.conv(x))"))
    stat = src.stat()  # make the edit visible even on a coarse file clock
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    edited = importlib.reload(mod).Net()
    edited.load_state_dict(net.state_dict())
    assert repr(edited) == repr(net) and weights_hash(edited) == weights_hash(net)
    assert _key(edited) != base
