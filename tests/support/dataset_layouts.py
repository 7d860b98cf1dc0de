"""Tiny annotated datasets in the layouts of their releases (engine/sources/datasets says which files each has),
made from synthetic clips whose ground-truth masks are known. Each maker returns {video: {object id: (T, H, W)
bool masks at the decoded frames}} and writes quirks of the real files (a no-target expression, a malformed row,
Latin-1 text, a misspelled video name)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image
from synthetic import render, write_frame_folder, write_mp4

from engine.media import masks

EXPRESSIONS = {"red square": "a red square moving to the right", "blue circle": "the blue circle drifting left"}
SHAPES = list(EXPRESSIONS)  # object k + 1 in palettes, instance k in A2D, anno id 100 + k in MeViS
SHARED_QUERY = "white cat rolling on the carpet"  # as two instances of -YM5_oSdP1c share it in A2D-Sentences


def _background(v: int) -> tuple[int, int, int]:
    return (235 - 25 * v, 235, 225 - 20 * v)  # each video its own pixels: no two are duplicates of each other


def _palette(label: np.ndarray, path: Path) -> None:
    image = Image.fromarray(label.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    image.save(path)


def make_ytvos(root: Path, videos=("vid1", "vid2"), num_frames: int = 8) -> dict:
    """Ref-YouTube-VOS 2021: train with masks (frames named every 5th), valid with expressions only."""
    gt = {}
    meta = {"videos": {}}
    objects_meta = {"videos": {}}
    for v, vid in enumerate(videos):
        frames, truth = render(num_frames, 64, 48, background=_background(v))
        names = [f"{5 * i:05d}" for i in range(num_frames)]
        (root / "train" / "JPEGImages" / vid).mkdir(parents=True)
        (root / "train" / "Annotations" / vid).mkdir(parents=True)
        for i, name in enumerate(names):
            Image.fromarray(frames[i]).save(root / "train" / "JPEGImages" / vid / f"{name}.jpg", quality=92)
            label = np.zeros((48, 64), np.uint8)
            for k, shape in enumerate(SHAPES):
                label[truth[shape][i]] = k + 1
            _palette(label, root / "train" / "Annotations" / vid / f"{name}.png")
        exps = {str(k): {"exp": f"{EXPRESSIONS[s]} {vid}", "obj_id": str(k + 1)} for k, s in enumerate(SHAPES)}
        meta["videos"][vid] = {"expressions": exps, "frames": names}
        objects_meta["videos"][vid] = {
            "objects": {str(k + 1): {"category": s.split()[-1], "frames": names} for k, s in enumerate(SHAPES)}
        }
        gt[vid] = {str(k + 1): truth[s] for k, s in enumerate(SHAPES)}
    (root / "meta_expressions" / "train").mkdir(parents=True)
    (root / "meta_expressions" / "train" / "meta_expressions.json").write_text(json.dumps(meta))
    (root / "train" / "meta.json").write_text(json.dumps(objects_meta))
    # valid: frames and expressions (no obj_id), no Annotations
    write_frame_folder(root / "valid" / "JPEGImages" / "vval", render(6, 64, 48, background=(90, 90, 90))[0])
    (root / "meta_expressions" / "valid").mkdir(parents=True)
    (root / "meta_expressions" / "valid" / "meta_expressions.json").write_text(
        json.dumps(
            {"videos": {"vval": {"expressions": {"0": {"exp": "a square"}}, "frames": [f"{i:05d}" for i in range(6)]}}}
        )
    )
    return gt


def make_mevis(root: Path, videos=("m1", "m2"), num_frames: int = 8) -> dict:
    """MeViS: train with mask_dict.json (anno ids, null where absent), a no-target expression and one naming
    both objects; valid with no masks."""
    gt, meta, mask_dict = {}, {"videos": {}}, {}
    for v, vid in enumerate(videos):
        frames, truth = render(num_frames, 64, 48, background=_background(v))
        write_frame_folder(root / "train" / "JPEGImages" / vid, frames)
        exps = {}
        for k, shape in enumerate(SHAPES):
            anno = str(100 * (v + 1) + k)
            exps[str(k)] = {"exp": f"{EXPRESSIONS[shape]} {vid}", "obj_id": [k], "anno_id": [int(anno)]}
            mask_dict[anno] = [masks.encode(m) if m.any() else None for m in truth[shape]]
        exps["8"] = {"exp": "the green triangle", "obj_id": [], "anno_id": []}  # no target (later releases)
        exps["9"] = {"exp": "both shapes", "obj_id": [0, 1], "anno_id": [100 * (v + 1), 100 * (v + 1) + 1]}
        meta["videos"][vid] = {"expressions": exps, "frames": [f"{i:05d}" for i in range(num_frames)]}
        gt[vid] = {str(100 * (v + 1) + k): truth[s] for k, s in enumerate(SHAPES)}
    (root / "train" / "meta_expressions.json").write_text(json.dumps(meta))
    (root / "train" / "mask_dict.json").write_text(json.dumps(mask_dict))
    write_frame_folder(root / "valid" / "JPEGImages" / "mval", render(6, 64, 48, background=(90, 90, 90))[0])
    (root / "valid" / "meta_expressions.json").write_text(
        json.dumps(
            {"videos": {"mval": {"expressions": {"0": {"exp": "a square"}}, "frames": [f"{i:05d}" for i in range(6)]}}}
        )
    )
    return gt


def make_a2d(
    root: Path, videos=("a2dclip1", "a2dclip2"), num_frames: int = 12, annotated=(2, 6, 10), shared_query=()
) -> dict:
    """A2D-Sentences: mp4 clips, videoset.csv (no header), the annotation CSV with the released file's malformed
    '1 (copy)' row, a missed video, and per annotated frame an .h5 with transposed reMask (1-based names). The
    instances of the videos in shared_query all have one query, SHARED_QUERY (12 videos of the release do)."""
    gt = {}
    (root / "Release" / "clips320H").mkdir(parents=True)
    h5_root = root / "text_annotations" / "a2d_annotation_with_instances"
    rows = []
    import h5py

    for v, vid in enumerate(videos):
        frames, truth = render(num_frames, 64, 48, background=_background(v))
        write_mp4(root / "Release" / "clips320H" / f"{vid}.mp4", frames)
        rows.append([vid, "11", "0", "1", "48", "64", str(num_frames), str(len(annotated)), str(v % 2)])
        (h5_root / vid).mkdir(parents=True)
        gt[vid] = {str(k): np.zeros_like(truth[s]) for k, s in enumerate(SHAPES)}  # masks at annotated frames only
        for f in annotated:
            present = [k for k, s in enumerate(SHAPES) if truth[s][f].any()]
            if f == annotated[-1]:
                present = present[:1]  # one instance only: reMask is (W, H), not (N, W, H)
            stack = np.stack([truth[SHAPES[k]][f].T for k in present]).astype(np.uint8)
            with h5py.File(h5_root / vid / f"{f + 1:05d}.h5", "w") as fh:
                fh["instance"] = np.array(present, np.float64)  # MATLAB writes doubles
                fh["reMask"] = stack[0] if len(present) == 1 else stack
            for k in present:
                gt[vid][str(k)][f] = truth[SHAPES[k]][f]
    rows.append(["missedclip", "11", "0", "1", "48", "64", "10", "0", "0"])
    with (root / "Release" / "videoset.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (root / "text_annotations").mkdir(exist_ok=True)
    with (root / "text_annotations" / "a2d_annotation.txt").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video_id", "instance_id", "query"])
        for vid in videos:
            for k, s in enumerate(SHAPES):
                w.writerow([vid, k, SHARED_QUERY if vid in shared_query else f"{EXPRESSIONS[s]} {vid}"])
        w.writerow([videos[0], "1 (copy)", "a copied row"])
    (root / "text_annotations" / "a2d_missed_videos.txt").write_text("missedclip")
    return gt


def make_davis(root: Path, num_frames: int = 8) -> dict:
    """Ref-DAVIS17: DAVIS 480p frames and Annotations_unsupervised, ImageSets, and the four expression files
    (annot2 in Latin-1), one of them naming 'dogs-scale' by its misspelling 'dog-scale'."""
    gt = {}
    for v, (vid, split) in enumerate((("bike-packing", "train"), ("dogs-scale", "val"))):
        frames, truth = render(num_frames, 64, 48, background=_background(v))
        write_frame_folder(root / "DAVIS" / "JPEGImages" / "480p" / vid, frames)
        (root / "DAVIS" / "Annotations_unsupervised" / "480p" / vid).mkdir(parents=True)
        for i in range(num_frames):
            label = np.zeros((48, 64), np.uint8)
            for k, s in enumerate(SHAPES):
                label[truth[s][i]] = k + 1
            _palette(label, root / "DAVIS" / "Annotations_unsupervised" / "480p" / vid / f"{i:05d}.png")
        gt[vid] = {str(k + 1): truth[s] for k, s in enumerate(SHAPES)}
        (root / "DAVIS" / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
        with (root / "DAVIS" / "ImageSets" / "2017" / f"{split}.txt").open("a") as fh:
            fh.write(vid + "\n")
    text = root / "davis_text_annotations"
    text.mkdir()
    for name, enc, suffix in (
        ("Davis17_annot1.txt", "utf-8", "first"),
        ("Davis17_annot1_full_video.txt", "utf-8", "full"),
        ("Davis17_annot2.txt", "latin-1", "café"),
        ("Davis17_annot2_full_video.txt", "latin-1", "naïve"),
    ):
        lines = []
        for vid in ("bike-packing", "dog-scale"):
            for k, s in enumerate(SHAPES):
                lines.append(f'{vid} {k + 1} "{EXPRESSIONS[s]} {suffix}"')
        (text / name).write_bytes("\n".join(lines).encode(enc))
    return gt
