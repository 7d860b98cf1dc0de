"""Shot boundaries on real footage with ground truth nobody here made (bikes.mp4's five cuts, checked by eye),
joined with more real and generated clips by a hard cut, a dissolve and a fade to black (tests/support/montage.py)."""

from __future__ import annotations

import numpy as np
import pytest
from montage import BIKES_CUTS, make_montage, make_segments

from engine.media.clips import ClipRules
from engine.media.shots import ContentDetector, TransNetV2Detector, boundaries_from, small_frames

TOLERANCE = 2  # frames


def _score(found: list[int], truth, transitions) -> tuple[int, int]:
    """(true cuts found, false cuts): a found cut near no true cut and inside no true transition is false."""
    hit = sum(any(abs(f - t) <= TOLERANCE for f in found) for t in truth)
    inside = lambda f: any(a - TOLERANCE <= f <= b + TOLERANCE for a, b in transitions)  # noqa: E731
    false = sum(not any(abs(f - t) <= TOLERANCE for t in truth) and not inside(f) for f in found)
    return hit, false


@pytest.fixture(scope="module")
def transnet():
    return TransNetV2Detector()


@pytest.fixture(scope="module")
def montage(tmp_path_factory, bikes_mp4):
    path = tmp_path_factory.mktemp("montage") / "montage.mp4"
    return path, make_montage(path, bikes_mp4.parent)


def test_transnetv2_finds_the_cuts_of_bikes(transnet, bikes_mp4):
    b = transnet.detect(bikes_mp4)
    assert b.num_frames == 250 and b.transitions == []
    assert _score(b.cuts, BIKES_CUTS, ()) == (5, 0), b.cuts
    assert [s.start for s in b.shots] == [0, *b.cuts] and b.shots[-1].end == 250


def test_streamed_predictions_equal_the_reference(transnet, bikes_mp4):
    import torch

    single, many = transnet.predictions(small_frames(bikes_mp4, chunk=37))  # chunking must not matter
    frames = np.concatenate(list(small_frames(bikes_mp4)))
    ref_single, ref_many = transnet.model.predict_frames(torch.from_numpy(frames), quiet=True)
    assert np.allclose(single, ref_single.numpy(), atol=1e-5) and np.allclose(many, ref_many.numpy(), atol=1e-5)
    transnet.batch = 3  # several windows per forward pass (as on a GPU): the same numbers
    try:
        batched = transnet.predictions(small_frames(bikes_mp4))
    finally:
        transnet.batch = 1
    assert np.allclose(batched[0], single, atol=1e-5) and np.allclose(batched[1], many, atol=1e-5)


def test_transnetv2_on_the_montage_finds_cuts_and_both_transitions(transnet, montage):
    path, truth = montage
    b = transnet.detect(path)
    hit, false = _score(b.cuts, truth.cuts, truth.transitions)
    print(
        f"\ntransnetv2: cuts {b.cuts}, transitions {b.transitions}; true {truth.cuts} {truth.transitions}: "
        f"recall {hit}/{len(truth.cuts)}, false cuts {false}"
    )
    assert hit == len(truth.cuts) and false <= 1
    for a, z in truth.transitions:  # each true transition overlaps a detected one
        assert any(x <= z and a <= y for x, y in b.transitions), (a, z, b.transitions)
    for s in b.shots:  # no shot holds a transition frame
        assert not any(s.start <= t <= s.end - 1 for x, y in b.transitions for t in range(x, y + 1))


def test_pyscenedetect_finds_the_hard_cuts(montage):
    path, truth = montage
    b = ContentDetector().detect(path)
    hit, false = _score(b.cuts, truth.cuts, truth.transitions)
    print(f"\ncontent: cuts {b.cuts}: recall {hit}/{len(truth.cuts)}, false cuts {false}")
    assert hit == len(truth.cuts) and false <= 1
    assert _score(b.cuts, BIKES_CUTS, ())[0] == 5


def test_boundaries_from_heads():
    single = np.zeros(40)
    many = np.zeros(40)
    single[9] = 0.9  # a hard cut after frame 9
    many[20:26] = 0.8  # a dissolve over frames 20..25
    b = boundaries_from(single, many, 25.0)
    assert b.cuts == [10] and b.transitions == [(20, 25)]
    assert [(s.start, s.end) for s in b.shots] == [(0, 10), (10, 20), (26, 40)]


def test_clip_rules_drop_black_static_uniform_and_short_clips_with_reasons(transnet, tmp_path, bikes_mp4):
    from engine.media.clips import frame_stats, plan_clips

    starts = make_segments(tmp_path / "segments.mp4", bikes_mp4)
    b = transnet.detect(tmp_path / "segments.mp4")
    clips = plan_clips(b, frame_stats(small_frames(tmp_path / "segments.mp4")), 640, 272)
    got = [(c.start, c.end, c.reason, {k: round(v, 1) for k, v in c.scores.items()}) for c in clips]
    print("\n" + "\n".join(map(str, got)))
    assert [c.reason for c in clips] == [None, "black", "static", "uniform", None, "too_short"], got
    assert all(abs(c.start - s) <= 2 for c, s in zip(clips, starts))
    assert plan_clips(b, frame_stats(small_frames(tmp_path / "segments.mp4")), 320, 136)[0].reason == "low_resolution"


def test_long_shots_are_cut_into_windows():
    from engine.media.clips import FrameStats, plan_clips
    from engine.media.shots import Boundaries, Shot

    n = 1100  # 44 s at 25 fps: three windows of at most 20 s
    stats = FrameStats(np.full(n, 120.0), np.full(n, 40.0), np.full(n, 3.0))
    clips = plan_clips(Boundaries(n, 25.0, shots=[Shot(0, n)]), stats, 640, 360)
    assert [(c.start, c.end) for c in clips] == [(0, 367), (367, 733), (733, 1100)] and all(c.kept for c in clips)


def test_a_reencoded_copy_is_a_near_duplicate(tmp_path, bikes_mp4):
    """Hashes come from the 48x27 stream the detector reads: a copy at another size, codec pass and frame rate is
    within the distance, another shot of the same footage is not."""
    import decord
    from synthetic import write_mp4

    from engine.media.clips import Clip, HashIndex, drop_duplicates, hashes_of, scan
    from engine.media.shots import NoSplit

    frames = decord.VideoReader(str(bikes_mp4)).get_batch(list(range(80, 130))).asnumpy()  # one shot of bikes
    write_mp4(tmp_path / "shot.mp4", frames, fps=25.0)
    small = np.stack(
        [np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(f).resize((320, 136))) for f in frames]
    )
    write_mp4(tmp_path / "copy.mp4", small, fps=12.0)
    write_mp4(tmp_path / "other.mp4", decord.VideoReader(str(bikes_mp4)).get_batch(list(range(140, 185))).asnumpy())
    hashes = {name: scan(tmp_path / f"{name}.mp4", NoSplit()) for name in ("shot", "copy", "other")}
    index = HashIndex([hashes_of(hashes["shot"].hashes, 0, 50)])
    candidates = [
        (Clip(0, 50), hashes_of(hashes["copy"].hashes, 0, 50)),
        (Clip(0, 45), hashes_of(hashes["other"].hashes, 0, 45)),
    ]
    drop_duplicates(candidates, index)
    (dup, _), (new, _) = candidates
    print(f"\ncopy distance {dup.scores['duplicate_distance']:.1f}, other shot {new.scores['duplicate_distance']:.1f}")
    assert dup.reason == "near_duplicate" and new.kept and len(index) == 2
    assert new.scores["duplicate_distance"] > 2 * ClipRules().duplicate_distance
