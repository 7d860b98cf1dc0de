"""Video inputs: probe, decode and sample frames.

Two kinds of input are videos here: a video file (.mp4 .mkv .webm .avi .mov, decoded with decord)
and a folder of JPEG/PNG frames (the MeViS / DAVIS layout, frames in numeric order). Anything
unreadable raises MediaError naming the file and the reason, never a bare decoder exception.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})

MediaErrorCode = Literal["not_found", "empty_file", "unsupported_format", "corrupt", "zero_frames", "bad_frames"]


class MediaError(Exception):
    """An input that cannot be used as a video. ``code`` is a stable snake_case reason for the store, ``reason`` a
    sentence for people; ``detail`` keeps the decoder's own words, for debug logs only."""

    def __init__(self, path: Path | str, code: MediaErrorCode, reason: str, detail: str = ""):
        self.path, self.code, self.reason, self.detail = Path(path), code, reason, detail
        if detail:
            log.debug("%s: %s (decoder: %s)", path, reason, detail)
        super().__init__(f"{path}: {reason} [{code}]")


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    kind: Literal["file", "frames"]
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


def uniform_indices(num_frames: int, k: int) -> list[int]:
    """k frames at uniform segment midpoints, as the VideoRefer benchmarks sample them (docs/frame-sampling.md).

    With ``seg = (n - 1) / k``, frame i is ``(round(seg * i) + round(seg * (i + 1))) // 2``.
    Videos of at most k frames give every frame once, in order.
    """
    if num_frames <= 0 or k <= 0:
        return []
    if num_frames <= k:  # the formula would repeat frames and still miss some: take every frame
        return list(range(num_frames))
    seg = (num_frames - 1) / k
    idx = [(round(seg * i) + round(seg * (i + 1))) // 2 for i in range(k)]
    return sorted(set(idx))


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) scaled so the longest side is at most max_side, aspect ratio kept (never upscales)."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _numeric_key(p: Path) -> tuple:
    # "00012.jpg" < "00100.jpg"; "frame_2" < "frame_10": compare digit runs as numbers.
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem)), p.name


def frame_files(folder: Path) -> list[Path]:
    """The image files directly in folder, in frame order."""
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), key=_numeric_key
    )


