"""Short records mean what they say: the caption describes one object, so a short record is written only for a
singular subject grounded exactly once (or, by setting, for an instance clearly ahead of the others)."""

from __future__ import annotations

import re
import shutil

import pytest
import sqlalchemy as sa
from engine_runs import open_store, run_engine
from synthetic import render, write_mp4
from typer.testing import CliRunner

from agents.analyzer import subject_is_plural
from engine.cli import app
from engine.config import ShortConfig
from engine.store import schema
from engine.store.records import ObjectRecord
from engine.store.summaries import LEFT_OUT, left_out_text
from pipelines.stages import short_subject


def obj(i: int, noun: str = "man") -> ObjectRecord:
    return ObjectRecord(id=f"o{i}", video_id="v", noun=noun, stage_version="a@1", instance=i, is_subject=True)


CAPTION = "A man walks past a car."


@pytest.mark.parametrize(
    ("scores", "rule", "want"),
    [
        ({"o0": 0.9}, ShortConfig(), ("o0", None)),
        ({}, ShortConfig(), (None, "subject_not_found")),
        ({"o0": 0.9, "o1": 0.5}, ShortConfig(), (None, "subject_seen_2_times")),
        ({"o0": 0.5, "o1": 0.9}, ShortConfig(subject_rule="top_score"), ("o1", None)),  # the best, not the first
        ({"o0": 0.7, "o1": 0.5}, ShortConfig(subject_rule="top_score", score_margin=0.2), ("o0", None)),  # exactly
        ({"o0": 0.7, "o1": 0.65}, ShortConfig(subject_rule="top_score"), (None, "subject_seen_2_times")),
        ({"o0": 0.9, "o1": 0.5, "o2": 0.4}, ShortConfig(), (None, "subject_seen_3_times")),
    ],
)
def test_a_short_record_needs_one_instance_of_the_subject_or_one_clearly_ahead(scores, rule, want):
    found, reason = short_subject([obj(0), obj(1), obj(2)][: max(len(scores), 1)], scores, CAPTION, rule)
    assert (found.id if found else None, reason) == want


def test_no_subject_no_caption_and_a_plural_subject_get_no_short_record():
    assert short_subject([], {}, CAPTION, ShortConfig()) == (None, "no_subject")
    assert short_subject([obj(0)], {"o0": 0.9}, None, ShortConfig()) == (None, "no_caption")
    dogs = obj(0, "dog")
    assert short_subject([dogs], {"o0": 0.9}, "Two dogs chase a ball.", ShortConfig()) == (None, "plural_subject")


def test_every_reason_for_no_short_record_reads_as_a_sentence():
    reasons = [
        "no_caption",
        "no_subject",
        "plural_subject",
        "subject_not_found",
        "subject_mask_empty",
        "subject_gated",
    ]
    assert all(f"short_records:{r}" in LEFT_OUT for r in reasons)
    assert left_out_text("short_records:subject_seen_3_times") == (
        "clips without a short record: subject seen 3 times (ambiguous)"
    )


@pytest.mark.parametrize(
    ("noun", "caption", "plural"),
    [
        ("dog", "Two dogs chase a ball.", True),
        ("child", "The children play on a slide.", True),
        ("red car", "Red cars line the street.", True),
        ("dog", "A dog chases two other dogs.", False),  # the subject is one dog
        ("dog", "A dog runs.", False),
        ("sheep", "Sheep graze on a hill.", False),  # its plural is itself: not told apart
        ("bus", "A bus stops.", False),
    ],
)
def test_a_subject_is_plural_when_the_caption_names_only_its_plural(noun, caption, plural):
    assert subject_is_plural(noun, caption) is plural


@pytest.fixture
def twin_source(tmp_path, bikes_mp4):
    """A clip whose subject the twin segmentor grounds twice, one whose subject is plural, and a plain one."""
    src = tmp_path / "videos"
    src.mkdir()
    frames, _ = render(24, 96, 72)
    write_mp4(src / "twins.mp4", frames)
    (src / "twins.txt").write_text(CAPTION)
    write_mp4(src / "dogs.mp4", render(16, 80, 60)[0])
    (src / "dogs.txt").write_text("The dogs chase a ball.")
    shutil.copy(bikes_mp4, src / "bikes.mp4")
    (src / "bikes.txt").write_text("A cyclist rides a bike past a car and a bus.")
    return src


def _shorts(data) -> list[tuple[str, str, float]]:
    """(video path, the record's subject noun, its grounding score) of each short record the newest run wrote."""
    with open_store(data).session() as s:
        newest = s.scalar(sa.select(schema.Run.id).order_by(schema.Run.started_at.desc()).limit(1))
        rows = s.execute(
            sa.select(schema.Video.path, schema.Sample.object_ids)
            .join(schema.Video, schema.Video.id == schema.Sample.video_id)
            .where(schema.Sample.data_type == "short", schema.Sample.run_id == newest)
        ).all()
        out = []
        for path, object_ids in rows:
            (oid,) = object_ids
            noun = s.scalar(sa.select(schema.VideoObject.noun).where(schema.VideoObject.id == oid))
            score = s.scalar(sa.select(schema.Masklet.grounding_score).where(schema.Masklet.object_id == oid))
            out.append((path, noun, score))
        return sorted(out)


def test_a_clip_whose_subject_is_grounded_twice_gets_no_short_record_unless_one_leads(twin_source, endpoint, tmp_path):
    data = tmp_path / "data"
    flags = (
        "--source",
        str(twin_source),
        "--pipelines",
        "short",
        "--set",
        "segmentor.backend=fake_segmentor:TwinSegmentor",
    )
    r = run_engine(endpoint, data, *flags)
    assert r.exit_code == 0, r.output
    # the safe rule: the two men and the plural dogs get none; the cyclist, grounded once, gets its caption
    assert _shorts(data) == [("bikes.mp4", "cyclist", 0.8)]
    assert "clips without a short record: subject seen 2 times (ambiguous)" in r.output
    assert "clips without a short record: the caption's subject is plural" in r.output
    # engine status and the dataset card count them too, from the store
    status = CliRunner().invoke(app, ["status", "--data-dir", str(data)], env={"COLUMNS": "200"})
    assert status.exit_code == 0, status.output
    assert "Left out by the current results" in status.output
    assert re.search(r"subject seen 2 times \(ambiguous\)\W+1\b", status.output), status.output
    out = tmp_path / "export"
    export = CliRunner().invoke(app, ["export", "--data-dir", str(data), "--out", str(out)], env={"COLUMNS": "200"})
    assert export.exit_code == 0, export.output
    card = (out / "README.md").read_text()
    assert "- clips without a short record: subject seen 2 times (ambiguous): 1" in card
    assert "- clips without a short record: the caption's subject is plural: 1" in card
    # the same store, the margin rule: the 0.9 man leads the 0.5 one by 0.4 >= 0.2; no new Analyzer or segmentor work
    r = run_engine(endpoint, data, *flags, "--set", "short.subject_rule=top_score")
    assert r.exit_code == 0, r.output
    assert _shorts(data) == [("bikes.mp4", "cyclist", 0.8), ("twins.mp4", "man", 0.9)]
    assert "subject seen 2 times" not in r.output and "subject is plural" in r.output
