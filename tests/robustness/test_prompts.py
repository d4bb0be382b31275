"""Bad input and faults of interactive segmentation: clear errors, nothing modified.

Table-driven: each case names the input, the expected error type and a message
fragment, and checks that no output file appeared / the session is unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.cli import main
from napari_medseg.errors import InvalidInputError, MedsegError
from napari_medseg.io import write_volume
from napari_medseg.io.volume import Volume
from napari_medseg.prompts.factory import make_session
from napari_medseg.prompts.region_growing import RegionGrowingSession


@pytest.fixture()
def small_ct(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.normal(0, 10, (10, 20, 30)).astype(np.int16)
    arr[3:7, 5:15, 5:20] += 100
    volume = Volume(arr, spacing=(1.0, 1.0, 2.0), modality="CT")
    path = tmp_path / "ct.nii.gz"
    write_volume(volume, path)
    return path


CLI_CASES = [
    # (arguments after IMAGE -o OUT, message fragment)
    (["--point", "5,10,40"], "lies outside the image: axis x must be in 0..29"),
    (["--point=-1,10,10"], "lies outside the image: axis z must be in 0..9"),
    (["--point", "5,10"], "--point (z,y,x) must be 3 comma-separated numbers"),
    (["--point", "a,b,c"], "must be 3 comma-separated numbers"),
    (["--point", "5,10,10", "--box", "0,0,0,5,5"], "--box (z0,y0,x0,z1,y1,x1) must be 6"),
    (["--point", "5,10,10", "--box", "0,0,0,50,5,5"], "--box corner"),
    (["--negative", "5,10,10"], "give at least one --point"),
    ([], "give at least one --point"),
    (["--point", "5,10,10", "--label", "300"], "--label must be 1..255"),
    (["--point", "5,10,10", "--model", "nope"], "unknown interactive backend 'nope'"),
    (["--point", "5,10,10", "--weights", "x.pth"], "needs no weights"),
]


@pytest.mark.parametrize("extra, fragment", CLI_CASES)
def test_cli_bad_input(small_ct, tmp_path, capsys, extra, fragment):
    out = tmp_path / "out.nii.gz"
    rc = main(["prompt", str(small_ct), "-o", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert fragment in err
    assert err.count("\n") == 1, "one line, no traceback"
    assert not out.exists() and not list(tmp_path.glob("out*"))


def test_cli_missing_image(tmp_path, capsys):
    rc = main(["prompt", str(tmp_path / "nope.nii.gz"), "-o", str(tmp_path / "o.nii.gz"), "--point", "1,1,1"])
    assert rc == 2
    assert "nope.nii.gz" in capsys.readouterr().err


def _session():
    rng = np.random.default_rng(0)
    arr = rng.normal(0, 10, (10, 20, 30)).astype(np.float32)
    arr[3:7, 5:15, 5:20] += 100
    s = RegionGrowingSession()
    s.set_volume(Volume(arr, spacing=(1.0, 1.0, 2.0)))
    return s


SESSION_CASES = [
    ("point outside", lambda s: s.add_point((5, 10, 30)), InvalidInputError, "outside the volume"),
    ("point 2D", lambda s: s.add_point((5, 10)), InvalidInputError, "3 voxel indices"),
    ("box outside", lambda s: s.add_box((0, 0, 0), (10, 10, 10)), InvalidInputError, "outside the volume"),
    ("mask shape", lambda s: s.set_initial_mask(np.ones((2, 2, 2))), InvalidInputError, "does not match the volume"),
    ("not a volume", lambda s: s.set_volume(np.zeros((4, 4, 4))), InvalidInputError, "needs a Volume"),
]


@pytest.mark.parametrize("name, action, error, fragment", SESSION_CASES, ids=[c[0] for c in SESSION_CASES])
def test_session_bad_input_changes_nothing(name, action, error, fragment):
    s = _session()
    first = s.add_point((5, 10, 10)).mask.copy()
    n_history = len(s._history)
    with pytest.raises(error, match=fragment):
        action(s)
    assert np.array_equal(s.mask, first)
    assert len(s._history) == n_history
    assert s.add_point((5, 11, 12)).mask.any(), "the session still works afterwards"


def test_nan_volume_is_refused():
    arr = np.zeros((5, 5, 5), np.float32)
    arr[2, 2, 2] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        RegionGrowingSession().set_volume(Volume(arr))


def test_no_volume_set():
    with pytest.raises(InvalidInputError, match="no volume set"):
        RegionGrowingSession().add_point((0, 0, 0))


def test_cancel_during_set_volume_keeps_session_unprepared():
    from napari_medseg.errors import Cancelled
    from napari_medseg.progress import CancelToken

    token = CancelToken()
    token.cancel()
    big = Volume(np.zeros((40, 200, 200), np.int16))
    s = RegionGrowingSession()
    with pytest.raises(Cancelled):
        s.set_volume(big, cancel=token)
    with pytest.raises(InvalidInputError, match="no volume set"):
        s.add_point((1, 1, 1))


def test_unknown_backend_and_weights_for_weights_free():
    with pytest.raises(InvalidInputError, match="choose one of: region-growing"):
        make_session("sam")
    with pytest.raises(InvalidInputError, match="needs no weights"):
        make_session("region-growing", weights="/tmp/x.pth")


@pytest.mark.gui
def test_widget_cancel_and_backend_error_leave_layers_unchanged(make_napari_viewer, qtbot, monkeypatch):
    """A failing backend and a cancelled click leave the labels as they were; the
    widget stays usable and the next click works."""
    from napari_medseg._widgets.interactive import InteractiveSegmentationWidget
    from napari_medseg.io.layer_data import image_layer_tuple

    rng = np.random.default_rng(0)
    arr = rng.normal(0, 10, (10, 40, 40)).astype(np.int16)
    arr[3:7, 10:30, 10:30] += 100
    volume = Volume(arr, spacing=(1.0, 1.0, 2.0), modality="CT")
    viewer = make_napari_viewer()
    data, kwargs, _ = image_layer_tuple(volume, "ct")
    viewer.add_image(data, **kwargs)
    widget = InteractiveSegmentationWidget(viewer)
    labels = widget.create_labels_layer()
    labels.data[0, 0, 0] = 9
    before = labels.data.copy()

    original = RegionGrowingSession._predict

    def broken(self, prompts, state):
        raise RuntimeError("simulated out of memory")

    monkeypatch.setattr(RegionGrowingSession, "_predict", broken)
    widget.add_point_voxel((5, 20, 20))
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert "simulated out of memory" in widget.last_error
    assert np.array_equal(labels.data, before)
    assert len(viewer.layers["prompts"].data) == 0

    # a cancelled click: the worker finishes its step, then nothing is written
    monkeypatch.setattr(RegionGrowingSession, "_predict", original)
    widget.add_point_voxel((5, 20, 20))
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert np.array_equal(labels.data, before)
    assert len(viewer.layers["prompts"].data) == 0
    assert not widget._session.prompts.points if widget._session is not None else True

    widget.add_point_voxel((5, 20, 20))
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert (labels.data == 1).sum() > 100
    assert labels.data[0, 0, 0] == 9
