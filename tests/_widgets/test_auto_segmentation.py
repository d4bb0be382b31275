"""The "Automatic segmentation" dock widget in a real viewer (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg._widgets.auto_segmentation import CUSTOM, AutoSegmentationWidget
from napari_medseg.errors import InvalidInputError
from napari_medseg.io.layer_data import image_layer_tuple
from napari_medseg.io.volume import Volume
from napari_medseg.models.hu_tissue import CLASSES
from napari_medseg.phantom import make_phantom


pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "no-totalseg"))


TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(seed=2, shape=(24, 96, 96), spacing_zyx=(5.0, 2.0, 2.0))


def dock(viewer) -> AutoSegmentationWidget:
    """The widget as napari's Plugins menu docks it (it holds a PublicOnlyProxy viewer)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Automatic segmentation")
    assert isinstance(widget, AutoSegmentationWidget)
    return widget


def add_image(viewer, volume: Volume, name: str):
    data, kwargs, _ = image_layer_tuple(volume, name)
    return viewer.add_image(data, **kwargs)


def run_and_wait(qtbot, widget) -> str:
    with qtbot.waitSignal(widget.finished, timeout=TIMEOUT_MS) as blocker:
        widget.run()
    return blocker.args[0]


def layer_names(viewer):
    return [layer.name for layer in viewer.layers]


IDS_LUNG = 5


def make_model_folder_in_subprocess(out_dir, options: str = "spacing=(4.0, 4.0, 4.0), "
                                    "label_names={'background': 0, 'organ': 1, 'tumour': 2}, seed=1") -> "Path":
    """Build a random-weight model folder in a child process.

    Writing the checkpoint imports torch.optim, which loads triton's bundled LLVM; loaded
    into a process that already has napari's OpenGL context (Mesa's LLVM) it segfaults.
    Inference itself never imports triton (tests/models/test_segment.py checks it).
    """
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "from napari_medseg.testing.nnunet import make_random_model_folder as m\n"
        f"print(m({str(out_dir)!r}, n_classes=3, patch_size=(16, 16, 16), base_features=4,"
        f" max_features=8, {options}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=600)
    return Path(done.stdout.strip().splitlines()[-1])


def test_weights_free_model_adds_aligned_named_layer(make_napari_viewer, qtbot, phantom):
    viewer = make_napari_viewer()
    volume = phantom.ct.with_array(phantom.ct.array)
    image = add_image(viewer, volume, "CT")
    widget = dock(viewer)
    assert widget.model_combo.currentData() == "hu-tissue"
    assert widget.roi_list.count() == len(CLASSES)
    assert run_and_wait(qtbot, widget) == "done"
    assert layer_names(viewer) == ["CT", "CT hu-tissue"]
    labels = viewer.layers["CT hu-tissue"]
    assert np.issubdtype(labels.data.dtype, np.integer) and labels.data.shape == volume.shape
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    # the image's physical units too: no "Inconsistent units" and one slider step
    assert [str(u) for u in labels.units] == ["millimeter"] * 3
    assert viewer.layers.extent.units is not None
    names = dict(zip(labels.features["index"], labels.features["name"]))
    assert names[IDS_LUNG] == "lung" and names[1] == "subcutaneous_fat"
    assert (labels.data == IDS_LUNG).sum() > 100
    lung_truth = phantom.labels == phantom.label_ids["lung"]
    inter = np.logical_and(labels.data == IDS_LUNG, lung_truth).sum()
    assert 2 * inter / ((labels.data == IDS_LUNG).sum() + lung_truth.sum()) > 0.9
    assert widget.run_btn.isEnabled() and not widget.cancel_btn.isEnabled()
    # A second run never overwrites: it adds a new, uniquely named layer.
    widget.select_structures(["lung", "bone"])
    assert run_and_wait(qtbot, widget) == "done"
    assert layer_names(viewer) == ["CT", "CT hu-tissue", "CT hu-tissue [2]"]
    second = viewer.layers["CT hu-tissue [2]"]
    assert set(np.unique(second.data)) <= {0, 4, 5}
    assert (viewer.layers["CT hu-tissue"].data == labels.data).all()


