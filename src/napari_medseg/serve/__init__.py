"""``medseg serve``: a GPU machine serves the project's backends to napari on a laptop.

Public API (the server needs the ``[serve]`` extra: FastAPI, uvicorn, httpx):

- :mod:`.app`: :class:`~.app.ServeConfig`, :func:`~.app.create_app`,
  :func:`~.app.run_server`, :func:`~.app.serve_in_thread`;
- :mod:`.client`: :class:`~.client.RemotePromptSession` (a
  :class:`~napari_medseg.prompts.base.PromptSession` on the server),
  :func:`~.client.remote_segment`, :class:`~.client.Client`;
- :mod:`.split`: :class:`~.split.SplitSamMed3DSession` (SAM-Med3D encoded on the server,
  decoded here);
- :mod:`.settings`: where the docks' work runs (:class:`~.settings.ServerSetting`,
  remembered without the token; :func:`~.settings.prompt_session`, :func:`~.settings.run_segment`);
- :mod:`.wire`: the message format (JSON header + compressed arrays, no pickle);
- :mod:`.auth`: token files and constant-time token checks.

Nothing is imported here, so ``import napari_medseg.serve`` stays light.
"""
