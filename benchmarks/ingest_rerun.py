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


def make(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        frames = np.zeros((8, 48, 64, 3), np.uint8)
        frames[:] = rng.integers(0, 255, 3, dtype=np.uint8)  # a colour per clip: distinct bytes
        frames[:, 10:20, (i % 40):(i % 40) + 10] = 255
        write_mp4(folder / f"{i // 500:02d}" / f"clip_{i:05d}.mp4", frames, fps=8)


def dry_run(source: Path, data: Path) -> float:
    engine = Path(sys.executable).with_name("engine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    t0 = time.perf_counter()
    subprocess.run([str(engine), "run", "--source", str(source), "--dry-run", "--data-dir", str(data)], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=2000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, data = Path(tmp) / "videos", Path(tmp) / "data"
        t0 = time.perf_counter()
        make(src, args.files)
        print(f"wrote {args.files} clips in {time.perf_counter() - t0:.1f} s")
        first, second = dry_run(src, data), dry_run(src, data)
        print(f"first dry run  {first:7.1f} s  (every file probed and hashed)")
        print(f"second dry run {second:7.1f} s  (unchanged: neither)")
        print(f"second / first: {second / first:.3f}")


if __name__ == "__main__":
    main()
