import shutil

import pytest
from synthetic import render, write_frame_folder

from engine.sources.ingest import ingest, load_caption_tables, scan
from engine.store import schema


def test_scan_finds_files_and_frame_folders_and_skips_annotations(tmp_path, shapes_clip):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    shutil.copy(shapes_clip[0], src / "sub" / "b.MP4")
    shutil.copy(shapes_clip[0], src / "a.mkv")
    frames, _ = render(3, 16, 12)
    write_frame_folder(src / "JPEGImages" / "vid1", frames)
    write_frame_folder(src / "Annotations" / "vid1", frames, ext=".png")  # masks, not a video
    write_frame_folder(src / ".hidden" / "x", frames)
    (src / "old.flv").write_bytes(b"FLV")
    (src / "readme.md").write_text("not a video")
    found, problems = scan(src)
    assert [(c.rel, c.kind) for c in found] == [
        ("JPEGImages/vid1", "frames"),
        ("a.mkv", "file"),
        ("sub/b.MP4", "file"),
    ]
    assert [(p.rel, p.code) for p in problems] == [("old.flv", "unsupported_format")]
    with pytest.raises(NotADirectoryError):
        scan(src / "a.mkv")


def test_caption_tables_and_their_bad_lines(tmp_path):
    (tmp_path / "captions.jsonl").write_text(
        '{"video": "./a.mp4", "caption": " A man. "}\n\nnot json\n{"path": "b/c.mp4", "caption": "B"}\n{"video": 3}\n'
    )
    (tmp_path / "captions.csv").write_text('video,caption\na.mp4,"From csv, with comma"\n,orphan\n')
    table, problems = load_caption_tables(tmp_path)
    assert table == {
        "a.mp4": {"captions.jsonl": "A man.", "captions.csv": "From csv, with comma"},
        "b/c.mp4": {"captions.jsonl": "B"},
    }
    assert sorted(p.rel for p in problems) == ["captions.csv:3", "captions.jsonl:3", "captions.jsonl:5"]
    (tmp_path / "captions.csv").write_text("name,text\nx,y\n")
    assert any(p.code == "bad_caption_table" for p in load_caption_tables(tmp_path)[1])


def test_ingest_records_videos_captions_and_failures_idempotently(store, mixed_source):
    report = ingest(store, mixed_source)
    rels = sorted(v.rel for v in report.videos)
    assert rels == ["JPEGImages/seq01", "shapes.mp4", "street/bikes.mp4"]
    assert {p.rel: p.code for p in report.problems} == {
        "broken/empty.mp4": "empty_file",
        "broken/notes.mp4": "corrupt",
        "broken/truncated.mp4": "corrupt",
    }
    by_rel = {v.rel: v for v in report.videos}
    assert by_rel["shapes.mp4"].caption.startswith("A red square")  # sidecar
    assert by_rel["street/bikes.mp4"].caption == "A cyclist rides in traffic."  # captions.jsonl
    assert by_rel["JPEGImages/seq01"].caption is None
    assert by_rel["street/bikes.mp4"].info.num_frames == 250
    counts = store.counts()
    assert (counts["videos"], counts["captions"], counts["failures"]) == (3, 2, 3)
    with store.session() as s:
        f = s.query(schema.Failure).filter(schema.Failure.unit_id.endswith("empty.mp4")).one()
        assert (f.stage, f.error_code, f.quarantined) == ("ingest", "empty_file", False)  # skipped, not quarantined
        v = s.query(schema.Video).filter_by(path="street/bikes.mp4").one()
        assert (v.width, v.height, v.kind, v.size_bytes) == (640, 272, "file", 509868)

    again = ingest(store, mixed_source)
    assert again.new_videos == 0 and len(again.videos) == 3
    assert store.counts() == counts  # nothing added the second time


def test_fixed_file_clears_its_failure_and_edited_caption_is_updated(store, mixed_source, shapes_clip):
    ingest(store, mixed_source)
    shutil.copy(shapes_clip[0], mixed_source / "broken" / "empty.mp4")  # the user repairs the file
    (mixed_source / "shapes.txt").write_text("An edited caption.")
    report = ingest(store, mixed_source)
    # the repaired file has the same bytes as shapes.mp4, stored first: a duplicate, not a new video
    assert report.duplicates == [("broken/empty.mp4", "shapes.mp4")]
    assert len(report.videos) == 3 and report.new_videos == 0
    with store.session() as s:
        assert not s.query(schema.Failure).filter(schema.Failure.unit_id.endswith("empty.mp4")).count()
        assert {c.text for c in s.query(schema.Caption)} == {"An edited caption.", "A cyclist rides in traffic."}


def test_limit_takes_the_first_videos_in_path_order(sqlite_store, mixed_source):
    report = ingest(sqlite_store, mixed_source, limit=2)
    # path order: JPEGImages/seq01, broken/empty.mp4 -> only one readable among the first two
    assert [v.rel for v in report.videos] == ["JPEGImages/seq01"]
    assert [p.rel for p in report.problems] == ["broken/empty.mp4"]


def test_progress_callbacks(sqlite_store, mixed_source):
    seen, total = [], []
    ingest(sqlite_store, mixed_source, on_start=total.append, on_progress=seen.append)
    assert total == [6] and len(seen) == 6


def test_unchanged_files_are_not_probed_or_hashed_again(store, mixed_source, monkeypatch):
    import os

    import engine.sources.ingest as ingest_module

    first = ingest(store, mixed_source)
    probes, hashes = [], []
    real_video, real_hash = ingest_module.Video, ingest_module._content_id
    monkeypatch.setattr(ingest_module, "Video", lambda path, **kw: probes.append(path) or real_video(path, **kw))
    monkeypatch.setattr(ingest_module, "_content_id", lambda c: hashes.append(c.rel) or real_hash(c))

    again = ingest(store, mixed_source)
    readable = {"JPEGImages/seq01", "shapes.mp4", "street/bikes.mp4"}
    assert again.unchanged == 3 and {str(p.relative_to(mixed_source)) for p in probes} == {
        "broken/empty.mp4",
        "broken/notes.mp4",
        "broken/truncated.mp4",
    }  # only what failed is tried again
    assert hashes == []
    assert [(v.id, v.info) for v in again.videos] == [(v.id, v.info) for v in first.videos]
    assert {v.rel: v.caption for v in again.videos} == {v.rel: v.caption for v in first.videos}

    # a file touched since (new mtime) is probed and hashed again; a changed sidecar caption is stored
    os.utime(mixed_source / "shapes.mp4", ns=(1, 1))
    (mixed_source / "shapes.txt").write_text("A red square now moves left.")
    probes.clear()
    third = ingest(store, mixed_source)
    assert third.unchanged == 2 and "shapes.mp4" in hashes
    assert {v.rel: v.caption for v in third.videos}["shapes.mp4"] == "A red square now moves left."
    with store.session() as s:
        assert s.query(schema.Caption).filter_by(text="A red square now moves left.").count() == 1
        assert s.query(schema.Video).count() == 3  # the same bytes: the same video, nothing added
    fourth = ingest(store, mixed_source)
    assert fourth.unchanged == 3 and readable == {v.rel for v in fourth.videos}