def test_random_weight_nnunet_folder_as_custom_model(make_napari_viewer, qtbot, tmp_path,
                                                     one_torch_thread):
    folder = make_model_folder_in_subprocess(tmp_path / "Dataset555_test")
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(0, 200, (10, 20, 24)).astype(np.float32), spacing=(4.0, 3.0, 5.0),
                 origin=(-20.0, 10.0, 5.0), modality="CT")
    image = add_image(viewer := make_napari_viewer(), vol, "scan")
    widget = dock(viewer)
    widget.set_custom_folder(folder)
    widget.device_combo.setCurrentText("cpu")
    assert not widget.roi_list.isEnabled()
    assert run_and_wait(qtbot, widget) == "done"
    layer = viewer.layers[f"scan {folder.name}"]
    assert layer.data.dtype == np.uint8 and layer.data.shape == vol.shape
    assert layer.data.any()
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    names = dict(zip(layer.features["index"], layer.features["name"]))
    assert names[1] == "organ" and names[2] == "tumour"
    assert layer.metadata["medseg_model"] == folder.name


def test_cpu_runtime_choice_runs_openvino_and_says_what_ran(make_napari_viewer, qtbot, tmp_path,
                                                           monkeypatch, one_torch_thread):
    """Options > CPU runtime: openvino compiles the folder's network (labels as the core's
    OpenVINO run), the status line names the runtime; a failed conversion runs PyTorch and
    the status says why; torch says PyTorch."""
    ov = pytest.importorskip("openvino")
    from napari_medseg.inference.segment import segment_with_info

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path / "compiled"))
    folder = make_model_folder_in_subprocess(tmp_path / "Dataset556_rt")
    rng = np.random.default_rng(1)
    vol = Volume(rng.normal(0, 200, (10, 20, 24)).astype(np.float32), spacing=(4.0, 3.0, 5.0),
                 modality="CT")
    add_image(viewer := make_napari_viewer(), vol, "scan")
    widget = dock(viewer)
    widget.set_custom_folder(folder)
    widget.device_combo.setCurrentText("cpu")
    assert [widget.runtime_combo.itemText(i) for i in range(widget.runtime_combo.count())] == \
        ["auto", "openvino", "torch"]
    with pytest.raises(InvalidInputError, match="unknown runtime"):
        widget.set_runtime("onnx")
    widget.set_runtime("openvino")
    assert run_and_wait(qtbot, widget) == "done"
    assert widget.last_result.runtime["used"] == "openvino"
    assert "Network: OpenVINO (runtime openvino, compiled now)" in widget.status.text()
    assert list((tmp_path / "compiled").glob("*.xml"))
    core = segment_with_info(vol, folder, device="cpu", runtime="openvino")
    assert np.array_equal(widget.last_layer.data, core.labels)

    monkeypatch.setenv("MEDSEG_COMPILED_DIR", str(tmp_path / "fresh"))

    def broken(*a, **k):
        raise RuntimeError("no conversion rule for aten::something")

    monkeypatch.setattr(ov, "convert_model", broken)
    assert run_and_wait(qtbot, widget) == "done"
    assert widget.last_result.runtime["used"] == "torch"
    assert "Network: PyTorch (runtime openvino)" in widget.status.text()
    assert "Not OpenVINO: OpenVINO could not compile" in widget.status.text()
    assert "aten::something" in widget.status.text()

    widget.set_runtime("torch")
    assert run_and_wait(qtbot, widget) == "done"
    assert "Network: PyTorch (runtime torch)." in widget.status.text()
    assert np.array_equal(widget.last_layer.data,
                          segment_with_info(vol, folder, device="cpu", runtime="torch").labels)


def test_cancel_mid_run_leaves_layers_unchanged_then_rerun_works(make_napari_viewer, qtbot,
                                                                 phantom, monkeypatch):
    import napari_medseg.models.hu_tissue as hu

    viewer = make_napari_viewer()
    add_image(viewer, phantom.ct, "CT")
    widget = dock(viewer)
    original = hu.body_mask

    def slow_body(*args, **kwargs):  # cancel arrives while the first stage runs
        widget.jobs.token.cancel()
        return original(*args, **kwargs)

    monkeypatch.setattr(hu, "body_mask", slow_body)
    before = layer_names(viewer)
    assert run_and_wait(qtbot, widget) == "cancelled"
    assert layer_names(viewer) == before
    assert "Cancelled" in widget.status.text() and widget.run_btn.isEnabled()
    monkeypatch.setattr(hu, "body_mask", original)
    assert run_and_wait(qtbot, widget) == "done"
    assert layer_names(viewer) == before + ["CT hu-tissue"]


