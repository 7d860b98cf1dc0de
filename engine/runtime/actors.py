"""The Ray actors. They compute and return; only the driver writes to the store, and only the driver calls models.

- MediaWorker (CPU): decode, sample, draw overlays, encode JPEG data URLs. One video's stages ask it
  several times for the same frames (the segmentor's, then overlays on them), so it keeps the videos it
  works on open and their decoded frames in memory (least recently used first out, bounded in bytes);
  the pool sends a video's calls to the same replica when it can.
- SegmentorWorker (GPU when configured): builds the segmentor backend once, then segments videos.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.media import masks
from engine.media.images import to_data_url, url_digest
from engine.media.overlay import OverlayObject, draw_overlay
from engine.media.video import Video

if TYPE_CHECKING:
    from engine.media.shots import Detector

OPEN_VIDEOS = 8
FRAME_CACHE_BYTES = 256 << 20


def quiet_gc() -> None:
    """Fewer cyclic collections in a long-lived worker: its imports frozen, never scanned (see executor._quiet_gc)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


class MediaWorker:
    def __init__(self, cache_bytes: int = FRAME_CACHE_BYTES) -> None:
        import decord  # noqa: F401  (loaded now, not on the first video)

        quiet_gc()

        self._open: OrderedDict[tuple[str, float], tuple[Video, threading.Lock]] = OrderedDict()
        self._frame_cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()  # decoded, least recent first
        self._cached_bytes, self._cache_limit = 0, cache_bytes
        self._lock = threading.Lock()  # calls may run in several threads (max_concurrency > 1)
        self.decoded = 0  # frames decoded (tests read it)

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
        """(T, H, W, 3) uint8 RGB at the given absolute frame indices, each decoded once while it stays cached."""
        wanted = [int(i) for i in indices]
        with self._lock:
            have = {i: self._frame_cache[(path, i)] for i in wanted if (path, i) in self._frame_cache}
            for i in have:
                self._frame_cache.move_to_end((path, i))
        missing = sorted(set(wanted) - set(have))
        if missing:
            video, lock = self._video(path, fps)
            with lock:  # a decoder is not safe to share between threads
                decoded = video.frames(missing)
            self.decoded += len(missing)
            have.update(zip(missing, decoded))
            with self._lock:
                for i, frame in zip(missing, decoded):
                    if (path, i) not in self._frame_cache:
                        self._frame_cache[(path, i)] = frame
                        self._cached_bytes += frame.nbytes
                while self._cached_bytes > self._cache_limit and self._frame_cache:
                    self._cached_bytes -= self._frame_cache.popitem(last=False)[1].nbytes
        return np.stack([have[i] for i in wanted])

    def encode(self, path: str, indices: Sequence[int], max_side: int, quality: int, fps: float = 30.0):
        """Frames as JPEG data URLs -> (digests, urls)."""
        urls = [to_data_url(f, max_side, quality) for f in self.frames(path, indices, fps)]
        return [url_digest(u) for u in urls], urls

    def overlays(
        self,
        path: str,
        items: Sequence[tuple[Sequence[int], dict[str, Any]]],
        max_side: int,
        quality: int,
        label: str | None = None,
        fps: float = 30.0,
    ):
        """For each (frame indices, that object's masks by frame): the frames with the mask drawn (fill, contour,
        label) -> [(digests, urls)], one call for all of a video's objects. An item may hold a list of objects'
        masks instead: all drawn on the same frames, object i in colour i and labelled i + 1."""
        frames = dict(zip(*self._union(path, [i for idx, _ in items for i in idx], fps)))
        out = []
        for indices, frame_masks in items:
            layers = frame_masks if isinstance(frame_masks, list) else [frame_masks]
            urls = []
            for f in indices:
                objs = []
                for i, layer in enumerate(layers):
                    rle = layer.get(str(f))
                    objs.append(
                        OverlayObject(
                            mask=masks.decode(rle) if rle is not None else None,
                            color_index=i,
                            label=label if len(layers) == 1 else str(i + 1),
                        )
                    )
                urls.append(to_data_url(draw_overlay(frames[f], objs), max_side, quality))
            out.append(([url_digest(u) for u in urls], urls))
        return out

    def _union(self, path: str, indices: Sequence[int], fps: float) -> tuple[list[int], np.ndarray]:
        wanted = sorted(set(int(i) for i in indices))
        return wanted, self.frames(path, wanted, fps)


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

    def segment(self, request, media: Any, fps: float = 30.0) -> tuple[list[tuple[Any, dict[str, float]]], list[str]]:
        """The backend's tracks for the request's frames (fetched from the MediaWorker `media`), each with its
        quality metrics (computed here, not in the driver), and the warnings the backend raised or logged: they
        go back to the driver, which shows them on the console and in the run's log (a worker's own output
        ends in a Ray log file nobody reads)."""
        import ray

        at = [i + request.first_frame for i in request.frame_indices]  # a clip's frames, counted in its source
        frames = ray.get(media.frames.remote(request.video_path, at, fps))
        with self._device, _Caught() as caught:
            tracks = self.backend.segment(request, frames)
        for t in tracks:
            masks.check_masks(
                t.masks, request.frame_indices, frames.shape[1:3], self.backend.version, request.video_path
            )
        return [(t, masks.quality(t.masks)) for t in tracks], caught.messages


class _Caught(logging.Handler):
    """Warnings (the warnings module's and logging's, WARNING and up) raised while it is open, as sentences."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")

    def __enter__(self) -> _Caught:
        self._warnings = warnings.catch_warnings(record=True)
        self._seen = self._warnings.__enter__()
        warnings.simplefilter("default")
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger().removeHandler(self)
        self.messages += [f"{w.category.__name__}: {w.message}" for w in self._seen]
        self._warnings.__exit__(*exc)


class SplitWorker:
    """The shot detector (TransNetV2 batched on the GPU when it has one, on the CPU otherwise): scans a source in one
    decoding pass (engine/media/clips.py scan) and returns its shots, per-frame scores and hashes."""

    def __init__(self, detector: Detector, device: str = "cpu"):
        from engine.media.shots import make_detector

        quiet_gc()
        self.detector = make_detector(detector, device)

    def ready(self) -> int:
        return os.getpid()

    def version(self) -> str:
        return self.detector.version

    def scan(self, path: str):
        from engine.media.clips import scan

        return scan(path, self.detector)
