import json

import numpy as np
import pytest

from engine.media import masks


def _box_mask(h=40, w=60, y0=5, y1=15, x0=10, x1=30):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_roundtrip_is_exact_and_json_safe(rng):
    m = rng.random((37, 53)) > 0.6
    rle = masks.encode(m)
    assert rle["size"] == [37, 53] and isinstance(rle["counts"], str)
    again = json.loads(json.dumps(rle))
    assert np.array_equal(masks.decode(again), m)


def test_area_bbox_iou():
    a = masks.encode(_box_mask())
    b = masks.encode(_box_mask(x0=20, x1=40))
    assert masks.area(a) == 200
    assert masks.bbox_xyxy(a) == (10.0, 5.0, 30.0, 15.0)
    assert masks.iou(a, b) == pytest.approx(100 / 300)
    assert masks.iou(a, a) == 1.0
    empty = masks.encode(np.zeros((40, 60), bool))
    assert masks.bbox_xyxy(empty) is None and masks.area(None) == 0
    assert masks.iou(empty, None) == 1.0 and masks.iou(a, None) == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        masks.iou(a, masks.encode(np.ones((4, 4), bool)))


def test_uncompressed_rle_from_datasets_is_accepted():
    m = _box_mask()
    # column-major run lengths, as COCO's uncompressed form
    flat = m.flatten(order="F").astype(np.uint8)
    runs, last, count = [], 0, 0
    for v in flat:
        if v != last:
            runs.append(count)
            last, count = v, 0
        count += 1
    runs.append(count)
    assert np.array_equal(masks.decode({"size": [40, 60], "counts": runs}), m)


def test_masklet_metrics():
    m = {
        0: masks.encode(_box_mask()),
        4: masks.encode(_box_mask(x0=20, x1=40)),
        8: None,
        12: masks.encode(_box_mask()),
    }
    assert masks.coverage(m) == 0.75
    ious = masks.consecutive_ious(m)
    assert ious == pytest.approx([100 / 300, 0.0, 0.0])
    assert masks.area_variation(m) == 0.0  # all non-empty masks have the same area
    grow = {0: masks.encode(_box_mask(x1=20)), 1: masks.encode(_box_mask(x1=30))}
    assert masks.area_variation(grow) == pytest.approx(np.std([100, 200]) / 150)
    assert masks.coverage({}) == 0.0


def test_encode_rejects_wrong_rank():
    with pytest.raises(ValueError, match="2-D"):
        masks.encode(np.zeros((2, 3, 4), bool))
