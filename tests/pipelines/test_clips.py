"""Raw video in: `engine run` splits multi-shot sources into clips with TransNetV2's real weights, runs the detailed
pipeline per clip, and exports clips a trainer can open.

The sources are real footage with ground truth nobody here made (bikes.mp4's five cuts) joined with more clips at
known frames (tests/support/montage.py): a hard cut, a dissolve, a fade to black; black, static and uniform
segments; and, in a second source folder, a re-encoded copy of one shot.
"""

from __future__ import annotations

import json

import decord
import numpy as np
import pytest
from engine_runs import RUN_FLAGS, open_store, run_engine
from montage import make_montage, make_segments
from PIL import Image
from synthetic import write_mp4
from typer.testing import CliRunner

from engine.cli import app
from engine.store import schema

TRANSNET = ("--set", "split.detector=transnetv2")
CAPTION = "A montage: cyclists race on bikes, a man talks on a phone, shapes move on coloured walls."


def _shots(cuts, transitions, n) -> list[tuple[int, int]]:
    """The true shots [start, end) between cuts, with transition frames in none."""
    edges = sorted({0, n, *cuts, *(a for a, _ in transitions), *(b + 1 for _, b in transitions)})
    inside = {f for a, b in transitions for f in range(a, b + 1)}
    return [(a, b) for a, b in zip(edges, edges[1:]) if a not in inside]


@pytest.fixture
def raw_source(tmp_path, bikes_mp4):
    src = tmp_path / "raw"
    src.mkdir()
    truth = make_montage(src / "a_montage.mp4", bikes_mp4.parent)
    (src / "a_montage.txt").write_text(CAPTION)
    starts = make_segments(src / "b_segments.mp4", bikes_mp4)
    shots = {
        "a_montage.mp4": _shots(truth.cuts, truth.transitions, truth.num_frames),
        "b_segments.mp4": list(zip(starts, starts[1:] + [231])),
    }
    return src, shots


def _in_one_shot(frames: list[int], shots: list[tuple[int, int]]) -> bool:
    return any(all(a <= f < b for f in frames) for a, b in shots)


def test_a_multi_shot_source_becomes_clips_whose_samples_never_cross_a_cut(endpoint, raw_source, tmp_path):
    src, shots = raw_source
    data = tmp_path / "data"
    # a run stopped after its first source was split: the next run splits only the other one
    first = run_engine(endpoint, data, "--source", str(src), "--dry-run", "--limit", "1", *TRANSNET)
    assert first.exit_code == 0, first.output
    r = run_engine(endpoint, data, "--source", str(src), "--pipelines", "detailed", *TRANSNET)
    assert r.exit_code == 0, r.output
    print(r.output)
    store = open_store(data)
    with store.session() as s:
        run = s.query(schema.Run).filter(schema.Run.command.like("run --pipelines%")).one()
        split = run.summary["split"]
        assert split["sources_scanned"] == 1 and split["sources_resumed"] == 1, split
        sources = {v.path: v for v in s.query(schema.Video).filter(schema.Video.parent_id.is_(None))}
        clips = s.query(schema.Clip).order_by(schema.Clip.source_id, schema.Clip.start).all()
        by_source = {p: [c for c in clips if c.source_id == v.id] for p, v in sources.items()}
        reasons = {p: [c.reason for c in cs] for p, cs in by_source.items()}
        print(json.dumps({p: [(c.start, c.end, c.reason) for c in cs] for p, cs in by_source.items()}))
        # black, a held frame and a flat grey segment, each dropped with its reason; its two real shots are the
        # montage's (split first), so near-duplicates of clips kept in the store
        assert reasons["b_segments.mp4"] == [
            "near_duplicate",
            "black",
            "static",
            "uniform",
            "near_duplicate",
            "too_short",
        ], reasons
        kept = [(c.start, c.end) for c in by_source["a_montage.mp4"] if c.kept]
        assert len(kept) == 5 and set(reasons["a_montage.mp4"]) == {None, "too_short"}, reasons
        assert split["clips_kept"] == sum(c.kept for c in clips) == 5
        assert split["clips_dropped"] == {
            k: sum(c.reason == k for c in clips) for k in {c.reason for c in clips if c.reason}
        }
        for path, cs in by_source.items():  # every kept clip lies in one true shot
            for c in cs:
                if c.kept:
                    assert _in_one_shot(list(range(c.start, c.end)), shots[path]), (path, c.start, c.end)
        units = {v.id: v for v in s.query(schema.Video).filter(schema.Video.parent_id.is_not(None))}
        assert {c.video_id for c in clips if c.kept} == set(units)  # no kept clip is a whole source here
        samples = s.query(schema.Sample).all()
        assert samples and {smp.video_id for smp in samples} <= set(units)
        for smp in samples:  # no sample's frames cross a cut: its keys, counted in the source, lie in one shot
            u = units[smp.video_id]
            path = sources_path = next(p for p, v in sources.items() if v.id == u.parent_id)
            for entry in smp.annotation:
                keys = [int(k) for k in entry]
                assert all(0 <= k < u.num_frames for k in keys)
                assert _in_one_shot([u.first_frame + k for k in keys], shots[sources_path]), (
                    path,
                    u.first_frame,
                    keys,
                )
        # the montage's caption describes the whole video: each of its clips got its own, told the whole's as context
        montage_units = [u for u in units.values() if u.parent_id == sources["a_montage.mp4"].id]
        captions = {
            c.video_id: c
            for c in s.query(schema.Caption).filter(schema.Caption.video_id.in_([u.id for u in montage_units]))
        }
        assert set(captions) == {u.id for u in montage_units} and all(
            c.source == "captioner" for c in captions.values()
        )
    told = [q for q in endpoint.work_requests() if "captions for video clips" in json.dumps(q.body)]
    assert len(told) == len(units) and sum(CAPTION in json.dumps(q.body) for q in told) == len(montage_units)

    again = run_engine(endpoint, data, "--source", str(src), "--pipelines", "detailed", *TRANSNET)
    assert again.exit_code == 0, again.output
    with store.session() as s:
        run = (
            s.query(schema.Run)
            .filter(schema.Run.command.like("run --pipelines%"))
            .order_by(schema.Run.started_at.desc())
            .first()
        )
        assert run.summary["split"]["sources_scanned"] == 0 and run.summary["split"]["sources_resumed"] == 2
        assert s.query(schema.Clip).count() == len(clips)

    # exported clips a trainer opens: files of their own, keys counted in them; by default, the sources, keys shifted
    for extra, root in ((["--clips"], tmp_path / "out_clips" / "videos"), ([], src)):
        out = tmp_path / ("out_clips" if extra else "out_sources")
        e = CliRunner().invoke(
            app,
            ["export", "--out", str(out), "--data-dir", str(data), "--types", "detailed", *extra, *RUN_FLAGS[:2]],
            env={"COLUMNS": "160"},
        )
        assert e.exit_code == 0, e.output
        v = CliRunner().invoke(
            app, ["validate", str(out / "detailed_train.json"), "--video-root", str(root)], env={"COLUMNS": "160"}
        )
        print(v.output)
        assert v.exit_code == 0 and "no defects" in " ".join(v.output.split()), v.output
        card = (out / "README.md").read_text()  # the dataset card counts the clips, and those dropped by reason
        assert "2 source videos split into 17 clips; 5 kept." in card, card
        assert "near duplicate 2" in card and "black 1" in card and "static 1" in card and "uniform 1" in card
        records = json.loads((out / "detailed_train.json").read_text())
        assert len(records) == len([smp for smp in samples if smp.data_type == "detailed"])
        if extra:
            assert all(rec["video"].endswith(".mp4") and "_" in rec["video"] for rec in records)
            for rec in records[:3]:  # the clip file holds exactly the clip's frames
                vr = decord.VideoReader(str(root / rec["video"]))
                start, end = map(int, rec["video"].rsplit("_", 1)[1].removesuffix(".mp4").split("-"))
                assert len(vr) == end - start
                source = decord.VideoReader(str(src / rec["video"].rsplit("_", 1)[0].split("/")[-1]) + ".mp4")
                diff = np.abs(vr[0].asnumpy().astype(int) - source[start].asnumpy().astype(int)).mean()
                assert diff < 4, diff
        else:
            assert {rec["video"] for rec in records} <= {"a_montage.mp4", "b_segments.mp4"}