class Video:
    """An opened video file or frame folder. ``size=(w, h)`` resizes while decoding."""

    def __init__(self, path: Path | str, size: tuple[int, int] | None = None, frame_folder_fps: float = 30.0):
        self.path = Path(path)
        self.size = size
        # decord.VideoReader (untyped) for a video file, None for a frame folder; _native decodes at the source size
        self._reader: Any = None
        self._native: Any = None
        if not self.path.exists():
            raise MediaError(self.path, "not_found", "no such file or folder")
        if self.path.is_dir():
            self._frames = frame_files(self.path)
            if not self._frames:
                raise MediaError(self.path, "zero_frames", "folder holds no .jpg/.jpeg/.png frames")
            w, h = self._image_size(self._frames[0])
            self.info = VideoInfo(self.path, "frames", len(self._frames), frame_folder_fps, w, h)
        else:
            self._open_file()

    def _open_file(self) -> None:
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_EXTENSIONS:
            raise MediaError(self.path, "unsupported_format", f"extension {suffix or '(none)'} is not a video format")
        if self.path.stat().st_size == 0:
            raise MediaError(self.path, "empty_file", "file is empty (0 bytes)")
        import decord  # deferred: importing decord costs ~0.3 s and is not needed for frame folders

        def open_reader(**size_kwargs):
            try:
                return decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=1, **size_kwargs)
            except Exception as e:  # decord raises DECORDError/RuntimeError with ffmpeg's text
                raise MediaError(
                    self.path,
                    "corrupt",
                    "not a video this engine can read: the file is damaged, truncated or of another format",
                    _first_line(e),
                ) from None

        self._reader = self._native = open_reader()
        n, fps = len(self._reader), float(self._reader.get_avg_fps())
        if n <= 0:
            raise MediaError(self.path, "zero_frames", "the container holds no video frames")
        h, w = self._decode_file([0])[0].shape[:2]
        self.info = VideoInfo(self.path, "file", n, fps, w, h)
        if self.size:  # decord resizes while decoding, cheaper than resizing decoded frames
            self._reader = open_reader(width=self.size[0], height=self.size[1])

    @staticmethod
    def _image_size(path: Path) -> tuple[int, int]:
        try:
            with Image.open(path) as im:
                return im.size
        except (UnidentifiedImageError, OSError) as e:
            raise MediaError(path, "bad_frames", f"unreadable frame: {_first_line(e)}") from None

    def check(self) -> VideoInfo:
        """Decode the last frame too, so a truncated file fails here rather than mid-pipeline."""
        self.frames([self.info.num_frames - 1])
        return self.info

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """Decode frames -> (N, H, W, 3) uint8 RGB. Indices are absolute frame numbers."""
        n = self.info.num_frames
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad[:5]} outside 0..{n - 1}")
        if self._reader is not None:
            return self._decode_file(list(indices))
        return self._decode_folder(list(indices))

    def _decode_file(self, indices: list[int]) -> np.ndarray:
        try:
            return self._reader.get_batch(indices).asnumpy()
        except Exception as e:
            if "size must exactly match" in str(e) and self._reader is self._native:
                # decord 0.6 miscopies frames of some small widths (16, 48 px): OpenCV decodes them right
                return self._decode_opencv(indices)
            if self._reader is not self._native and self.size is not None:  # a resizing reader: there is a size
                # decord 0.6 fails on a few output sizes (48x36, "size must exactly match"):
                # decode at the source size and resize here instead, from now on.
                self._reader = self._native
                size = self.size
                return np.stack([_resize(f, size) for f in self._decode_file(indices)])
            raise MediaError(
                self.path,
                "corrupt",
                f"frames {indices[:5]} cannot be decoded: the file is damaged or truncated",
                _first_line(e),
            ) from None

    def _decode_opencv(self, indices: list[int]) -> np.ndarray:
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        out = []
        try:
            for i in indices:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                ok, frame = cap.read()
                if not ok:
                    raise MediaError(self.path, "corrupt", f"cannot decode frame {i}")
                out.append(frame[:, :, ::-1])
        finally:
            cap.release()
        frames = np.stack(out)
        return np.stack([_resize(f, self.size) for f in frames]) if self.size else frames

    def _decode_folder(self, indices: list[int]) -> np.ndarray:
        out = []
        for i in indices:
            path = self._frames[i]
            try:
                with Image.open(path) as im:
                    rgb = im.convert("RGB")
                if rgb.size != (self.info.width, self.info.height):
                    raise MediaError(path, "bad_frames", f"frame size {rgb.size} differs from the first frame's")
                frame = np.asarray(rgb)
                out.append(_resize(frame, self.size) if self.size and rgb.size != self.size else frame)
            except (UnidentifiedImageError, OSError) as e:
                raise MediaError(path, "bad_frames", f"unreadable frame: {_first_line(e)}") from None
        return np.stack(out)


def probe(path: Path | str, frame_folder_fps: float = 30.0) -> VideoInfo:
    """Open, read the first and last frame, and return the video's metadata (raises MediaError)."""
    return Video(path, frame_folder_fps=frame_folder_fps).check()


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def write_clip(src: Path | str, first: int, count: int, dst: Path, fps: float, chunk: int = 64) -> Path:
    """Frames [first, first + count) of src, decoded as the stages decode them (so masks fit them), written as
    `dst` with suffix .mp4: H.264 at CRF 17 through PyAV, visually lossless. 4:2:0 needs even sides: a video
    with an odd side is written as a folder of JPEG frames (00000.jpg ...) at `dst` without suffix instead.
    Returns the path written."""
    from fractions import Fraction

    import av

    video = Video(src)
    w, h = video.info.width, video.info.height
    dst.parent.mkdir(parents=True, exist_ok=True)
    if w % 2 or h % 2:
        folder = dst.with_suffix("")
        folder.mkdir(exist_ok=True)
        for a in range(first, first + count, chunk):
            for i, frame in enumerate(video.frames(range(a, min(a + chunk, first + count))), a - first):
                Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=95)
        return folder
    path = dst.with_suffix(".mp4")
    tmp = path.with_name(path.name + ".part")  # a crash leaves no half-written clip under the real name
    try:
        with av.open(str(tmp), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001) if fps > 0 else 25)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "17", "preset": "veryfast"}
            for a in range(first, first + count, chunk):
                for frame in video.frames(range(a, min(a + chunk, first + count))):
                    out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path
