"""Automatic segmentation jobs on a real loopback server: progress, cancel, same labels as local."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_medseg.errors import Cancelled
from napari_medseg.progress import CancelToken, check_cancel
from napari_medseg.serve.client import Client, ServerError, remote_segment

from .conftest import TOKEN_A, TOKEN_B


def test_remote_hu_tissue_equals_local_segment(server, phantom):
    """Submit, poll (progress only grows), fetch: labels, class table and notes equal a local run."""
    from napari_medseg.inference.segment import segment_with_info

    reports = []
    remote = remote_segment(phantom.ct, "hu-tissue", url=server.url, token=TOKEN_A,
                            progress=lambda f, t: reports.append(f), poll_s=0.01)
    local = segment_with_info(phantom.ct, "hu-tissue")
    assert remote.labels.dtype == local.labels.dtype
    assert np.array_equal(remote.labels, local.labels)
    assert remote.table.to_dict() == local.table.to_dict()
    assert remote.notes == local.notes and remote.model == local.model
    assert len(np.unique(remote.labels)) > 2  # several tissues, not an empty map
    assert reports[0] == 0.0 and reports[-1] == 1.0 and reports == sorted(reports)
    assert "upload_s" in remote.timings and "download_s" in remote.timings
    assert len(server.app.state.jobs._jobs) == 0  # the client deleted its finished job


def _slow_segment(started: threading.Event, steps: int = 400):
    """A segment_fn that reports progress and checks cancel (a model taking seconds)."""
    from napari_medseg.inference.segment import SegmentResult
    from napari_medseg.io.label_table import LabelTable

    def run(volume, model, roi, device, progress, cancel):
        started.set()
        for i in range(steps):
            check_cancel(cancel)
            progress(i / steps, f"window {i}/{steps}")
            time.sleep(0.01)
        return SegmentResult(np.ones(volume.shape, np.uint8), LabelTable.from_names({1: "x"}), model)

    return run


def test_progress_is_reported_and_cancel_stops_the_job(start_server, phantom):
    """Cancelling from the client stops the running job on the server (it leaves the store)."""
    started = threading.Event()
    handle = start_server(segment_fn=_slow_segment(started))
    cancel = CancelToken()
    seen = []

    def progress(fraction, text):
        seen.append(fraction)
        if fraction > 0.2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        remote_segment(phantom.ct, "hu-tissue", url=handle.url, token=TOKEN_A, progress=progress,
                       cancel=cancel, poll_s=0.02)
    assert started.is_set() and 0.2 < max(seen) < 0.9  # it ran, then stopped part-way
    assert seen == sorted(seen)
    assert len(handle.app.state.jobs._jobs) == 0


def test_job_states_through_the_raw_api(start_server, phantom):
    """GET /jobs/{id} moves queued/running -> done; the result is refused (409) before that;
    another token gets 404; DELETE cancels a running job."""
    from napari_medseg.serve.client import volume_message

    started = threading.Event()
    handle = start_server(segment_fn=_slow_segment(started, steps=60))
    with Client(handle.url, TOKEN_A) as a, Client(handle.url, TOKEN_B) as b:
        job = a.json("POST", "/jobs", content=volume_message(phantom.ct, model="hu-tissue"))["job_id"]
        assert a.json("GET", f"/jobs/{job}")["state"] in ("queued", "running")
        with pytest.raises(ServerError, match="409"):
            a.request("GET", f"/jobs/{job}/result")
        with pytest.raises(ServerError, match="404"):
            b.json("GET", f"/jobs/{job}")
        fractions = []
        while (status := a.json("GET", f"/jobs/{job}"))["state"] != "done":
            fractions.append(status["progress"])
            time.sleep(0.05)
        assert fractions == sorted(fractions) and status["progress"] == 1.0
        header, arrays = a.message("GET", f"/jobs/{job}/result")
        assert arrays["labels"].shape == phantom.ct.shape and header["table"]["labels"][0]["name"] == "x"
        second = a.json("POST", "/jobs", content=volume_message(phantom.ct, model="hu-tissue"))["job_id"]
        assert a.json("DELETE", f"/jobs/{second}")["deleted"] == second
        with pytest.raises(ServerError, match="404"):
            a.json("GET", f"/jobs/{second}")


def test_jobs_refuse_paths_unknown_models_and_failures_are_reported(server, phantom):
    from napari_medseg.io.volume import Volume
    from napari_medseg.serve.client import volume_message

    with Client(server.url, TOKEN_A) as a:
        for model, words in (("/etc/passwd", "looks like a path"), ("../models/x", "looks like a path"),
                             ("no-such-model", "400")):
            with pytest.raises(ServerError, match=words):
                a.json("POST", "/jobs", content=volume_message(phantom.ct, model=model))
        with pytest.raises(ServerError, match="unknown structure"):
            a.json("POST", "/jobs", content=volume_message(phantom.ct, model="hu-tissue",
                                                           roi_subset=["not_an_organ"]))
    # a label map is not a CT: the job fails on the server and the client says why
    labels = Volume(phantom.labels.astype(np.int16), spacing=phantom.ct.spacing)
    with pytest.raises(ServerError, match="label map"):
        remote_segment(labels, "hu-tissue", url=server.url, token=TOKEN_A, poll_s=0.01)
