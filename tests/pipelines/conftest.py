"""Fixtures for end-to-end runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_endpoint import FakeEndpoint
from synthetic import Shape, render, write_frame_folder, write_mp4


@pytest.fixture
def endpoint():
    with FakeEndpoint() as fe:
        yield fe


@pytest.fixture
def source(tmp_path, bikes_mp4) -> Path:
    """Two generated clips, real footage, and a frame folder without a caption (the Captioner writes it)."""
    src = tmp_path / "videos"
    src.mkdir()
    frames, _ = render(24, 96, 72)
    write_mp4(src / "shapes.mp4", frames)
    (src / "shapes.txt").write_text("A red square slides past a blue circle.")
    other = (Shape("green square", "square", (40, 170, 60), 20, (0.1, 0.6), (2.0, -1.0)),)
    write_mp4(src / "green.mp4", render(16, 80, 60, shapes=other)[0])
    (src / "green.txt").write_text("A green square rises next to a white wall.")
    shutil.copy(bikes_mp4, src / "bikes.mp4")
    (src / "bikes.txt").write_text("A cyclist rides a bike past a car and a bus.")
    write_frame_folder(src / "JPEGImages" / "seq", render(12, 64, 48)[0])
    return src
