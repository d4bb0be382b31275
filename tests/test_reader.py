"""Opening the project's files the way users do: ``napari FILE``, File > Open, drag and drop.

All three end in ``QtViewer._qt_open(paths)``, i.e. ``viewer.open(paths, plugin=None)``:
napari picks the reader itself and shows a blocking "Choose reader" dialog when two
plugins claim a file and no preference is saved. (``viewer.open(path)`` with napari's
default ``plugin="napari"`` is a scripting call that forces napari's builtins; it is
not what any of these user paths call.)

napari's builtins claim NIfTI, NRRD, MetaImage, DICOM and every folder, then fail on
them, and napari gives a plugin no way to rank its reader above them. The plugin
therefore saves itself as napari's reader for its formats on activation (its first
use). These tests start from napari's default settings, use the plugin once (dock a
widget, or open with ``--plugin napari-medseg`` on the command line) and then open
every format the reader claims through ``_qt_open`` with the dialog turned into a test
failure (``napari_open.py``); the last test runs the real ``napari`` command line
under Xvfb.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_medseg._reader import FOLDER_PATTERN, PLUGIN_NAME, reader_patterns, register_reader_preferences  # noqa: E402
from napari_medseg._reader import napari_get_reader, read_layers  # noqa: E402
from napari_medseg.errors import ImageReadError  # noqa: E402
from napari_medseg.io import LabelTable, Volume, read_volume, write_labels, write_volume  # noqa: E402
from napari_medseg.io import LabelTable, Volume, read_labels, read_volume, write_labels, write_volume  # noqa: E402
from napari_medseg.testing.volumes import write_dicom_series
from napari_medseg.testing.volumes import label_volume, oblique_volume, write_dicom_series
from tests.napari_open import open_as_user, viewer_after_first_use  # noqa: F401  (fixture)


MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_medseg" / "napari.yaml"


#: what napari's reader dialog lists for this plugin
DISPLAY_NAME = yaml.safe_load(MANIFEST.read_text())["display_name"]


SPACING = (0.8, 0.9, 2.5)  # x, y, z mm


ORIGIN = (-100.0, -50.0, 30.0)


SHAPE = (4, 6, 5)  # z, y, x


NAMES = {1: "liver", 2: "tumour"}


def _ct() -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.integers(-1000, 1500, SHAPE).astype(np.int16), spacing=SPACING, origin=ORIGIN, modality="CT")


def _labels() -> Volume:
    arr = np.zeros(SHAPE, np.uint8)
    arr[1:3, 2:5, 1:4] = 1
    arr[2, 3, 2] = 2
    return Volume(arr, spacing=SPACING, origin=ORIGIN)


# -------------------------------------------------------------------- GUI
def _assert_placed(layer, volume: Volume, *, atol=1e-5):
    np.testing.assert_allclose(layer.scale, volume.spacing_zyx, rtol=1e-6)
    np.testing.assert_allclose(layer.translate, volume.origin_zyx, atol=atol)
    assert [str(u) for u in layer.units] == ["millimeter"] * 3


def _add_study_attributes(files):
    """The patient/study attributes a scanner writes (empty where unknown) and a DICOM-SEG copies."""
    import pydicom

    for f in files:
        ds = pydicom.dcmread(f)
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyDate = "20240101"
        ds.StudyTime = "120000"
        ds.StudyID = "1"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.Manufacturer = "test"
        ds.save_as(f)


# ------------------------------------------------------------ napari CLI
_DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from napari._qt.qt_event_loop import get_qapp
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication, QDialog, QLabel, QRadioButton
    import napari
    from napari.__main__ import main

    EXPECTED = int(os.environ["MEDSEG_EXPECT_LAYERS"])

    def report(result, code):
        sys.stdout.write("MEDSEG-RESULT " + json.dumps(result) + "\\n")
        sys.stdout.flush()
        os._exit(code)

    ACCEPT = os.environ.get("MEDSEG_ACCEPT_DIALOG") == "1"
    seen = []

    def check():  # runs in napari's event loop, and inside a modal dialog's loop too
        for w in QApplication.topLevelWidgets():
            if isinstance(w, QDialog) and w.isVisible():
                buttons = w.findChildren(QRadioButton)
                info = {"dialog": w.windowTitle(), "choices": [b.text() for b in buttons],
                        "checked": [b.text() for b in buttons if b.isChecked()],
                        "text": [lab.text() for lab in w.findChildren(QLabel)]}
                if not ACCEPT:
                    report(info, 3)
                seen.append(info)
                w.accept()  # what a user does: OK on the preselected reader
                return
        viewer = napari.current_viewer()
        if viewer is not None and len(viewer.layers) >= EXPECTED:
            layers = []
            for layer in viewer.layers:
                item = {"name": layer.name, "type": type(layer).__name__, "shape": list(layer.data.shape),
                        "units": [str(u) for u in layer.units], "scale": [float(s) for s in layer.scale]}
                if item["type"] == "Labels":
                    item["names"] = [str(n) for n in layer.features["name"]]
                layers.append(item)
            report({"layers": layers, "dialogs": seen}, 0)

    app = get_qapp()
    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(100)
    sys.argv = ["napari", *sys.argv[1:]]
    main()
    """
)


