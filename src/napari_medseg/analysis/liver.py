"""Liver and lesions in one call: segment (or take a label map) and measure every lesion.

:func:`segment_and_measure` is the one sequence behind ``medseg lesions`` and the
"Liver & lesions" widget: refuse options that would not be used, segment with
:func:`napari_medseg.inference.liver_cascade.segment_liver` (the hybrid cascade or an
nnU-Net model) unless a label map is given, find the liver and lesion ids by name, and
measure with :func:`napari_medseg.analysis.lesions.measure_lesions`. Callers only read
inputs and write or show the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Union

from ..errors import InvalidInputError
from ..io.label_table import LabelTable
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback, check_cancel, report, sub_progress
from .lesions import LesionReport, liver_lesion_ids, measure_lesions

__all__ = ["LiverLesionResult", "segment_and_measure", "DEFAULT_MODEL"]

#: The model run when none is named: the locally trained hybrid cascade.
DEFAULT_MODEL = "hybrid-liver"


@dataclass
class LiverLesionResult:
    """What :func:`segment_and_measure` returns (also unpacks as ``labels, table, report``).

    Attributes
    ----------
    labels : Volume
        The label map on the image's grid: the model's output (0 background, 1 liver,
        2 liver_lesion) or the label map that was given.
    table : LabelTable
        Names (and colours) of ``labels``' classes.
    report : LesionReport
        Per-lesion measurements, liver volume and tumour burden; ``report.metadata``
        holds ``liver_id``, ``lesion_id`` and ``model`` (None when a label map was given).
    segmented : bool
        True when a model produced ``labels`` (False: the given label map was measured).
    """

    labels: Volume
    table: LabelTable
    report: LesionReport
    segmented: bool

    def __iter__(self):
        return iter((self.labels, self.table, self.report))


def segment_and_measure(
    image: Volume,
    model: Optional[str] = None,
    weights=None,
    device: Optional[str] = None,
    labels: Optional[Volume] = None,
    liver_id: Optional[int] = None,
    lesion_id: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelLike] = None,
    *,
    table: Union[LabelTable, Mapping[int, str], None] = None,
    runtime: Optional[str] = None,
) -> LiverLesionResult:
    """Segment the liver and its lesions (unless ``labels`` is given) and measure the lesions.

    Parameters
    ----------
    image : Volume
        The CT (HU). Never modified.
    model : str, optional
        ``"hybrid-liver"`` (default), a hybrid checkpoint file (``.pt``/``.pth``), an
        nnU-Net trained-model folder, or an nnU-Net/TotalSegmentator registry name whose
        classes name the liver and/or lesions.
    weights : path, optional
        The hybrid checkpoint (file or folder) or the registry model's weights folder;
        default: the installed weights.
    device : str, optional
        ``"auto"`` (default), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    labels : Volume, optional
        An existing label map on ``image``'s grid to measure instead of segmenting.
        ``model``, ``weights`` and ``device`` must then be left out (they would not be used).
    liver_id, lesion_id : int, optional
        Label values of the liver and lesions in ``labels``; default: found by name in
        ``table`` (``liver``; a name containing tumour/lesion/metastasis), else 1 and 2.
    progress : callable, optional
        ``(fraction, text)``; reaches 1.0 when the measurements are done.
    cancel : CancelToken-like, optional
        Checked between stages; raises :class:`~napari_medseg.errors.Cancelled` and
        nothing is returned.
    table : LabelTable or dict, optional
        Class names of ``labels`` (``{id: name}`` or a table), used to find the ids.
    runtime : {"auto", "openvino", "torch"}, optional
        What runs the networks on the CPU (hybrid-liver stages or an nnU-Net model; default
        ``"auto"``); not with ``labels``. What ran (and why not OpenVINO after a fallback)
        is in ``report.metadata["runtime"]``, the seconds in ``report.metadata["timings"]``.

    Returns
    -------
    LiverLesionResult
        ``labels`` (Volume), ``table``, ``report`` and ``segmented``.

    Raises
    ------
    InvalidInputError
        ``model``/``weights``/``device`` together with ``labels``; equal liver and lesion
        ids; a volume the model cannot process; a model without liver/lesion classes.
    GeometryMismatchError
        ``labels`` is not on ``image``'s grid.
    WeightsNotFoundError, CheckpointMismatchError, UnsafeCheckpointError
        From the model (missing, mismatched or unsafe weights).
    InsufficientMemoryError
        The estimate exceeds the available memory (nothing was started).
    Cancelled
        ``cancel`` was set.
    """
    if labels is not None:
        unused = [name for name, value in (("model", model), ("weights", weights),
                                           ("device", device), ("runtime", runtime))
                  if value is not None]
        if unused:
            raise InvalidInputError(
                f"a label map was given to measure, so {', '.join(unused)} would not be "
                "used; leave them out (or give no label map to segment the image)")
        if table is None:
            names: dict = {}
        elif isinstance(table, LabelTable):
            names = table.names
        else:
            names = {int(k): str(v) for k, v in dict(table).items()}
        found = liver_lesion_ids(names)
        result_table = table if isinstance(table, LabelTable) else LabelTable.from_names(names)
        label_volume, model_used, measure_from = labels, None, 0.0
    else:
        from ..inference.liver_cascade import segment_liver

        model_used = str(model) if model is not None else DEFAULT_MODEL
        run_info: dict = {}
        array, result_table = segment_liver(
            image, model_used, weights=weights, device=device or "auto",
            progress=sub_progress(progress, 0.0, 0.95), cancel=cancel, runtime=runtime or "auto",
            info=run_info)
        check_cancel(cancel)
        label_volume = image.with_array(array, metadata={})
        found = liver_lesion_ids(result_table.names)
        measure_from = 0.95
    liver = int(liver_id) if liver_id is not None else found[0]
    lesion = int(lesion_id) if lesion_id is not None else found[1]
    report(progress, measure_from, "measuring lesions")
    lesion_report = measure_lesions(image, label_volume, liver_id=liver, lesion_id=lesion)
    check_cancel(cancel)
    lesion_report.metadata["model"] = model_used
    if labels is None:  # what ran the networks (medseg lesions --json prints it) and the seconds
        lesion_report.metadata.update(run_info)
    report(progress, 1.0, f"done: {len(lesion_report.lesions)} lesion(s)")
    return LiverLesionResult(labels=label_volume, table=result_table, report=lesion_report,
                             segmented=labels is None)
