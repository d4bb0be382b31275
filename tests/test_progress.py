"""Progress/cancel primitives of the core."""

import pytest

from napari_medseg.errors import Cancelled
from napari_medseg.progress import CancelToken, check_cancel, iterate_progress, sub_progress


def _job(progress):
    for i in range(3):
        progress(i / 2, f"step {i}")
    return "done"


def test_iterate_progress_yields_reports_and_returns_the_result():
    gen = iterate_progress(_job)
    reports = []
    with pytest.raises(StopIteration) as stop:
        while True:
            reports.append(next(gen))
    assert reports == [(0.0, "step 0"), (0.5, "step 1"), (1.0, "step 2")]
    assert stop.value.value == "done"


def test_iterate_progress_reraises_in_the_callers_thread():
    token = CancelToken()

    def job(progress):
        progress(0.1, "started")
        token.cancel()
        check_cancel(token)

    gen = iterate_progress(job)
    assert next(gen) == (0.1, "started")
    with pytest.raises(Cancelled, match="nothing was changed"):
        next(gen)


def test_sub_progress_maps_into_its_range():
    seen = []
    inner = sub_progress(lambda f, t: seen.append((round(f, 3), t)), 0.5, 1.0, "predict: ")
    inner(0.5, "window 1/2")
    inner(2.0, "")
    assert seen == [(0.75, "predict: window 1/2"), (1.0, "predict: ")]