def _run_napari(args, cwd: Path, config: Path, expect_layers: int, accept_dialog: bool = False) -> dict:
    if shutil.which("xvfb-run") is None:
        pytest.fail("xvfb-run is not installed (apt-get install xvfb): the napari command line cannot be tested")
    env = {**os.environ, "NAPARI_CONFIG": str(config), "MEDSEG_EXPECT_LAYERS": str(expect_layers),
           "MEDSEG_ACCEPT_DIALOG": "1" if accept_dialog else "0"}
    cmd = ["xvfb-run", "-a", sys.executable, "-c", _DRIVER, *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`napari {' '.join(args)}` neither opened {expect_layers} layers nor showed a dialog "
                    f"in 180 s:\n{(exc.stderr or b'')[-3000:]!r}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEDSEG-RESULT ")]
    assert lines, f"`napari {' '.join(args)}` exited {proc.returncode} without a result:\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("MEDSEG-RESULT "):])


# ------------------------------------------------------------------ no Qt
def test_manifest_claims_exactly_the_formats_the_reader_opens():
    from npe2 import PluginManifest

    [reader] = PluginManifest.from_file(MANIFEST).contributions.readers
    assert sorted(reader.filename_patterns) == sorted(reader_patterns())
    assert "*" not in reader.filename_patterns  # a catch-all makes every file napari opens ambiguous
    assert reader.accepts_directories  # DICOM folders
    assert PluginManifest.from_file(MANIFEST).on_activate == "napari_medseg._reader:on_activate"


def test_register_reader_preferences_keeps_the_users_choices():
    from napari.settings import NapariSettings

    settings = NapariSettings(config_path=None)  # in memory: never the user's file
    settings.plugins.extension2reader = {"*.nii.gz": "napari", "*.tif": "napari"}
    added = register_reader_preferences(settings)
    prefs = settings.plugins.extension2reader
    assert prefs["*.nii.gz"] == "napari" and prefs["*.tif"] == "napari"  # the user's choices stay
    assert "*.nii.gz" not in added and "*.tif" not in added
    for pattern in ["*.nii", "*.nrrd", "*.nhdr", "*.seg.nrrd", "*.mha", "*.mhd", "*.dcm", "*.DCM", FOLDER_PATTERN]:
        assert prefs[pattern] == PLUGIN_NAME, pattern
    assert register_reader_preferences(settings) == []  # nothing twice

    # a user who chose a reader for some folder keeps deciding folders
    settings.plugins.extension2reader = {"/data/cells.zarr/": "napari"}
    added = register_reader_preferences(settings)
    assert FOLDER_PATTERN not in added and FOLDER_PATTERN not in settings.plugins.extension2reader
    assert "*.nii.gz" in added


