"""Shot detection speed on the CPU: frames per second of each detector and of each way to decode to 48x27,
side by side on one generated multi-shot 1280x720 video, each in a fresh process (its own peak memory). The
split_scan_* steps are what the split phase's actor runs: one decoding pass feeding the detector, the clip
rules' scores and a pHash per frame (engine/media/clips.py scan).

    python benchmarks/split_speed.py --minutes 10 [--out /tmp/bench-split]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_video(path: Path, minutes: float, fps: int = 25, shot_s: float = 4.0) -> int:
    """Shots of moving shapes on changing backgrounds, written a shot at a time (memory stays small)."""
    import cv2

    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from synthetic import render

    w, h = 1280, 720
    tmp = path.with_name("partial-" + path.name)  # an interrupted run leaves no short video under the real name
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    total = int(minutes * 60 * fps)
    per_shot = int(shot_s * fps)
    rng = np.random.default_rng(0)
    written = 0
    while written < total:
        n = min(per_shot, total - written)
        frames, _ = render(n, w // 4, h // 4, background=tuple(int(x) for x in rng.integers(30, 230, 3)))
        for f in frames:  # rendered at quarter size, upscaled: the encoder, not numpy, does the work
            writer.write(cv2.resize(np.ascontiguousarray(f[:, :, ::-1]), (w, h), interpolation=cv2.INTER_NEAREST))
        written += n
    writer.release()
    tmp.replace(path)
    return total


MEASURE = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
what, path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
n = 0
if what == "pyav_48x27":
    from engine.media.shots import small_frames
    n = sum(len(c) for c in small_frames(path))
elif what == "decord_full_resize":
    import decord
    from PIL import Image
    vr = decord.VideoReader(path)
    for i in range(0, len(vr), 64):
        batch = vr.get_batch(list(range(i, min(len(vr), i + 64)))).asnumpy()
        small = [np.asarray(Image.fromarray(f).resize((48, 27), Image.BILINEAR)) for f in batch]
        n += len(small)
elif what == "transnetv2_model_only":
    from engine.media.shots import TransNetV2Detector, small_frames
    frames = np.concatenate([c for c, _ in zip(small_frames(path), range(8))])  # 2048 frames, decoded first
    d = TransNetV2Detector()
    t0 = time.perf_counter()
    d.predictions(iter([frames]))
    n = len(frames)
elif what == "transnetv2":
    from engine.media.shots import TransNetV2Detector
    b = TransNetV2Detector().detect(path)
    n = b.num_frames
elif what == "content":
    from engine.media.shots import ContentDetector
    b = ContentDetector().detect(path)
    n = b.num_frames
elif what.startswith("split_scan_"):  # what the split phase's actor runs: detector, clip scores and pHashes
    from engine.media.clips import scan
    from engine.media.shots import make_detector
    n = scan(path, make_detector(what.removeprefix("split_scan_"))).bounds.num_frames
s = time.perf_counter() - t0
print(json.dumps({{"frames": n, "s": s, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


STEPS = (
    "pyav_48x27",
    "decord_full_resize",
    "transnetv2_model_only",
    "transnetv2",
    "content",
    "split_scan_transnetv2",
    "split_scan_content",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=Path("/tmp/bench-split"))
    p.add_argument("--threads", type=int, default=2, help="torch threads (the machines here have 2 cores)")
    p.add_argument("--steps", default=",".join(STEPS), help="comma-separated, of: " + ", ".join(STEPS))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    video = args.out / f"multishot-{args.minutes:g}min-720p.mp4"
    if not video.exists():
        t = time.perf_counter()
        n = make_video(video, args.minutes)
        print(
            f"generated {video.name}: {n} frames, {video.stat().st_size / 2**20:.0f} MB "
            f"in {time.perf_counter() - t:.0f} s"
        )
    fps = 25.0
    print(f"{'step':28s} {'frames':>7s} {'seconds':>8s} {'frames/s':>9s} {'x real time':>11s} {'peak MB':>8s}")
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    failed = 0
    for what in args.steps.split(","):
        # the split phase's actor runs with MALLOC_ARENA_MAX=2 (engine/runtime/split.py): without it glibc's
        # per-thread arenas keep the decoder's freed buffers, and the peak grows with the video's length
        extra = {"MALLOC_ARENA_MAX": "2"} if what.startswith("split_scan_") else {}
        out = subprocess.run(
            [sys.executable, "-c", MEASURE.format(root=str(ROOT)), what, str(video)],
            capture_output=True,
            text=True,
            env={**env, **extra},
        )
        if out.returncode:
            print(f"{what:28s} failed: {(out.stderr.strip().splitlines() or ['no output'])[-1]}")
            failed += 1
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rate = r["frames"] / r["s"]
        print(
            f"{what:28s} {r['frames']:7d} {r['s']:8.1f} {rate:9.0f} {rate / fps:11.1f} {r['peak_mb']:8.0f}", flush=True
        )
    if failed:
        sys.exit(f"{failed} step(s) failed")


if __name__ == "__main__":
    main()