def test_cancel_button_during_run(make_napari_viewer, qtbot, phantom):
    viewer = make_napari_viewer()
    add_image(viewer, phantom.ct, "CT")
    widget = dock(viewer)
    with qtbot.waitSignal(widget.finished, timeout=TIMEOUT_MS) as blocker:
        widget.run()
        assert widget.cancel_btn.isEnabled() and not widget.run_btn.isEnabled()
        widget.cancel_btn.click()
    assert blocker.args[0] in ("cancelled", "done")  # a very fast run may finish first
    if blocker.args[0] == "cancelled":
        assert layer_names(viewer) == ["CT"]


def test_2d_image_shows_message_and_run_stays_enabled(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.int16), name="slice")
    widget = dock(viewer)
    with qtbot.waitSignal(widget.finished, timeout=5000) as blocker:
        widget.run()
    assert blocker.args[0] == "error"
    assert "3D volume" in widget.status.text()
    assert widget.run_btn.isEnabled() and layer_names(viewer) == ["slice"]


def test_worker_error_shows_message_and_recovers(make_napari_viewer, qtbot, phantom, monkeypatch):
    viewer = make_napari_viewer()
    add_image(viewer, phantom.ct, "CT")
    widget = dock(viewer)
    monkeypatch.setenv("MEDSEG_AVAILABLE_MEMORY", str(2**20))
    assert run_and_wait(qtbot, widget) == "error"
    assert "memory" in widget.status.text() and widget.run_btn.isEnabled()
    assert layer_names(viewer) == ["CT"]
    monkeypatch.delenv("MEDSEG_AVAILABLE_MEMORY")
    assert run_and_wait(qtbot, widget) == "done"


def test_missing_weights_message_and_installed_marks(make_napari_viewer, qtbot, phantom):
    viewer = make_napari_viewer()
    add_image(viewer, phantom.ct, "CT")
    widget = dock(viewer)
    texts = [widget.model_combo.itemText(i) for i in range(widget.model_combo.count())]
    assert "total-fast (not installed)" in texts and texts[-1] == CUSTOM
    widget.set_model("total-fast")
    assert widget.roi_list.count() == 117 and widget.download_btn.isEnabled()
    widget.roi_filter.setText("kidney")
    visible = [widget.roi_list.item(i).text() for i in range(widget.roi_list.count())
               if not widget.roi_list.item(i).isHidden()]
    assert visible == ["kidney_right", "kidney_left", "kidney_cyst_left", "kidney_cyst_right"]
    assert run_and_wait(qtbot, widget) == "error"
    text = widget.status.text()
    # the widget's own controls, not the command line's flags
    assert "Download weights" in text and "under Weights" in text, text
    assert "--weights" not in text and "medseg weights" not in text, text
    assert layer_names(viewer) == ["CT"] and widget.run_btn.isEnabled()


def test_new_image_layers_appear_in_picker(make_napari_viewer, qtbot, phantom):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    assert widget.image_combo.count() == 0
    add_image(viewer, phantom.ct, "CT")
    viewer.add_labels(np.zeros((2, 2, 2), np.uint8), name="not an image")
    assert [widget.image_combo.itemText(i) for i in range(widget.image_combo.count())] == ["CT"]


def test_download_button_runs_in_background_and_refreshes(make_napari_viewer, qtbot, monkeypatch,
                                                          tmp_path):
    import napari_medseg.models.weights as wm
    from napari_medseg.models.registry import get_card

    calls = []

    def fake_download(name, progress=None, cancel=None):
        calls.append(name)
        card = get_card(name)
        d = wm.install_root(card) / card.files[0].target / card.model_folder_name
        (d / "fold_0").mkdir(parents=True)
        for f in ("dataset.json", "plans.json", "fold_0/checkpoint_final.pth"):
            (d / f).write_text("{}")
        progress(0.5, "half way")
        return wm.install_root(card)

    monkeypatch.setattr(wm, "download", fake_download)
    viewer = make_napari_viewer()
    widget = dock(viewer)
    widget.set_model("total-fastest")
    assert "not installed" in widget.model_combo.currentText()
    with qtbot.waitSignal(widget.finished, timeout=TIMEOUT_MS) as blocker:
        widget.download_btn.click()
    assert blocker.args[0] == "done" and calls == ["total-fastest"]
    assert widget.model_combo.currentText() == "total-fastest (installed)"
    assert "installed" in widget.status.text() and widget.run_btn.isEnabled()