@pytest.mark.gui
@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"])
def test_open_image_and_labels_in_every_volume_format(viewer_after_first_use, tmp_path, ext):
    viewer = viewer_after_first_use
    ct = _ct()
    write_volume(ct, tmp_path / f"ct{ext}")
    write_labels(_labels(), tmp_path / f"case_seg{ext}", LabelTable.from_names(NAMES))  # + case_seg.json
    [image] = open_as_user(viewer, tmp_path / f"ct{ext}")
    assert type(image).__name__ == "Image" and image.name == "ct" and image.data.shape == SHAPE
    np.testing.assert_array_equal(np.asarray(image.data), ct.array)
    _assert_placed(image, ct)
    [labels] = open_as_user(viewer, tmp_path / f"case_seg{ext}")
    assert type(labels).__name__ == "Labels" and labels.name == "case_seg" and labels.data.shape == SHAPE
    assert labels.features["name"].tolist() == ["background", "liver", "tumour"]
    np.testing.assert_array_equal(np.asarray(labels.data), _labels().array)
    _assert_placed(labels, ct)
    # the class colours reach the layer: liver and tumour differ, background is transparent
    colours = labels.colormap.map(np.array([0, 1, 2]))
    assert colours[0][3] == 0 and not np.allclose(colours[1], colours[2])


@pytest.mark.gui
def test_open_slicer_seg_nrrd_with_its_segment_names(viewer_after_first_use, tmp_path):
    write_labels(_labels(), tmp_path / "case.seg.nrrd", LabelTable.from_names(NAMES))
    (tmp_path / "case.json").unlink()  # only the Slicer header names the segments now
    [labels] = open_as_user(viewer_after_first_use, tmp_path / "case.seg.nrrd")
    assert type(labels).__name__ == "Labels" and labels.name == "case" and labels.data.shape == SHAPE
    assert labels.features["name"].tolist() == ["background", "liver", "tumour"]
    _assert_placed(labels, _ct(), atol=1e-9)


@pytest.mark.gui
def test_open_dicom_folder_one_file_and_dicom_seg(viewer_after_first_use, tmp_path):
    from napari_medseg.io.dicom_seg import write_dicom_seg

    viewer = viewer_after_first_use
    info = write_dicom_series(tmp_path / "series", n=5)
    _add_study_attributes(info["files"])
    ct = read_volume(tmp_path / "series")
    [image] = open_as_user(viewer, tmp_path / "series")  # File > Open Folder, or `napari series/`
    assert type(image).__name__ == "Image" and image.name == "series" and image.data.shape == (5, 6, 5)
    _assert_placed(image, ct, atol=1e-9)
    # one file of the series opens the whole series
    [one] = open_as_user(viewer, info["files"][0])
    assert type(one).__name__ == "Image" and one.data.shape == (5, 6, 5)
    np.testing.assert_array_equal(np.asarray(one.data), np.asarray(image.data))
    # upper-case extensions, as PACS exports write them
    upper = tmp_path / "upper"
    upper.mkdir()
    for f in info["files"]:
        shutil.copy(f, upper / (f.stem.upper() + ".DCM"))
    [shouting] = open_as_user(viewer, sorted(upper.iterdir())[0])
    assert shouting.data.shape == (5, 6, 5)
    # a DICOM-SEG beside its series: Labels on the series grid with the segment names
    arr = np.zeros(ct.shape, np.uint8)
    arr[1:4, 2:5, 1:4] = 1
    arr[2, 3, 2] = 2
    write_dicom_seg(ct.with_array(arr), LabelTable.from_names(NAMES), ct, tmp_path / "series" / "seg.dcm")
    [seg] = open_as_user(viewer, tmp_path / "series" / "seg.dcm")
    assert type(seg).__name__ == "Labels" and seg.data.shape == ct.shape
    np.testing.assert_array_equal(np.asarray(seg.data), arr)
    assert {"liver", "tumour"} <= set(seg.features["name"])
    _assert_placed(seg, ct, atol=1e-6)
    # the folder still opens as the CT (the SEG inside it is not an image)
    [again] = open_as_user(viewer, tmp_path / "series")
    assert type(again).__name__ == "Image" and again.data.shape == (5, 6, 5)


