"""The dataset-masks segmentor backend on both dataset layouts."""

import numpy as np
import pytest

from agents.segmentor import DatasetMasksSegmentor, SegmentRequest, dataset_root
from dataset_layouts import make_dataset
from engine.media import masks


@pytest.mark.parametrize("layout", ["ytvos", "mevis"])
def test_dataset_masks_match_the_ground_truth(tmp_path, layout):
    gt = make_dataset(tmp_path, layout)
    folder = tmp_path / "JPEGImages" / "vid1"
    assert dataset_root(folder)[0] == tmp_path and dataset_root(tmp_path / "elsewhere") is None
    req = SegmentRequest("v", str(folder), (0, 3, 9), ("square", "blue circle", "dog"), 48, 64)
    tracks = DatasetMasksSegmentor().segment(req, np.zeros((3, 48, 64, 3), np.uint8))
    assert [(t.noun, t.instance) for t in tracks] == [("square", 0), ("blue circle", 0)]  # no dog in the dataset
    for t, noun in zip(tracks, ("red square", "blue circle")):
        for f in (0, 3, 9):
            expected = gt[noun][f]
            got = masks.decode(t.masks[f]) if t.masks[f] is not None else np.zeros_like(expected)
            assert np.array_equal(got, expected)
        assert t.anchor_frame in (0, 3, 9) and t.box == masks.bbox_xyxy(t.masks[t.anchor_frame])


def test_not_a_dataset_video_is_a_clear_error(tmp_path):
    req = SegmentRequest("v", str(tmp_path), (0,), ("x",), 4, 4)
    with pytest.raises(ValueError, match="not a frame folder of a MeViS"):
        DatasetMasksSegmentor().segment(req, np.zeros((1, 4, 4, 3), np.uint8))
