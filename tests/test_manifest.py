"""The npe2 manifest is valid, every python_name imports, and the light paths stay light.

``npe2 validate napari-medseg --imports`` in test form: the manifest parses and
validates with npe2's own schema (from the file and through the installed
``napari.manifest`` entry point), and each ``python_name`` it lists is importable
and callable. A subprocess then checks that importing the package, the reader, the
sample data and the CLI (and opening a NIfTI through the reader) imports neither
torch, monai nor napari.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")
from npe2 import PluginManifest  # noqa: E402

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_medseg" / "napari.yaml"


def _manifest() -> PluginManifest:
    return PluginManifest.from_file(MANIFEST)


def _python_names() -> list:
    try:
        return [(c.id, c.python_name) for c in _manifest().contributions.commands if c.python_name]
    except Exception:  # collection must not crash; test_manifest_validates reports it
        return []


def test_manifest_validates():
    pm = _manifest()  # raises pydantic ValidationError when the schema is violated
    assert pm.name == "napari-medseg"
    assert pm.contributions.commands


def test_manifest_is_registered_through_the_entry_point():
    pm = PluginManifest.from_distribution("napari-medseg")
    assert pm.name == "napari-medseg"
    assert {c.id for c in pm.contributions.commands} == {c.id for c in _manifest().contributions.commands}


def test_command_ids_and_references():
    pm = _manifest()
    ids = [c.id for c in pm.contributions.commands]
    assert len(ids) == len(set(ids)), "duplicate command ids"
    for cid in ids:
        assert cid.startswith("napari-medseg."), cid
    contrib = pm.contributions
    referenced = ([r.command for r in contrib.readers or []] + [w.command for w in contrib.writers or []]
                  + [w.command for w in contrib.widgets or []]
                  + [s.command for s in contrib.sample_data or [] if hasattr(s, "command")])
    for cid in referenced:
        assert cid in ids, f"{cid} is referenced but not declared as a command"


def test_sample_data_contribution():
    samples = {s.key: s for s in _manifest().contributions.sample_data or []}
    assert "abdominal_ct_phantom" in samples
    assert samples["abdominal_ct_phantom"].command == "napari-medseg.make_sample_ct"


@pytest.mark.parametrize("command_id,python_name", _python_names(), ids=[c for c, _ in _python_names()])
def test_python_name_imports(command_id, python_name):
    """Fails until the module behind each manifest entry exists (one test per entry)."""
    from npe2.manifest.utils import import_python_name

    obj = import_python_name(python_name)
    assert callable(obj), f"{python_name} ({command_id}) is not callable"


def test_validate_imports_like_npe2_cli():
    """What ``npe2 validate napari-medseg --imports`` runs."""
    _manifest().validate_imports()


_LIGHT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import napari_medseg
    import napari_medseg._reader as reader
    import napari_medseg._sample_data
    import napari_medseg.phantom
    import napari_medseg.io
    from napari_medseg.cli import build_parser
    build_parser()  # what `medseg --help` does: imports every sub-command module
    stage = {"imports": sorted(m for m in ("torch", "monai", "napari") if m in sys.modules)}
    # Open a NIfTI through the reader, as napari would.
    from napari_medseg.io import Volume, write_volume
    path = sys.argv[1]
    write_volume(Volume(np.zeros((4, 5, 6), dtype=np.int16), modality="CT"), path)
    func = reader.napari_get_reader(path)
    layers = func(path)
    stage["read"] = sorted(m for m in ("torch", "monai", "napari") if m in sys.modules)
    stage["n_layers"] = len(layers)
    print(json.dumps(stage))
    """
)


def test_light_imports_do_not_pull_torch_monai_or_napari(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _LIGHT_SCRIPT, str(tmp_path / "x.nii.gz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["imports"] == [], f"importing the package/reader/CLI imported {result['imports']}"
    assert result["read"] == [], f"opening a NIfTI through the reader imported {result['read']}"
    assert result["n_layers"] == 1


def test_medseg_help_lists_sample():
    proc = subprocess.run([sys.executable, "-m", "napari_medseg.cli", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sample" in proc.stdout