@pytest.mark.gui
def test_open_pacs_export_without_extensions_and_its_anonymised_seg(viewer_after_first_use, tmp_path):
    """PACS exports name files IM0001, IM0002... (no extension): napari matches readers by file
    name, so such a series opens through its folder (File > Open Folder, ``napari FOLDER``).
    Anonymised series lack patient/study attributes; their DICOM-SEG still writes and opens."""
    from napari_medseg.io.dicom_seg import write_dicom_seg

    viewer = viewer_after_first_use
    info = write_dicom_series(tmp_path / "export", n=4)  # no PatientBirthDate, StudyID, ... (anonymised)
    pacs = tmp_path / "pacs"
    pacs.mkdir()
    for k, f in enumerate(info["files"]):
        shutil.copy(f, pacs / f"IM{k + 1:04d}")
    [image] = open_as_user(viewer, pacs)
    assert type(image).__name__ == "Image" and image.name == "pacs" and image.data.shape == (4, 6, 5)
    ct = read_volume(pacs)
    np.testing.assert_array_equal(np.asarray(image.data), ct.array)
    _assert_placed(image, ct, atol=1e-9)
    arr = np.zeros(ct.shape, np.uint8)
    arr[1:3, 2:5, 1:4] = 1
    arr[3, 3, 2] = 2
    write_dicom_seg(ct.with_array(arr), LabelTable.from_names(NAMES), ct, pacs / "seg.dcm")
    [seg] = open_as_user(viewer, pacs / "seg.dcm")
    assert type(seg).__name__ == "Labels" and seg.data.shape == ct.shape
    np.testing.assert_array_equal(np.asarray(seg.data), arr)
    assert {"liver", "tumour"} <= set(seg.features["name"])
    _assert_placed(seg, ct, atol=1e-6)


@pytest.mark.gui
def test_other_files_and_folders_stay_with_napari(make_napari_viewer, tmp_path, monkeypatch):
    """The plugin claims no PNG/TIFF/CSV; a folder without DICOM goes back to napari's builtins."""
    import imageio.v3 as iio
    import npe2
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog
    from napari.plugins._npe2 import get_readers
    from napari.settings import get_settings

    viewer = make_napari_viewer()
    monkeypatch.setattr(get_settings(), "config_path", None)
    npe2.PluginManager.instance().deactivate(PLUGIN_NAME)
    npe2.PluginManager.instance().activate(PLUGIN_NAME)
    for name in ["photo.png", "cells.tif", "table.csv", "array.npy", "IM0001"]:
        assert PLUGIN_NAME not in get_readers(str(tmp_path / name)), name
    (tmp_path / "pngs").mkdir()
    for i in range(3):
        iio.imwrite(tmp_path / "pngs" / f"{i}.png", np.full((4, 5), i, np.uint8))
    offered = {}

    def choose_builtins(self):  # what the user does in the dialog napari shows
        offered["readers"] = [b.text() for b in self.reader_btn_group.buttons()]
        return "napari builtins", False

    monkeypatch.setattr(QtReaderDialog, "get_user_choices", choose_builtins)
    [stack] = open_as_user(viewer, tmp_path / "pngs")
    assert offered["readers"] == ["napari builtins"]  # this plugin declined the folder
    assert type(stack).__name__ == "Image" and stack.data.shape == (3, 4, 5)


@pytest.mark.gui
def test_open_real_totalsegmentator_files(viewer_after_first_use, shared_data):
    folder = shared_data / "totalseg_example"
    viewer = viewer_after_first_use
    ct = read_volume(folder / "example_ct_sm.nii.gz")
    [image] = open_as_user(viewer, folder / "example_ct_sm.nii.gz")
    [labels] = open_as_user(viewer, folder / "example_seg.nii.gz")  # names from the XML header extension
    assert type(image).__name__ == "Image" and image.data.shape == (30, 101, 122)
    assert type(labels).__name__ == "Labels" and labels.data.shape == (30, 101, 122)
    names = dict(zip(labels.features["index"], labels.features["name"]))
    assert names[5] == "liver" and names[52] == "aorta"
    np.testing.assert_allclose(image.scale, (3.0, 3.0, 3.0))
    np.testing.assert_allclose(image.affine.affine_matrix[:3, 3], ct.origin_zyx, atol=1e-4)
    assert [str(u) for u in labels.units] == ["millimeter"] * 3


