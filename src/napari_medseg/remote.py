"""The Python client of a ``medseg serve`` server, in one place.

A laptop's napari (the Interactive and Automatic segmentation docks), the ``--server``
options of ``medseg prompt``/``medseg segment`` and scripts all go through these:

- :class:`Client` (``Client.from_token_file(url, token_file)``): the connection;
- :class:`RemotePromptSession`: a :class:`~napari_medseg.prompts.base.PromptSession` whose
  work runs on the server (image uploaded once, each reply the changed box only);
- :func:`remote_segment`: an automatic segmentation job on the server, returning the same
  :class:`~napari_medseg.inference.segment.SegmentResult` as a local run;
- :class:`SplitSamMed3DSession`: SAM-Med3D encoded on the server, decoded here;
- :class:`ServerError`: the server cannot be reached, refused the request or lost the
  session (raised before anything local changes).

The implementations live in :mod:`napari_medseg.serve` (beside the server that speaks the
same wire format); importing this module needs no FastAPI.
"""

from __future__ import annotations

from .serve.client import Client, RemotePromptSession, ServerError, remote_segment
from .serve.split import SplitSamMed3DSession

__all__ = ["Client", "RemotePromptSession", "ServerError", "SplitSamMed3DSession", "remote_segment"]
