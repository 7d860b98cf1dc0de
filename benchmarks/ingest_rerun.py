"""A second dry run over unchanged files: not probed or hashed again.

    .venv/bin/python benchmarks/ingest_rerun.py [--files 2000]

Writes that many small distinct mp4 clips, then runs `engine run --source ... --dry-run` twice, each as
the installed console script in a process of its own, and prints both wall times and their ratio. The
second run finds every file's path, size and modification time as stored.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from synthetic import write_mp4  # noqa: E402


def make(folder: Path, n: int, width: int, height: int, frames_per_clip: int) -> None:
    """Clips of the given size: a coloured background per clip (distinct bytes) and a moving square."""
    rng = np.random.default_rng(0)
    for i in range(n):
        frames = np.zeros((frames_per_clip, height, width, 3), np.uint8)
        frames[:] = rng.integers(0, 255, 3, dtype=np.uint8)
        for t in range(frames_per_clip):
            x = (i * 7 + t * 5) % (width - 40)
            frames[t, height // 3 : height // 3 + 40, x : x + 40] = 255
        write_mp4(folder / f"{i // 500:02d}" / f"clip_{i:05d}.mp4", frames, fps=24)


def dry_run(source: Path, data: Path) -> float:
    engine = Path(sys.executable).with_name("engine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    t0 = time.perf_counter()
    subprocess.run(
        [str(engine), "run", "--source", str(source), "--dry-run", "--data-dir", str(data)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--frames", type=int, default=48, help="frames per clip (2 s at 24 fps)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, data = Path(tmp) / "videos", Path(tmp) / "data"
        t0 = time.perf_counter()
        make(src, args.files, args.width, args.height, args.frames)
        size = sum(f.stat().st_size for f in src.rglob("*.mp4")) / 1e6
        print(
            f"wrote {args.files} clips of {args.width}x{args.height}, {args.frames} frames ({size:.0f} MB) in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        first, second = dry_run(src, data), dry_run(src, data)
        print(f"first dry run  {first:7.1f} s  (every file probed and hashed)")
        print(f"second dry run {second:7.1f} s  (unchanged: neither)")
        print(f"second / first: {second / first:.3f}")


if __name__ == "__main__":
    main()
