"""Dataset adapters at the released datasets' sizes: time to list a split, time for one video's objects, peak memory.

Generates annotation files of the real sizes (no frames are needed to read annotations):
- MeViS train: 1,662 videos, ~28,000 expressions, ~8,200 objects, a mask_dict.json of ~400 MB (720x1280 RLE
  at every frame of ~80-frame videos);
- Ref-YouTube-VOS train: 3,471 videos, ~12,900 expressions, one palette PNG per annotated frame (~94,000);
- A2D-Sentences: 3,782 clips listed, 6,655 queries, ~3 .h5 frames per clip.
Each measurement runs in a fresh process, so its peak RSS is its own. The baseline is what the engine did
before the adapters: json.load of the whole mask_dict.json for every video.

    python benchmarks/dataset_adapters.py --out /tmp/bench-datasets [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _blob_rles(n: int, h: int = 720, w: int = 1280) -> list[dict]:
    """n distinct real RLEs of object-sized blobs at 720p (a few hundred bytes each, as MeViS's)."""
    from engine.media import masks

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(n):
        cy, cx, ry, rx = rng.integers(100, 620), rng.integers(100, 1180), rng.integers(30, 200), rng.integers(30, 300)
        wobble = 1 + 0.15 * np.sin(xx / rng.integers(7, 40)) * np.cos(yy / rng.integers(7, 40))
        out.append(masks.encode(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < wobble))
    return out


def make_mevis(root: Path, scale: float) -> None:
    split = root / "train"
    (split / "JPEGImages").mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    rles = [json.dumps(r) for r in _blob_rles(64)]
    videos = int(1662 * scale)
    meta = {"videos": {}}
    anno = 0
    with (split / "mask_dict.json").open("w") as fh:
        fh.write("{")
        first = True
        for v in range(videos):
            vid = f"mevis{v:05d}"
            (split / "JPEGImages" / vid).mkdir(exist_ok=True)
            n_frames = rng.randint(40, 120)
            objects = []
            for _ in range(rng.randint(2, 8)):
                frames = [None if rng.random() < 0.1 else rng.choice(rles) for _ in range(n_frames)]
                fh.write(
                    ("" if first else ",")
                    + json.dumps(str(anno))
                    + ":["
                    + ",".join("null" if f is None else f for f in frames)
                    + "]"
                )
                first = False
                objects.append(anno)
                anno += 1
            exps = {}
            for e in range(rng.randint(10, 24)):
                target = [rng.choice(objects)] if e % 7 else rng.sample(objects, 2)
                exps[str(e)] = {"exp": f"expression {e} of {vid}", "obj_id": target, "anno_id": target}
            meta["videos"][vid] = {"expressions": exps, "frames": [f"{i:05d}" for i in range(n_frames)]}
        fh.write("}")
    (split / "meta_expressions.json").write_text(json.dumps(meta))


def make_ytvos(root: Path, scale: float) -> None:
    from PIL import Image

    rng = random.Random(1)
    meta = {"videos": {}}
    tiny = root / "tiny.png"
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((1, 1), np.uint8), mode="P").save(tiny)
    tiny_bytes = tiny.read_bytes()
    real = np.zeros((720, 1280), np.uint8)
    real[100:400, 200:700], real[300:600, 600:1100] = 1, 2
    for v in range(int(3471 * scale)):
        vid = f"yt{v:05d}"
        names = [f"{5 * i:05d}" for i in range(rng.randint(15, 36))]
        (root / "train" / "JPEGImages" / vid).mkdir(parents=True)
        (root / "train" / "Annotations" / vid).mkdir(parents=True)
        for name in names:
            (root / "train" / "JPEGImages" / vid / f"{name}.jpg").touch()
            target = root / "train" / "Annotations" / vid / f"{name}.png"
            if v < 21:  # the videos whose objects are read: real-size palette PNGs
                Image.fromarray(real, mode="P").save(target)
            else:
                target.write_bytes(tiny_bytes)
        n_obj = rng.randint(1, 4)
        meta["videos"][vid] = {
            "expressions": {
                str(e): {"exp": f"expression {e}", "obj_id": str(e % n_obj + 1)} for e in range(rng.randint(2, 6))
            },
            "frames": names,
        }
    (root / "meta_expressions" / "train").mkdir(parents=True)
    (root / "meta_expressions" / "train" / "meta_expressions.json").write_text(json.dumps(meta))


