"""The Ray actors. They compute and return; only the driver writes to the store, and only the driver calls models.

- MediaWorker (CPU): decode, sample, draw overlays, encode JPEG data URLs. It keeps the videos it
  works on open (a few, least recently used first out), since one video's stages ask it several times.
- SegmentorWorker (GPU when configured): builds the segmentor backend once, then segments videos.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from engine.media import masks
from engine.media.images import to_data_url, url_digest
from engine.media.overlay import OverlayObject, draw_overlay
from engine.media.video import Video

OPEN_VIDEOS = 8


class MediaWorker:
    def __init__(self) -> None:
        import decord  # noqa: F401  (loaded now, not on the first video)

        self._open: OrderedDict[tuple[str, float], tuple[Video, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()  # calls may run in several threads (max_concurrency > 1)

    def ready(self) -> int:
        return os.getpid()

    def _video(self, path: str, fps: float) -> tuple[Video, threading.Lock]:
        with self._lock:
            key = (path, fps)
            if key in self._open:
                self._open.move_to_end(key)
            else:
                self._open[key] = (Video(path, frame_folder_fps=fps), threading.Lock())
                while len(self._open) > OPEN_VIDEOS:
                    self._open.popitem(last=False)
            return self._open[key]

    def frames(self, path: str, indices: Sequence[int], fps: float = 30.0) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB at the given absolute frame indices."""
        video, lock = self._video(path, fps)
        with lock:  # a decoder is not safe to share between threads
            return video.frames(list(indices))

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


class SegmentorWorker:
    def __init__(self, backend_path: str, segmentor_config_json: str):
        from engine.config import SegmentorConfig
        from engine.runtime.plugins import load_segmentor

        cfg = SegmentorConfig.model_validate(json.loads(segmentor_config_json))
        self.backend = load_segmentor(backend_path)(cfg)  # one model load per actor
        # The actor takes a second call while one runs (max_concurrency 2), so the next video's frames
        # are already here when the device frees up; the lock keeps device work to one call at a time.
        self._device = threading.Lock()

    def ready(self) -> int:
        return os.getpid()

    def version(self) -> str:
        return self.backend.version

    def segment(self, request, frames: np.ndarray):
        with self._device:
            return self.backend.segment(request, frames)
