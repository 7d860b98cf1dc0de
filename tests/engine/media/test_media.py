import numpy as np
import pytest
from PIL import Image
from synthetic import render, write_frame_folder, write_mp4

from engine.media.video import MediaError, Video, fit_within, frame_files, probe, uniform_indices


def test_uniform_indices_follow_the_benchmark_formula():
    n, k = 250, 32
    seg = (n - 1) / k
    expected = [(round(seg * i) + round(seg * (i + 1))) // 2 for i in range(k)]
    assert uniform_indices(n, k) == expected
    assert len(set(expected)) == 32 and expected[0] >= 0 and expected[-1] < n
    assert uniform_indices(5, 32) == [0, 1, 2, 3, 4]  # short video: each frame once
    assert uniform_indices(12, 16) == list(range(12))
    assert uniform_indices(0, 32) == []


def test_probe_and_decode_generated_clip(shapes_clip):
    path, frames, _ = shapes_clip
    info = probe(path)
    assert (info.kind, info.num_frames, info.width, info.height) == ("file", 24, 96, 72)
    assert info.fps == pytest.approx(12.0) and info.duration == pytest.approx(2.0)
    got = Video(path).frames([0, 23])
    assert got.shape == (2, 72, 96, 3) and got.dtype == np.uint8
    # mp4v is lossy: compare loosely, but the red square must be where it was drawn
    assert np.abs(got.astype(int) - frames[[0, 23]].astype(int)).mean() < 8


@pytest.mark.parametrize("size", [(64, 48), (48, 36)])  # decord 0.6 fails on 48x36: the fallback resizes
def test_resize_while_decoding(shapes_clip, size):
    v = Video(shapes_clip[0], size=size)
    assert v.info.width == 96  # info reports the source size
    got = v.frames([3, 4])
    assert got.shape == (2, size[1], size[0], 3)
    native = Video(shapes_clip[0]).frames([3])[0]
    expected = np.asarray(Image.fromarray(native).resize(size, Image.BILINEAR))
    assert np.abs(got[0].astype(int) - expected.astype(int)).mean() < 12


def test_real_footage(bikes_mp4):
    info = probe(bikes_mp4)
    assert (info.num_frames, info.width, info.height) == (250, 640, 272)
    batch = Video(bikes_mp4).frames(uniform_indices(info.num_frames, 16))
    assert batch.shape == (16, 272, 640, 3) and batch.std() > 10  # real content, not blank frames


def test_frame_folder_in_numeric_order(tmp_path):
    frames, _ = render(12, 40, 30)
    folder = write_frame_folder(tmp_path / "seq", frames, ext=".png")
    (folder / "notes.txt").write_text("ignored")
    names = [p.name for p in frame_files(folder)]
    assert names[:3] == ["00000.png", "00001.png", "00002.png"] and len(names) == 12
    v = Video(folder, frame_folder_fps=6.0)
    assert (v.info.kind, v.info.num_frames, v.info.fps, v.info.width) == ("frames", 12, 6.0, 40)
    assert np.array_equal(v.frames([5])[0], frames[5])  # PNG is lossless
    assert Video(folder, size=(20, 15)).frames([0]).shape == (1, 15, 20, 3)


def test_numeric_order_not_lexical(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for i in (10, 2, 1):
        (folder / f"frame_{i}.jpg").write_bytes(b"")
    assert [p.name for p in frame_files(folder)] == ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg"]


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda p: p.with_suffix(".mp4").write_bytes(b""), "empty_file"),
        (lambda p: p.with_suffix(".mp4").write_text("not a video"), "corrupt"),
        (lambda p: p.with_suffix(".flv").write_bytes(b"FLV"), "unsupported_format"),
    ],
)
def test_bad_files_raise_typed_errors_naming_the_file(tmp_path, make, code):
    base = tmp_path / "clip"
    make(base)
    path = next(tmp_path.iterdir())
    with pytest.raises(MediaError) as e:
        probe(path)
    assert e.value.code == code and e.value.path == path and str(path) in str(e.value)


def test_truncated_mp4_is_corrupt(tmp_path, shapes_clip):
    data = shapes_clip[0].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as e:
        probe(cut)
    assert e.value.code == "corrupt"


def test_missing_empty_folder_and_bad_frame(tmp_path):
    with pytest.raises(MediaError) as e:
        probe(tmp_path / "absent.mp4")
    assert e.value.code == "not_found"
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(MediaError) as e:
        probe(tmp_path / "empty_dir")
    assert e.value.code == "zero_frames"
    seq = write_frame_folder(tmp_path / "seq", render(3, 16, 12)[0])
    (seq / "00002.jpg").write_bytes(b"garbage")
    with pytest.raises(MediaError) as e:
        probe(seq)  # the last frame is read by probe, so the damage is found up front
    assert e.value.code == "bad_frames" and e.value.path.name == "00002.jpg"


def test_out_of_range_indices(shapes_clip):
    with pytest.raises(IndexError, match="outside 0..23"):
        Video(shapes_clip[0]).frames([24])


def test_fit_within():
    assert fit_within(1280, 720, 640) == (640, 360)
    assert fit_within(100, 50, 640) == (100, 50)  # never upscales


def test_write_mp4_roundtrip_length(tmp_path):
    frames, masks = render(7, 32, 24)
    assert set(masks) == {"red square", "blue circle"} and masks["red square"].shape == (7, 24, 32)
    assert probe(write_mp4(tmp_path / "x.mp4", frames)).num_frames == 7


def test_small_widths_that_decord_miscopies_still_decode(tmp_path):
    frames, _ = render(6, 16, 12)  # decord 0.6 fails on 16 px wide frames; OpenCV takes over
    info = probe(write_mp4(tmp_path / "tiny.mp4", frames))
    assert (info.width, info.height, info.num_frames) == (16, 12, 6)
    got = Video(tmp_path / "tiny.mp4").frames([0, 5])
    assert got.shape == (2, 12, 16, 3) and np.abs(got.astype(int) - frames[[0, 5]].astype(int)).mean() < 16