# ---------------------------------------------------------------- where it runs: a server
def use_server(widget, url, token_file) -> None:
    """Fill in Options > Where it runs as a user does (pick "a server", type URL and file)."""
    fields = widget.server
    fields.where_combo.setCurrentIndex(fields.where_combo.findData(True))
    for edit, text in ((fields.url_edit, url), (fields.token_edit, str(token_file))):
        edit.setText(text)
        edit.editingFinished.emit()


def test_hu_tissue_on_a_server_equals_this_computer(make_napari_viewer, qtbot, phantom, medseg_server):
    """The same run here and on a loopback server: same labels and class table; the bar moves;
    local-only options are refused with a server; a stopped server is a message, no layer."""
    viewer = make_napari_viewer()
    add_image(viewer, phantom.ct, "CT")
    widget = dock(viewer)
    assert run_and_wait(qtbot, widget) == "done"
    here = viewer.layers["CT hu-tissue"]
    use_server(widget, medseg_server.url, medseg_server.token_file)
    bar = []
    widget.progress_bar.valueChanged.connect(bar.append)
    assert run_and_wait(qtbot, widget) == "done", widget.status.text()
    there = viewer.layers["CT hu-tissue [2]"]
    assert np.array_equal(there.data, here.data) and there.data.dtype == here.data.dtype
    assert len(np.unique(there.data)) > 2
    assert dict(zip(there.features["index"], there.features["name"])) == \
        dict(zip(here.features["index"], here.features["name"]))
    np.testing.assert_allclose(there.scale, here.scale)
    np.testing.assert_allclose(there.translate, here.translate)
    assert bar and bar[-1] == 1000 and bar == sorted(bar)
    assert "Done" in widget.status.text()
    assert len(medseg_server.handle.app.state.jobs._jobs) == 0  # the finished job was fetched and deleted
    # options that only apply here
    widget.device_combo.setCurrentText("cuda")
    assert run_and_wait(qtbot, widget) == "error"
    assert "set Device to auto" in widget.status.text()
    widget.device_combo.setCurrentText("auto")
    widget.set_custom_folder("/models/Dataset001_Liver")
    assert run_and_wait(qtbot, widget) == "error"
    assert "pick a registry model" in widget.status.text()
    widget.set_model("hu-tissue")
    # the server is gone: a clear message, no new layer, Run usable again
    medseg_server.handle.stop()
    before = layer_names(viewer)
    assert run_and_wait(qtbot, widget) == "error"
    assert "cannot reach the medseg server" in widget.status.text() and "Server URL" in widget.status.text()
    assert layer_names(viewer) == before and widget.run_btn.isEnabled()


def test_cancel_on_a_server_cancels_its_job(make_napari_viewer, qtbot, phantom, tmp_path):
    """Cancel while the server's job runs: the job stops there, no layer is added."""
    import threading

    from napari_medseg.serve.app import ServeConfig, serve_in_thread
    from napari_medseg.serve.auth import make_token

    from ..serve._helpers import slow_segment

    started = threading.Event()
    token_file = tmp_path / "token"
    handle = serve_in_thread(ServeConfig(tokens=[make_token(token_file)], segment_fn=slow_segment(started)))
    try:
        viewer = make_napari_viewer()
        add_image(viewer, phantom.ct, "CT")
        widget = dock(viewer)
        use_server(widget, handle.url, token_file)
        seen = []

        def on_progress(value):
            seen.append(value)
            if value > 300 and widget.cancel_btn.isEnabled():
                widget.cancel_btn.click()  # the user presses Cancel part-way

        widget.progress_bar.valueChanged.connect(on_progress)
        assert run_and_wait(qtbot, widget) == "cancelled"
        assert started.is_set() and 300 < max(seen) < 900  # it ran on the server, then stopped
        assert layer_names(viewer) == ["CT"] and "Cancelled" in widget.status.text()
        assert len(handle.app.state.jobs._jobs) == 0  # cancelled and forgotten on the server
        assert widget.run_btn.isEnabled()
    finally:
        handle.stop()