@pytest.mark.gui
def test_open_real_dicom_folder_file_and_seg(viewer_after_first_use, shared_data):
    folder = shared_data / "dcmqi_ct3slice"
    viewer = viewer_after_first_use
    [image] = open_as_user(viewer, folder)  # two series in it: the CT, not the SEG
    assert type(image).__name__ == "Image" and image.data.shape == (3, 512, 512)
    np.testing.assert_allclose(image.scale, (1.0, 0.810547, 0.810547), rtol=1e-6)
    assert [str(u) for u in image.units] == ["millimeter"] * 3
    [one] = open_as_user(viewer, folder / "ct-3slice_02.dcm")
    assert one.data.shape == (3, 512, 512)
    [seg] = open_as_user(viewer, folder / "liver.dcm")
    assert type(seg).__name__ == "Labels" and seg.data.shape == (3, 512, 512)
    assert "liver" in " ".join(seg.features["name"]).lower()
    np.testing.assert_allclose(seg.translate, image.translate, atol=1e-6)
    [nrrd] = open_as_user(viewer, folder / "liver_seg.nrrd")
    assert type(nrrd).__name__ == "Labels"


@pytest.mark.gui
@pytest.mark.slow
def test_napari_command_line_opens_ct_and_labels(tmp_path):
    """``napari ct.nii.gz labels.nii.gz`` in a fresh napari configuration, under Xvfb.

    1. Never used: napari itself asks which reader to use (napari's rule for two
       plugins claiming a file; this also proves the test sees a dialog), with this
       plugin preselected, so pressing OK opens both files correctly.
    2. The README's command, ``napari --plugin napari-medseg ct.nii.gz labels.nii.gz``,
       opens both without a dialog and is the plugin's first use.
    3. From then on the plain ``napari ct.nii.gz labels.nii.gz`` opens both directly.
    """
    write_volume(_ct(), tmp_path / "ct.nii.gz")
    write_labels(_labels(), tmp_path / "labels.nii.gz", LabelTable.from_names(NAMES))
    config = tmp_path / "napari" / "settings.yaml"
    files = ["ct.nii.gz", "labels.nii.gz"]

    fresh = _run_napari(files, tmp_path, config, 2)
    assert fresh.get("dialog") == "Choose reader", fresh
    assert fresh["checked"] == [DISPLAY_NAME] and fresh["choices"][0] == DISPLAY_NAME, fresh
    ok = _run_napari(files, tmp_path, tmp_path / "napari-ok" / "settings.yaml", 2, accept_dialog=True)
    assert ok["dialogs"] and ok["dialogs"][0]["checked"] == [DISPLAY_NAME], ok
    assert [(layer["name"], layer["type"]) for layer in ok["layers"]] == [("ct", "Image"), ("labels", "Labels")]
    assert ok["layers"][1]["names"] == ["background", "liver", "tumour"]

    for args in (["--plugin", "napari-medseg", *files], files):
        result = _run_napari(args, tmp_path, config, 2)
        assert "dialog" not in result, f"`napari {' '.join(args)}` showed a reader dialog: {result}"
        ct_layer, labels_layer = result["layers"]
        assert (ct_layer["name"], ct_layer["type"], ct_layer["shape"]) == ("ct", "Image", list(SHAPE))
        assert (labels_layer["name"], labels_layer["type"]) == ("labels", "Labels")
        assert labels_layer["names"] == ["background", "liver", "tumour"]
        for layer in result["layers"]:
            assert layer["units"] == ["millimeter"] * 3
            np.testing.assert_allclose(layer["scale"], SPACING[::-1], rtol=1e-6)


# ------------------------------------------------------------------ no Qt
def test_get_reader_returns_none_for_unhandled(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "img.tif").write_bytes(b"II*\x00" + bytes(50))
    (tmp_path / "noext").write_bytes(b"just bytes")
    (tmp_path / "empty").mkdir()
    for p in ["notes.txt", "img.tif", "noext", "empty", "missing.nii.gz", "missing_folder/"]:
        assert napari_get_reader(str(tmp_path / p)) is None, p
    assert napari_get_reader([str(tmp_path / "notes.txt"), str(tmp_path / "img.tif")]) is None
    assert napari_get_reader([]) is None
    assert napari_get_reader(12345) is None  # not even a path


