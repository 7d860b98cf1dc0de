"""Frames to images a chat model can take: JPEG data URLs, scaled to a longest side."""

from __future__ import annotations

import base64
import hashlib
import io

import numpy as np
from PIL import Image

from engine.media.video import fit_within

DATA_URL_PREFIX = "data:image/jpeg;base64,"


def to_data_url(frame: np.ndarray, max_side: int = 768, quality: int = 85) -> str:
    """(H, W, 3) uint8 RGB -> 'data:image/jpeg;base64,...' with the longest side at most max_side."""
    image = Image.fromarray(frame)
    size = fit_within(image.width, image.height, max_side)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return DATA_URL_PREFIX + base64.b64encode(buf.getvalue()).decode("ascii")


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def user_message(text: str, images: list[str] | tuple[str, ...] = ()) -> dict:
    """A user turn with text followed by images (data URLs or http URLs)."""
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [text_part(text), *(image_part(u) for u in images)]}


def url_digest(url: str) -> str:
    """What stands for an image in a request's cache key: a hash of its bytes, not the bytes."""
    return "sha256:" + hashlib.sha256(url.encode("ascii", "surrogateescape")).hexdigest()
