import numpy as np
import pytest

from engine.media.overlay import OverlayObject, color_for, draw_overlay, mask_edge


def test_fill_contour_and_distinct_colours():
    frame = np.zeros((60, 80, 3), np.uint8)
    a = np.zeros((60, 80), bool)
    a[10:30, 10:30] = True
    b = np.zeros((60, 80), bool)
    b[35:55, 45:75] = True
    out = draw_overlay(frame, [OverlayObject(mask=a, color_index=0), OverlayObject(mask=b, color_index=1)], alpha=0.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (0, 0, 0)  # outside every mask: untouched
    assert tuple(out[20, 20]) == tuple(round(c * 0.5) for c in color_for(0))  # interior: blended
    assert tuple(out[10, 20]) == color_for(0)  # border: solid contour
    assert tuple(out[45, 60]) != tuple(out[20, 20])  # objects get different colours
    assert color_for(0) != color_for(1)
    assert not np.array_equal(out, frame) and (frame == 0).all()  # input left as it was


def test_box_and_label_are_drawn():
    frame = np.full((80, 120, 3), 255, np.uint8)
    out = draw_overlay(frame, [OverlayObject(box=(20, 30, 70, 70), label="0: man", color_index=2)])
    assert tuple(out[50, 20]) == color_for(2)  # left edge of the box
    label_area = out[5:30, 20:80]
    assert (label_area != 255).any()  # the label sits above the box


def test_mask_edge_thickness():
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    assert mask_edge(m, 1).sum() == 36
    assert mask_edge(m, 2).sum() == 36 + 28


def test_shape_checks():
    with pytest.raises(ValueError, match="does not match"):
        draw_overlay(np.zeros((10, 10, 3), np.uint8), [OverlayObject(mask=np.ones((5, 5), bool))])
    with pytest.raises(ValueError, match="RGB"):
        draw_overlay(np.zeros((10, 10), np.uint8), [])
