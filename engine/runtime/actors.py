"""The Ray actors. They compute and return; only the driver writes to the store.

- MediaWorker (CPU): decode, sample, draw overlays, encode JPEG data URLs. Kept apart so GPUs and
  API slots never wait on it. Images come back as two object refs: their digests (small, the driver
  needs them for cache keys) and the data URLs (large, passed on to the model worker unread).
- ModelWorker (async, CPU-light): sends requests for every agent through one ModelClient, many in
  flight at once; returns each result with the row the driver writes to model_calls.
- SegmentorWorker (GPU when configured): builds the segmentor backend once, then segments videos.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Sequence

import numpy as np

from engine.media import masks
from engine.media.images import to_data_url, url_digest
from engine.media.video import Video
from engine.media.overlay import OverlayObject, draw_overlay


class MediaWorker:
    def __init__(self) -> None:
        import decord  # noqa: F401  (loaded now, not on the first video)

    def ready(self) -> int:
        import os

        return os.getpid()

    def frames(self, path: str, indices: Sequence[int], fps: float = 30.0) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB at the given absolute frame indices."""
        return Video(path, frame_folder_fps=fps).frames(list(indices))

    def encode(self, path: str, indices: Sequence[int], max_side: int, quality: int, fps: float = 30.0):
        """Frames as JPEG data URLs -> (digests, urls)."""
        urls = [to_data_url(f, max_side, quality) for f in self.frames(path, indices, fps)]
        return [url_digest(u) for u in urls], urls

    def overlays(
        self, path: str, indices: Sequence[int], frame_masks: dict[str, Any], max_side: int, quality: int,
        label: str | None = None, fps: float = 30.0,
    ):
        """Frames with one object's mask drawn (fill, contour, label) -> (digests, urls)."""
        urls = []
        for f, frame in zip(indices, self.frames(path, indices, fps)):
            rle = frame_masks.get(str(f))
            mask = masks.decode(rle) if rle is not None else None
            urls.append(to_data_url(draw_overlay(frame, [OverlayObject(mask=mask, label=label)]), max_side, quality))
        return [url_digest(u) for u in urls], urls


class ModelWorker:
    """Holds one ModelClient (created inside the actor's event loop) for all agents."""

    def __init__(self, config_json: str):
        from engine.config import Config
        from engine.llm.client import ModelClient

        self.cfg = Config.model_validate(json.loads(config_json))
        self._client_class = ModelClient  # imported now (openai, tenacity): the first call is not slower
        self.client = None

    async def query(self, agent: str, messages: list[dict], schema: type, urls: Sequence[str] = ()):
        """Fill 'sha256:' image placeholders with their data URLs and ask. The result carries its model_calls
        row (result.record) for the driver to write."""
        if self.client is None:  # created in the actor's event loop, where its connections will live
            self.client = self._client_class(self.cfg, None, use_cache=False)  # the driver owns cache and store
        by_digest = {url_digest(u): u for u in urls}
        return await self.client.query(agent, [_fill_images(m, by_digest) for m in messages], schema)

    def ready(self) -> int:
        import os

        return os.getpid()


def _fill_images(message: dict, by_digest: dict[str, str]) -> dict:
    content = message.get("content")
    if not isinstance(content, list):
        return message
    parts = []
    for p in content:
        if p.get("type") == "image_url" and p["image_url"]["url"].startswith("sha256:"):
            p = {"type": "image_url", "image_url": {"url": by_digest[p["image_url"]["url"]]}}
        parts.append(p)
    return {**message, "content": parts}


class SegmentorWorker:
    def __init__(self, backend: str, segmentor_config_json: str):
        from engine.config import SegmentorConfig
        from engine.runtime.plugins import resolve

        cfg = SegmentorConfig.model_validate(json.loads(segmentor_config_json))
        self.backend = resolve("segmentor", backend)(cfg)  # one model load per actor
        # The actor takes a second call while one runs (max_concurrency 2), so the next video's frames
        # are already here when the device frees up; the lock keeps device work to one call at a time.
        self._device = threading.Lock()

    def version(self) -> str:
        return self.backend.version

    def segment(self, request, frames: np.ndarray):
        with self._device:
            return self.backend.segment(request, frames)
