"""A deterministic segmentor backend for pipeline tests and benchmarks (plugged in by import path).

Per noun: from a hash of (video, noun), ~1 in 10 nouns is not grounded, ~1 in 7 has two instances;
each instance is a rectangle that drifts across the frames. FAKE_SEGMENTOR_S_PER_FRAME makes each
call take that many seconds per frame in all (the benchmark's stand-in for GPU time).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path

import numpy as np

from agents.segmentor import SegmentRequest, Track
from engine.media import masks


class HashSegmentor:
    version = "hash@1"

    def __init__(self, cfg=None):
        self.cost = float(os.environ.get("FAKE_SEGMENTOR_S_PER_FRAME", "0"))

    def segment(self, request: SegmentRequest, frames: np.ndarray) -> list[Track]:
        assert frames.shape[0] == len(request.frame_indices), "frames must match the requested indices"
        started = time.monotonic()
        h, w = frames.shape[1:3]
        tracks = []
        for noun in request.nouns:
            d = int(hashlib.sha256(f"{request.video_id}:{noun}".encode()).hexdigest()[:8], 16)
            if d % 10 == 0:
                continue
            for instance in range(2 if d % 7 == 0 else 1):
                tracks.append(self._track(noun, instance, d + 97 * instance, request.frame_indices, h, w))
        if self.cost:  # a fixed cost per frame in all, its own mask work included
            time.sleep(max(0.0, self.cost * len(request.frame_indices) - (time.monotonic() - started)))
        return tracks

    @staticmethod
    def _track(noun, instance, d, indices, h, w) -> Track:
        bw, bh = max(2, w // 4), max(2, h // 4)
        x0, y0 = d % max(1, w - bw), (d // 7) % max(1, h - bh)
        frame_masks = {}
        for k, f in enumerate(indices):
            m = np.zeros((h, w), bool)
            x = (x0 + 2 * k) % max(1, w - bw)
            m[y0 : y0 + bh, x : x + bw] = True
            frame_masks[f] = masks.encode(m)
        anchor = indices[len(indices) // 2]
        box = masks.bbox_xyxy(frame_masks[anchor])
        return Track(
            noun, instance, anchor, box, grounding_score=0.5 + (d % 50) / 100, mask_score=0.9, masks=frame_masks
        )


class TwinSegmentor(HashSegmentor):
    """Every noun grounded once (score 0.8), except a "man": twice, scored 0.9 and 0.5 (the short records'
    one-subject rule)."""

    version = "twin@1"
    TWINS = ("man",)

    def segment(self, request: SegmentRequest, frames: np.ndarray) -> list[Track]:
        h, w = frames.shape[1:3]
        tracks = []
        for noun in request.nouns:
            d = int(hashlib.sha256(f"{request.video_id}:{noun}".encode()).hexdigest()[:8], 16)
            for instance, score in enumerate((0.9, 0.5) if noun in self.TWINS else (0.8,)):
                t = self._track(noun, instance, d + 97 * instance, request.frame_indices, h, w)
                tracks.append(dataclasses.replace(t, grounding_score=score))
        return tracks


class LabelledSegmentor:
    """Masklets whose quality is known, by a word in the noun (the quality gates' tests): "drift" (the object for
    the first quarter of the frames, then the background), "flicker" (between two places that do not overlap),
    "sparse" (a mask on one sampled frame in four); any other noun a good one (a box inside the frame, moving a
    pixel a frame). "twin" nouns get two good instances."""

    version = "labelled@1"
    LABELS = ("drift", "flicker", "sparse")

    def __init__(self, cfg=None):
        pass

    @classmethod
    def label_of(cls, noun: str) -> str:
        return next((label for label in cls.LABELS if label in noun), "good")

    def segment(self, request: SegmentRequest, frames: np.ndarray) -> list[Track]:
        h, w = frames.shape[1:3]
        tracks = []
        for noun in request.nouns:
            for instance in range(2 if "twin" in noun else 1):
                masks_by_frame = self._masks(self.label_of(noun), instance, request.frame_indices, h, w)
                anchor = next(f for f in request.frame_indices if masks_by_frame[f] is not None)
                box = masks.bbox_xyxy(masks_by_frame[anchor])
                tracks.append(Track(noun, instance, anchor, box, 0.9 - 0.3 * instance, 0.9, masks_by_frame))
        return tracks

    @staticmethod
    def _masks(label: str, instance: int, indices, h: int, w: int) -> dict:
        bw, bh = max(2, w // 4), max(2, h // 4)
        out = {}
        n = len(indices)
        for k, f in enumerate(indices):
            m = np.zeros((h, w), bool)
            x, y = w // 8 + (k % max(1, w // 2)) // 2 + instance * (w // 2), h // 4
            if label == "flicker" and k % 2:
                x, y = w - w // 8 - bw, h - h // 8 - bh  # the other place, apart from the first
            m[y : y + bh, x : x + bw] = True
            if label == "drift" and k >= n // 4:
                m = np.ones((h, w), bool)
                m[h // 2 - bh // 2 : h // 2 + bh // 2, :bw] = False  # the background, around a hole
            if label == "sparse" and k % 4:
                out[f] = None
                continue
            out[f] = masks.encode(m)
        return out


class WarningSegmentor(HashSegmentor):
    """The hash segmentor, warning as a real backend does (a deprecated argument, a fallback it took)."""

    version = "hash-warning@1"

    def segment(self, request, frames):
        import logging
        import warnings

        warnings.warn("this backend's fallback path was taken", UserWarning, stacklevel=1)
        logging.getLogger("some.backend").warning("checkpoint has unused keys: 3")
        return super().segment(request, frames)


class GappySegmentor(HashSegmentor):
    """The hash segmentor losing each object on every third sampled frame, as real trackers do (occlusion)."""

    version = "hash-gappy@1"

    def segment(self, request, frames):
        tracks = super().segment(request, frames)
        for t in tracks:
            t.masks = {
                f: (None if k % 3 == 1 and f != t.anchor_frame else m)
                for k, (f, m) in enumerate(sorted(t.masks.items()))
            }
        return tracks


class HalfSizeSegmentor(HashSegmentor):
    """A broken backend: masks at half the frame size (a model that forgot to upsample its output)."""

    version = "hash-half@1"

    def segment(self, request, frames):
        return super().segment(request, frames[:, ::2, ::2])


class ShiftedSegmentor(HashSegmentor):
    """A broken backend: every mask keyed one frame later than the frame it was computed on."""

    version = "hash-shifted@1"

    def segment(self, request, frames):
        tracks = super().segment(request, frames)
        for t in tracks:
            t.masks = {f + 1: m for f, m in t.masks.items()}
        return tracks


class ChaosSegmentor(HashSegmentor):
    """The chaos matrix's segmentor: every noun grounded once (so every stage after it has work), and faults aimed
    by noun while the file named by $CHAOS_SEGMENTOR_FAULTS lists them: "segfail" (a noun containing it raises),
    "wrongsize" (its masks are half the frame's size)."""

    version = "hash-chaos@1"

    def segment(self, request, frames):
        flags = os.environ.get("CHAOS_SEGMENTOR_FAULTS", "")
        active = Path(flags).read_text().split() if flags and os.path.exists(flags) else []
        if "segfail" in active and any("segfail" in n for n in request.nouns):
            raise RuntimeError("chaos: the segmentor failed on this video")
        h, w = frames.shape[1:3]
        tracks = []
        for noun in request.nouns:
            d = int(hashlib.sha256(f"{request.video_id}:{noun}".encode()).hexdigest()[:8], 16)
            size = (h // 2, w // 2) if "wrongsize" in active and "wrongsize" in noun else (h, w)
            tracks.append(self._track(noun, 0, d, request.frame_indices, *size))
        return tracks