def test_a_reencoded_copy_in_another_source_is_a_near_duplicate_of_the_store(endpoint, tmp_path, bikes_mp4):
    data = tmp_path / "data"
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    make_segments(first / "segments.mp4", bikes_mp4)
    (
        first / "captions.jsonl"
    ).write_text(  # Panda-70M-style timed captions: each goes to the clip whose middle is in it
        '{"video": "segments.mp4", "start": "0:00:00.000", "end": "0:00:05.000", "caption": "Cyclists race past."}\n'
        '{"video": "segments.mp4", "start": 9, "end": 8, "caption": "Backwards."}\n'
    )
    frames = decord.VideoReader(str(bikes_mp4)).get_batch(list(range(76, 137))).asnumpy()
    bigger = np.stack([np.asarray(Image.fromarray(f).resize((720, 306), Image.BICUBIC)) for f in frames])
    write_mp4(second / "copy.mp4", bigger, fps=25.0)  # another size, frame rate and encoding of the first shot
    other = decord.VideoReader(str(bikes_mp4)).get_batch(list(range(187, 242))).asnumpy()
    write_mp4(second / "other.mp4", other, fps=25.0)  # a shot the store does not hold
    r1 = run_engine(endpoint, data, "--source", str(first), "--dry-run", *TRANSNET)
    assert r1.exit_code == 0, r1.output
    assert "captions.jsonl:2" in r1.output and "is not before end" in " ".join(r1.output.split())
    r2 = run_engine(endpoint, data, "--source", str(second), "--dry-run", *TRANSNET)
    assert r2.exit_code == 0, r2.output
    assert "dropped: near duplicate" in r2.output
    store = open_store(data)
    with store.session() as s:
        paths = {v.id: v.path for v in s.query(schema.Video)}
        clips = {
            paths[c.source_id]: c for c in s.query(schema.Clip) if paths[c.source_id] in ("copy.mp4", "other.mp4")
        }
        print({p: (c.reason, c.scores) for p, c in clips.items()})
        assert clips["copy.mp4"].reason == "near_duplicate" and not clips["copy.mp4"].kept
        assert clips["copy.mp4"].scores["duplicate_distance"] <= 8
        assert (
            clips["other.mp4"].kept
            and clips["other.mp4"].video_id == [v for v, p in paths.items() if p == "other.mp4"][0]
        )
        shot = (
            s.query(schema.Clip)
            .filter_by(start=0)
            .join(schema.Video, schema.Video.id == schema.Clip.source_id)
            .filter(schema.Video.path == "segments.mp4")
            .one()
        )
        captions = {(c.video_id, c.source): c.text for c in s.query(schema.Caption)}
        assert shot.kept and captions == {(shot.video_id, "captions.jsonl"): "Cyclists race past."}, captions
