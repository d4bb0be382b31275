"""One user interaction with a promptable session, as a value: what a click, a box, an undo,
a reset or "refine this label" asks of a :class:`~napari_medseg.prompts.base.PromptSession`.

A front end (the napari widget, a script) queues :class:`Interaction` objects and runs
each with :func:`run_interaction` (in a worker thread), then writes the returned update
into the label map it owns (see :mod:`.compositing`). :func:`object_table` gives the
object its entry in the label table (name, colour, provenance).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import InvalidInputError, MedsegError
from ..progress import check_cancel

log = logging.getLogger(__name__)

#: The kinds of interaction.
KINDS = ("point", "box", "undo", "reset", "refine")


@dataclass(frozen=True, eq=False)
class Interaction:
    """One interaction.

    Attributes
    ----------
    kind : {"point", "box", "undo", "reset", "refine"}
    point : tuple of int, optional
        Voxel index (z, y, x) of a click.
    positive : bool
        A click inside (True) or outside (False) the object.
    box : ((z, y, x), (z, y, x)), optional
        Inclusive voxel corners of a box prompt.
    initial : numpy.ndarray of bool, optional
        The existing voxels a "refine" starts from.
    """

    kind: str
    point: Optional[tuple] = None
    positive: bool = True
    box: Optional[tuple] = None
    initial: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInputError(f"unknown interaction {self.kind!r}; use one of {KINDS}")

    @property
    def adds_prompt(self) -> bool:
        """True for a click or a box (the session gains a prompt)."""
        return self.kind in ("point", "box")

    @classmethod
    def click(cls, zyx, positive: bool = True) -> "Interaction":
        return cls("point", point=tuple(int(v) for v in zyx), positive=bool(positive))

    @classmethod
    def box_between(cls, lo, hi) -> "Interaction":
        return cls("box", box=(tuple(int(v) for v in lo), tuple(int(v) for v in hi)))

    @classmethod
    def refine(cls, initial: np.ndarray) -> "Interaction":
        initial = np.asarray(initial, dtype=bool)
        if not initial.any():
            raise InvalidInputError("the label to refine has no voxels")
        return cls("refine", initial=initial)


@dataclass(frozen=True)
class InteractionResult:
    """What :func:`run_interaction` returns.

    ``update`` is the session's :class:`~napari_medseg.prompts.base.Update` (None after a
    reset, or an undo with nothing to undo); ``report`` the plausibility report of the
    object after a click or box (:func:`~napari_medseg.prompts.plausibility.click_report`),
    or None.
    """

    update: object = None
    report: object = None


def run_interaction(session, interaction: Interaction, cancel=None) -> InteractionResult:
    """Apply ``interaction`` to ``session`` (prepared with ``set_volume``).

    When ``cancel`` is set after the session computed, a click/box/refine is undone in the
    session (which then matches the caller's untouched label map) and
    :class:`~napari_medseg.errors.Cancelled` is raised.
    """
    check_cancel(cancel)
    kind = interaction.kind
    if kind == "point":
        update = session.add_point(interaction.point, positive=interaction.positive)
    elif kind == "box":
        update = session.add_box(*interaction.box)
    elif kind == "undo":
        update = session.undo() if session.can_undo else None
    elif kind == "reset":
        session.reset()
        update = None  # the caller's compositor knows what the object's voxels were before it
    else:  # refine
        session.reset()
        update = session.set_initial_mask(interaction.initial)
    if cancel is not None and cancel.is_set():
        if kind in ("point", "box", "refine") and session.can_undo:
            session.undo()
        check_cancel(cancel)
    report = click_report_of(session) if interaction.adds_prompt else None
    return InteractionResult(update, report)


def click_report_of(session):
    """The click report (clicked value/position, warnings) for the session's first positive click.

    ``None`` when there is no positive click or no report can be made.
    """
    from .plausibility import click_report

    points = session.prompts.positive_points
    if not points:
        return None
    try:
        return click_report(session.volume, points[0], session.mask)
    except MedsegError as exc:
        log.warning("no plausibility report: %s", exc)
        return None


def object_table(table, label_id: int, name: str, backend: str):
    """``table`` with the interactive object ``label_id`` listed: name, colour, provenance.

    A new id gets its own distinct colour; a listed one keeps its colour. Provenance (what
    DICOM-SEG writes as the segment's algorithm type): an object without one is
    ``SEMIAUTOMATIC`` by ``backend``; a model's ``AUTOMATIC`` label refined with clicks
    becomes ``SEMIAUTOMATIC``, keeping the model's name.
    """
    new = table.with_label(int(label_id), name)
    kind = new.info_of(label_id).algorithm_type
    if kind == "AUTOMATIC":
        new = new.marked_edited([label_id])
    elif kind is None:
        new = new.with_provenance("SEMIAUTOMATIC", backend, ids=[label_id])
    return new