def test_get_reader_accepts_volumes_and_dicom(tmp_path):
    write_volume(oblique_volume(), tmp_path / "ct.nrrd")
    info = write_dicom_series(tmp_path / "dicom", n=3)
    (tmp_path / "other").mkdir()
    noext = tmp_path / "other" / "IM0001"
    noext.write_bytes(info["files"][0].read_bytes())  # DICOM files often have no extension
    for p in [tmp_path / "ct.nrrd", tmp_path / "dicom", info["files"][0], noext]:
        assert napari_get_reader(str(p)) is read_layers, p
    # several files of one series are read once, as one volume
    layers = read_layers([str(f) for f in info["files"]])
    assert len(layers) == 1 and layers[0][0].shape == (3, 6, 5)


def test_reader_image_vs_labels_heuristic(tmp_path):
    rng = np.random.default_rng(0)
    ct = Volume(rng.integers(-1000, 1500, (4, 5, 6)).astype(np.int16))
    write_volume(ct, tmp_path / "ct.nii.gz")
    write_volume(ct, tmp_path / "ct_mask.nii.gz")  # "mask" in the name but thousands of values
    write_volume(Volume(rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)), tmp_path / "liver_seg.nrrd")
    write_volume(Volume(rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)), tmp_path / "t1.nrrd")  # no hint: image
    write_labels(Volume(rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)), tmp_path / "case.mha",
                 LabelTable.from_names({1: "liver", 2: "tumour"}))  # names in sidecar
    kinds = {p: read_layers(str(tmp_path / p))[0][2] for p in
             ["ct.nii.gz", "ct_mask.nii.gz", "liver_seg.nrrd", "t1.nrrd", "case.mha"]}
    assert kinds == {"ct.nii.gz": "image", "ct_mask.nii.gz": "image", "liver_seg.nrrd": "labels",
                     "t1.nrrd": "image", "case.mha": "labels"}
    data, kwargs, _ = read_layers(str(tmp_path / "case.mha"))[0]
    assert kwargs["features"]["name"] == ["background", "liver", "tumour"] and kwargs["name"] == "case"


def test_float_label_map_with_sidecar_opens_as_labels(tmp_path):
    from napari_medseg.io.label_table import sidecar_dict

    import json

    write_volume(Volume(np.array([[[0.0, 1.0], [2.0, 1.0]]], np.float32)), tmp_path / "pred.nii.gz")
    (tmp_path / "pred.json").write_text(json.dumps(sidecar_dict(LabelTable.from_names({1: "liver", 2: "tumour"}))))
    data, kwargs, kind = read_layers(str(tmp_path / "pred.nii.gz"))[0]
    assert kind == "labels" and data.dtype == np.uint8 and kwargs["features"]["name"][2] == "tumour"


def test_reader_opens_multichannel_as_layers(tmp_path):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5), isVector=False),
                    str(tmp_path / "t.nii.gz"))
    with pytest.warns(UserWarning, match="opening each of its 2 channels as its own layer"):
        layers = read_layers(str(tmp_path / "t.nii.gz"))
    assert [kw["name"] for _, kw, _ in layers] == ["t [0]", "t [1]"]