# ------------------------------------------------------------------------------ MRI
def make_two_channel_folder_in_subprocess(out_dir) -> "Path":
    """A random-weight (T1, T2) model folder, built in a child process (see above)."""
    return make_model_folder_in_subprocess(
        out_dir, "spacing=(3.0, 3.0, 3.0), normalization='ZScoreNormalization', "
                 "channel_names=('T1', 'T2'), seed=2")


def test_multi_sequence_model_gets_one_picker_per_channel(make_napari_viewer, qtbot, tmp_path,
                                                          one_torch_thread):
    from napari_medseg.inference.segment import segment

    folder = make_two_channel_folder_in_subprocess(tmp_path / "Dataset556_t1t2")
    rng = np.random.default_rng(1)
    z, y, x = np.mgrid[0:16, 0:20, 0:20]
    blob = ((z - 8) ** 2 + (y - 10) ** 2 + (x - 9) ** 2) < 30
    geo = dict(spacing=(3.0, 3.0, 3.0), origin=(1.0, 2.0, 3.0), modality="MR")
    t1 = Volume((300 + 500 * blob + rng.normal(0, 20, blob.shape)).astype(np.float32), **geo)
    t2 = Volume((900 - 400 * blob + rng.normal(0, 20, blob.shape)).astype(np.float32), **geo)
    viewer = make_napari_viewer()
    add_image(viewer, t1, "t1")
    add_image(viewer, t2, "t2")
    widget = dock(viewer)
    assert widget.channel_pickers == {}  # hu-tissue: one image
    widget.set_custom_folder(folder)
    assert list(widget.channel_pickers) == ["T2"] and widget.channel_names == ["T1", "T2"]
    assert widget.form.labelForField(widget.image_combo).text() == "Image (T1)"
    widget.set_image_layer("t1")
    widget.set_channel_layer("T2", "t2")
    widget.device_combo.setCurrentText("cpu")
    assert run_and_wait(qtbot, widget) == "done"
    layer = viewer.layers[f"t1 {folder.name}"]
    expected = segment({"T1": t1, "T2": t2}, folder)[0]
    assert np.array_equal(layer.data, expected) and len(np.unique(expected)) >= 2
    # the channel picked matters: T1 twice gives another result
    widget.set_channel_layer("T2", "t1")
    assert run_and_wait(qtbot, widget) == "done"
    assert not np.array_equal(viewer.layers[f"t1 {folder.name} [2]"].data, expected)
    with pytest.raises(InvalidInputError, match="no extra channel 'FLAIR'"):
        widget.set_channel_layer("FLAIR", "t2")
    # back to a one-image model: the extra picker goes
    widget.set_model("hu-tissue")
    assert widget.channel_pickers == {}
    assert widget.form.labelForField(widget.image_combo).text() == "Image"


def test_deepbet_in_the_widget_on_the_mni_template(viewer_after_first_use, qtbot):
    pytest.importorskip("deepbet", reason="deepbet is not installed (pip install -e '.[mri]')")
    nilearn = pytest.importorskip("nilearn", reason="nilearn (the MNI152 template) is not installed")
    from pathlib import Path

    from scipy.ndimage import binary_fill_holes

    from napari_medseg.io import read_volume
    from tests.napari_open import open_as_user

    data = Path(nilearn.__file__).parent / "datasets" / "data"
    viewer = viewer_after_first_use  # the plugin is the reader of .nii.gz, as after first use
    widget = dock(viewer)
    image = open_as_user(viewer, data / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")[0]
    widget.set_image_layer(image.name)
    widget.set_model("deepbet")
    assert "brain" in widget.model_info.text().lower() and not widget.download_btn.isEnabled()
    assert run_and_wait(qtbot, widget) == "done", widget.status.text()
    layer = [lyr for lyr in viewer.layers if lyr.name.endswith("deepbet")][0]
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    gm = read_volume(data / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz").array.astype(float)
    wm_ = read_volume(data / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz").array.astype(float)
    ref = binary_fill_holes((gm + wm_) > 0.2)
    mask = layer.data == 1
    assert 2 * (mask & ref).sum() / (mask.sum() + ref.sum()) >= 0.97
