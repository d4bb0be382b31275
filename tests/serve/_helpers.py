"""Helpers of the server tests (tokens, mask comparison, a slow fake model), imported relatively."""

from __future__ import annotations

import threading
import time

import numpy as np

from napari_medseg.progress import check_cancel

TOKEN_A = "token-a-" + "a" * 32
TOKEN_B = "token-b-" + "b" * 32


def same_mask(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def slow_segment(started: threading.Event, steps: int = 400):
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