def test_reader_error_names_file(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_text("not an image")
    reader = napari_get_reader(str(bad))
    assert reader is not None  # we handle .nii.gz ...
    with pytest.raises(ImageReadError, match=r"broken.nii.gz is a text file, not a NIfTI image"):
        reader(str(bad))  # ... and say exactly what is wrong


def test_real_totalseg_labels_open_as_named_labels(shared_data):
    data, kwargs, kind = read_layers(str(shared_data / "totalseg_example" / "example_seg.nii.gz"))[0]
    assert kind == "labels" and data.dtype == np.uint8
    names = dict(zip(kwargs["features"]["index"], kwargs["features"]["name"]))
    assert names[5] == "liver" and names[52] == "aorta"


# -------------------------------------------------------------------- GUI
@pytest.mark.gui
def test_open_oblique_nifti_in_viewer(viewer_after_first_use, tmp_path):
    vol = oblique_volume(dtype=np.int16, shape=(6, 7, 8))
    write_volume(vol, tmp_path / "ct.nrrd")
    labels = label_volume()
    lab = Volume(np.zeros(vol.shape, np.uint8), spacing=vol.spacing, origin=vol.origin, direction=vol.direction)
    lab.array[2:4, 3:5, 1:6] = 2
    write_labels(lab, tmp_path / "ct_seg.nii.gz", LabelTable.from_names({2: "lesion"}))
    viewer = viewer_after_first_use
    [image] = open_as_user(viewer, tmp_path / "ct.nrrd")
    [seg] = open_as_user(viewer, tmp_path / "ct_seg.nii.gz")
    assert type(image).__name__ == "Image" and type(seg).__name__ == "Labels"
    np.testing.assert_allclose(image.scale, vol.spacing_zyx)
    np.testing.assert_allclose(image.affine.affine_matrix[:3, :3], vol.direction_zyx, atol=1e-12)
    np.testing.assert_allclose(image.affine.affine_matrix[:3, 3], vol.origin_zyx)
    assert image.metadata["medseg_geometry"] == read_volume(tmp_path / "ct.nrrd").geometry_dict()
    assert list(image.contrast_limits) == [-160.0, 240.0]  # modality CT from the NRRD header
    # Labels overlay the image in physical mm: same voxel -> same world point (NIfTI float32 tolerance).
    for idx in [(0, 0, 0), (5, 6, 7), (3, 2, 4)]:
        world_img = np.asarray(image.data_to_world(idx))
        world_seg = np.asarray(seg.data_to_world(idx))
        np.testing.assert_allclose(world_img, world_seg, atol=1e-3)
        np.testing.assert_allclose(world_img, vol.index_to_physical(idx)[::-1], atol=1e-9)
    assert seg.features["name"].tolist() == ["background", "lesion"]
    np.testing.assert_allclose(seg.colormap.map(np.array([0]))[0][3], 0.0)  # background transparent
    assert labels.shape == (6, 8, 9)


def test_dicom_seg_opens_as_labels_on_the_ct_grid(shared_data):
    folder = shared_data / "dcmqi_ct3slice"
    data, kwargs, kind = read_layers(str(folder / "liver.dcm"))[0]
    ct = read_volume(folder)
    assert kind == "labels" and data.shape == ct.shape
    assert kwargs["metadata"]["medseg_geometry"]["origin_xyz"] == list(ct.origin)
    assert "liver" in " ".join(kwargs["features"]["name"]).lower()
    # the same liver as the NRRD export of this SEG
    nrrd, _ = read_labels(folder / "liver_seg.nrrd", reference=ct)
    np.testing.assert_array_equal(data > 0, nrrd.array > 0)


@pytest.mark.gui
def test_open_real_ct_nifti_in_viewer(viewer_after_first_use, shared_data):
    """The TotalSegmentator CT (LPS flip diag(-1, -1, 1)) and its labels line up in napari."""
    path = shared_data / "totalseg_example" / "example_ct_sm.nii.gz"
    vol = read_volume(path)
    viewer = viewer_after_first_use
    [image] = open_as_user(viewer, path)
    [seg] = open_as_user(viewer, shared_data / "totalseg_example" / "example_seg.nii.gz")
    assert type(seg).__name__ == "Labels" and seg.features["name"].tolist()[5] == "liver"
    np.testing.assert_allclose(image.scale, (3.0, 3.0, 3.0))
    np.testing.assert_allclose(image.affine.affine_matrix[:3, :3], np.diag([1.0, -1.0, -1.0]))  # zyx order
    assert list(image.contrast_limits) == [-160.0, 240.0]  # HU-like values: soft-tissue window
    assert image.metadata["medseg_geometry"]["origin_xyz"] == list(vol.origin)
    corner = (29, 100, 121)
    np.testing.assert_allclose(image.data_to_world(corner), vol.index_to_physical(corner)[::-1], atol=1e-6)
    np.testing.assert_allclose(seg.data_to_world(corner), image.data_to_world(corner), atol=1e-6)


@pytest.mark.gui
def test_open_dicom_folder_in_viewer(viewer_after_first_use, shared_data):
    [image] = open_as_user(viewer_after_first_use, shared_data / "dcmqi_ct3slice")
    assert image.data.shape == (3, 512, 512) and image.name == "dcmqi_ct3slice"
    np.testing.assert_allclose(image.scale, (1.0, 0.810547, 0.810547))
    np.testing.assert_allclose(image.translate, (-128.690002, -226.800003, -235.199997))
    assert image.metadata["dicom"]["Modality"] == "CT" and len(image.metadata["dicom"]["SOPInstanceUIDs"]) == 3
    assert list(image.contrast_limits) == [-160.0, 240.0]
