"""The dataset-masks segmentor backend on every dataset layout, and the adapters it reads through."""

import dataset_layouts as layouts
import numpy as np
import pytest

from agents.segmentor import DatasetMasksSegmentor, SegmentRequest
from engine.media import masks
from engine.sources.datasets import dataset_of, find_split

CASES = {  # layout -> (maker, a video of it, its object ids in SHAPES order)
    "ytvos": (layouts.make_ytvos, lambda r: r / "train" / "JPEGImages" / "vid1", ("1", "2")),
    "mevis": (layouts.make_mevis, lambda r: r / "train" / "JPEGImages" / "m1", ("100", "101")),
    "a2d": (layouts.make_a2d, lambda r: r / "Release" / "clips320H" / "a2dclip1.mp4", ("0", "1")),
    "davis": (layouts.make_davis, lambda r: r / "DAVIS" / "JPEGImages" / "480p" / "bike-packing", ("1", "2")),
}


@pytest.mark.parametrize("layout", list(CASES))
def test_dataset_masks_match_the_ground_truth(tmp_path, layout, monkeypatch):
    monkeypatch.setenv("VIDEOREFER_CACHE_DIR", str(tmp_path / "cache"))
    maker, video_of, ids = CASES[layout]
    gt = maker(tmp_path / layout)
    video = video_of(tmp_path / layout)
    adapter, dv = dataset_of(str(video))
    assert find_split(video) is adapter and dataset_of(str(tmp_path / "elsewhere")) is None
    frames = adapter.mask_frames(dv)
    req = SegmentRequest("v", str(video), tuple(range(8)), ("square", "blue circle", "dog"), 48, 64)
    tracks = DatasetMasksSegmentor().segment(req, np.zeros((8, 48, 64, 3), np.uint8))
    assert [(t.noun, t.instance) for t in tracks] == [("square", 0), ("blue circle", 0)]  # no dog in the dataset
    for t, obj in zip(tracks, ids):
        for f in range(8):
            got = masks.decode(t.masks[f]) if t.masks[f] is not None else None
            if f not in frames:  # a frame the dataset did not annotate (A2D annotates a few)
                assert got is None
                continue
            expected = gt[dv.key][obj][f]
            assert np.array_equal(got if got is not None else np.zeros_like(expected), expected)
        assert t.anchor_frame in frames and t.box == masks.bbox_xyxy(t.masks[t.anchor_frame])


def test_not_a_dataset_video_is_a_clear_error(tmp_path):
    req = SegmentRequest("v", str(tmp_path), (0,), ("x",), 4, 4)
    with pytest.raises(ValueError, match="not a video of an annotated dataset"):
        DatasetMasksSegmentor().segment(req, np.zeros((1, 4, 4, 3), np.uint8))


def test_mevis_masks_are_indexed_once_and_read_per_object(tmp_path, monkeypatch):
    """mask_dict.json is streamed once into an index in the cache; a second adapter reads the index, not the file."""
    from engine.sources.datasets import mevis

    monkeypatch.setenv("VIDEOREFER_CACHE_DIR", str(tmp_path / "cache"))
    layouts.make_mevis(tmp_path / "mevis")
    adapter, dv = dataset_of(str(tmp_path / "mevis" / "train" / "JPEGImages" / "m2"))
    first = adapter.objects(dv, [0, 4])
    (index,) = (tmp_path / "cache" / "datasets").glob("mevis-*.sqlite")
    mevis._open_index.cache_clear()
    opened = []
    monkeypatch.setattr(mevis._MaskIndex, "_build", lambda self, f: opened.append(f))
    again = adapter.objects(dv, [0, 4])
    assert not opened and [o.masks for o in again] == [o.masks for o in first]  # read from the index
    assert adapter.summary().skipped == {"expressions without a target": 2, "expressions naming several objects": 2}


def test_mevis_v2_names_its_expressions_file_differently(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOREFER_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "mevis2"
    layouts.make_mevis(root)
    (root / "train" / "meta_expressions.json").rename(root / "train" / "meta_expressions_v2.json")
    adapter, dv = dataset_of(str(root / "train" / "JPEGImages" / "m1"))
    assert adapter.summary().expressions == 4 and len(adapter.objects(dv, [0])) == 2
