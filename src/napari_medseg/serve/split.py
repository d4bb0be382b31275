"""SAM-Med3D split between a server and this machine (the InterFormer split).

The image encoder (a ViT over a 128³ crop: seconds on a CPU) runs on the server; the
prompt encoder and mask decoder (tens of milliseconds on a CPU) run here. The session
fetches the embedding of each crop once (1.5 MB of float32, cached here like the local
session caches its own) and answers every click inside that crop locally: clicks do not
cross the network at all. The results are those of a local
:class:`~napari_medseg.prompts.sam_med3d_session.SamMed3DSession` with the same weights,
since the server's crop and this machine's crop are the same (the same resampling of the
same uploaded volume).

This machine still needs the SAM-Med3D weights (for the decoder): ``medseg weights
download sam-med3d-turbo``, or pass ``network=``.
"""

from __future__ import annotations

from typing import Any, Optional

from ..errors import InvalidInputError
from ..io.volume import Volume
from ..progress import CancelLike, ProgressCallback, report, sub_progress
from ..prompts.sam_med3d_session import EMBEDDING_CACHE_SIZE, SamMed3DSession
from .client import Client, _client_from, volume_message


class SplitSamMed3DSession(SamMed3DSession):
    """SAM-Med3D whose crops are encoded by a ``medseg serve`` server.

    Parameters
    ----------
    weights, device, model_name, network
        As for :class:`~napari_medseg.prompts.sam_med3d_session.SamMed3DSession` (the
        local decoder's weights and device; ``device="cpu"`` suits a laptop).
    url, token, token_file, client
        The server (see :class:`~napari_medseg.serve.client.Client`).
    """

    def __init__(self, weights: Any = None, device: str = "cpu", *,
                 model_name: str = "sam-med3d-turbo", network: Any = None,
                 url: Optional[str] = None, token: Optional[str] = None, token_file=None,
                 client: Optional[Client] = None) -> None:
        super().__init__(weights, device, model_name=model_name, network=network)
        self.client = _client_from(client, url, token, token_file)
        self.session_id: Optional[str] = None
        #: embeddings fetched from the server (each one crossed the network once)
        self.fetched = 0
        #: bytes received for embeddings, in all
        self.embedding_bytes = 0

    def set_volume(self, volume: Volume, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelLike] = None) -> None:
        """Upload the volume (the server encodes) and prepare the local decoder."""
        if not isinstance(volume, Volume):
            raise InvalidInputError(f"set_volume needs a Volume, got {type(volume).__name__}")
        report(progress, 0.0, f"uploading the volume to {self.client.url}")
        reply = self.client.json("POST", "/sessions", content=volume_message(volume, backend="sam-med3d"),
                                 long=True)
        self.close()
        self.session_id = str(reply["session_id"])
        super().set_volume(volume, sub_progress(progress, 0.5, 1.0), cancel)

    def _embedding(self, start: tuple):
        import torch

        start = tuple(int(v) for v in start)
        if start in self._embeddings:
            emb = self._embeddings.pop(start)
            self._embeddings[start] = emb
            return emb
        if self.session_id is None:
            raise InvalidInputError("no volume set: call set_volume(volume) first")
        header, arrays = self.client.message("POST", f"/sessions/{self.session_id}/embedding",
                                             json_body={"start": list(start)}, long=True)
        self.fetched += 1
        self.embedding_bytes += self.client.last_bytes[1]
        emb = torch.from_numpy(arrays["embedding"].copy()).to(self.device)
        self._embeddings[start] = emb
        while len(self._embeddings) > EMBEDDING_CACHE_SIZE:
            self._embeddings.pop(next(iter(self._embeddings)))
        return emb

    def close(self) -> None:
        """Free the server's session."""
        if self.session_id is not None:
            try:
                self.client.request("DELETE", f"/sessions/{self.session_id}")
            except Exception:  # noqa: BLE001 - expired or unreachable: the server reaps it
                pass
            self.session_id = None