def make_a2d(root: Path, scale: float) -> None:
    import csv

    import h5py

    rng = random.Random(2)
    (root / "Release" / "clips320H").mkdir(parents=True)
    h5_root = root / "text_annotations" / "a2d_annotation_with_instances"
    mask = np.zeros((2, 426, 320), np.uint8)
    mask[0, 50:150, 40:200], mask[1, 200:300, 100:250] = 1, 1
    rows, queries = [], []
    for v in range(int(3782 * scale)):
        vid = f"a2d{v:05d}"
        (root / "Release" / "clips320H" / f"{vid}.mp4").touch()
        rows.append([vid, "11", "0", "1", "320", "426", "100", "3", "1" if v % 5 == 0 else "0"])
        (h5_root / vid).mkdir(parents=True)
        for f in (10, 50, 90):
            with h5py.File(h5_root / vid / f"{f:05d}.h5", "w") as fh:
                fh["instance"] = np.array([0.0, 1.0])
                fh["reMask"] = mask
        queries += [[vid, k, f"query {k} of {vid}"] for k in range(rng.choice((1, 2, 2)))]
    with (root / "Release" / "videoset.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (root / "text_annotations" / "a2d_annotation.txt").parent.mkdir(parents=True, exist_ok=True)
    with (root / "text_annotations" / "a2d_annotation.txt").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video_id", "instance_id", "query"])
        w.writerows(queries)


MEASURE = r"""
import json, resource, statistics, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from engine.sources.datasets import dataset_of
what, video_dir = sys.argv[1], Path(sys.argv[2])
videos = sorted(p for p in video_dir.iterdir())
t0 = time.perf_counter()
if what == "list":
    adapter, _ = dataset_of(str(videos[0]))
    s = adapter.summary()
    detail = (
        f"{{s.videos}} videos, {{s.objects}} objects, {{s.expressions}} expressions, "
        f"{{s.frames_with_masks}} frames with masks"
    )
elif what == "first":
    adapter, dv = dataset_of(str(videos[0]))
    objs = adapter.objects(dv, adapter.mask_frames(dv)[:32])
    detail = f"{{len(objs)}} objects (index built)" if "mevis" in str(video_dir) else f"{{len(objs)}} objects"
elif what == "per_video":
    times = []
    for v in videos[1:21]:
        t = time.perf_counter()
        adapter, dv = dataset_of(str(v))
        adapter.objects(dv, adapter.mask_frames(dv)[:32])
        times.append(time.perf_counter() - t)
    print(json.dumps({{"s": statistics.median(times), "detail": "median of 20 videos",
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
    sys.exit()
elif what == "baseline":  # before: the whole mask_dict.json parsed for each video
    t = time.perf_counter()
    json.loads((video_dir.parent / "mask_dict.json").read_text())
    detail = "json.load of mask_dict.json, once per video"
print(json.dumps({{"s": time.perf_counter() - t0, "detail": detail,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(what: str, video_dir: Path, cache: Path) -> dict:
    env = {"VIDEOREFER_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE.format(root=str(ROOT)), what, str(video_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/bench-datasets"))
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the real sizes")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    sets = {
        "MeViS train": (make_mevis, "mevis", "train/JPEGImages"),
        "Ref-YouTube-VOS train": (make_ytvos, "ytvos", "train/JPEGImages"),
        "A2D-Sentences": (make_a2d, "a2d", "Release/clips320H"),
    }
    print(f"{'dataset':24s} {'step':34s} {'seconds':>9s} {'peak MB':>8s}  detail")
    for name, (make, folder, videos) in sets.items():
        root = args.out / folder
        if not root.exists():
            t = time.perf_counter()
            make(root, args.scale)
            size = sum(f.stat().st_size for f in root.rglob("*.json")) / 2**20
            print(f"{name:24s} {'(generate)':34s} {time.perf_counter() - t:9.1f} {'':>8s}  json files {size:,.0f} MB")
        cache = args.out / "cache"
        import shutil

        shutil.rmtree(cache, ignore_errors=True)
        steps = [("list the split", "list"), ("first video's objects", "first"), ("one video's objects", "per_video")]
        if folder == "mevis":
            steps.append(("baseline: parse mask_dict per video", "baseline"))
        for label, what in steps:
            r = measure(what, root / videos, cache)
            print(f"{name:24s} {label:34s} {r['s']:9.3f} {r['peak_mb']:8.0f}  {r['detail']}", flush=True)


if __name__ == "__main__":
    main()
