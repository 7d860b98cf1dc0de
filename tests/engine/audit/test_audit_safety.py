"""Audit exports and auditor names that cannot be turned against the people who read them: CSV cells a spreadsheet
would run as formulas are escaped (the JSONL stays exact), and auditor names are NFKC-normalised, free of markup and
of look-alikes of one another."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from fastapi.testclient import TestClient
from review_data import CURRENT, make_reviews
from typer.testing import CliRunner

import review_ui.app as ui
from engine.audit.export import csv_cell
from engine.audit.names import confusable_with, normalise_name, skeleton
from engine.audit.sampling import add_auditor, check_auditor, draw_sample
from engine.cli import app
from engine.store import schema

NOTES = ['=HYPERLINK("http://evil.example","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)"]
NOUNS = ["\t=1+2", "\r@SUM(A1)"]  # model text: the review UI trims notes, the Analyzer's nouns are kept as they are


def _signed_in(store, name: str, token: str) -> tuple[TestClient, str]:
    c = TestClient(ui.create_app(store), headers={"origin": "http://testserver"})
    assert c.post("/login", data={"name": name, "token": token}, follow_redirects=False).status_code == 303
    page = c.get("/items").text
    return c, re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_csv_cells_that_a_spreadsheet_would_run_are_escaped_and_jsonl_stays_exact(sqlite_store, tmp_path):
    reviews = make_reviews(sqlite_store, tmp_path, kept=3, discarded=3)
    draw_sample(sqlite_store, CURRENT, kept=3, discarded=3)
    with sqlite_store.session() as s:
        for rid, noun in zip(reviews[4:], NOUNS):
            s.get(schema.VideoObject, s.get(schema.Review, rid).object_id).noun = noun
    c, csrf = _signed_in(sqlite_store, "ann", add_auditor(sqlite_store, "ann"))
    for rid, note in zip(reviews, NOTES + ["plain", "also plain"]):
        r = c.post(
            "/decide", data={"review_id": rid, "verdict": "wrong", "note": note, "csrf": csrf}, follow_redirects=False
        )
        assert r.status_code == 303
    url = ["--database-url", sqlite_store.url]
    run = CliRunner()

    r = run.invoke(app, ["audit", "export", "--format", "csv", *url])
    assert r.exit_code == 0, r.output
    rows = {row["review_id"]: row for row in csv.DictReader(io.StringIO(r.output))}
    for rid, note in zip(reviews, NOTES):
        assert rows[rid]["note"] == "'" + note
    for rid, noun in zip(reviews[4:], NOUNS):
        assert rows[rid]["noun"] == "'" + noun and rows[rid]["note"] in ("plain", "also plain")
    assert all(row["reviewer_confidence"] == "0.8" and row["auditor"] == "ann" for row in rows.values())

    r = run.invoke(app, ["audit", "export", "--format", "csv", "--history", *url])
    assert sorted(
        row["note"] for row in csv.DictReader(io.StringIO(r.output)) if row["note"].startswith("'")
    ) == sorted("'" + n for n in NOTES)

    r = run.invoke(app, ["audit", "export", *url])
    exact = {row["review_id"]: row for row in map(json.loads, r.output.splitlines())}
    assert [exact[rid]["note"] for rid in reviews[:4]] == NOTES
    assert [exact[rid]["noun"] for rid in reviews[4:]] == NOUNS and exact[reviews[0]]["reviewer_confidence"] == 0.8


def test_only_text_cells_are_escaped():
    assert [csv_cell(v) for v in (-0.5, -3, True, None, "", "ok", "a=b")] == [-0.5, -3, True, None, "", "ok", "a=b"]
    dangerous = ("=1", "+1", "-1", "@x", "\tx", "\rx")
    assert [csv_cell(v) for v in dangerous] == ["'" + v for v in dangerous]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("<b>x</b>", "'<'"),
        ("bob & co", "'&'"),
        ('say "hi"', "'\"'"),
        ("\u0430dmin", "mixes scripts (cyrillic, latin)"),
        ("", "1 to 64"),
    ],
)
def test_bad_auditor_names_are_refused_on_one_line(sqlite_store, name, reason):
    r = CliRunner().invoke(app, ["audit", "add-auditor", name, "--database-url", sqlite_store.url])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], r.output
    with sqlite_store.session() as s:
        assert s.query(schema.Auditor).count() == 0


def test_look_alikes_of_an_auditor_are_refused_and_full_width_is_nfkc(sqlite_store, tmp_path):
    url = ["--database-url", sqlite_store.url]
    run = CliRunner()
    assert run.invoke(app, ["audit", "add-auditor", "admin", *url]).exit_code == 0
    assert run.invoke(app, ["audit", "add-auditor", "ace", *url]).exit_code == 0
    r = run.invoke(app, ["audit", "add-auditor", "\u0430dm\u0456n", *url])  # Cyrillic а and і among Latin letters
    assert r.exit_code == 2 and "mixes scripts" in r.output
    r = run.invoke(app, ["audit", "add-auditor", "\u0430\u0441\u0435", *url])  # all Cyrillic, reads "ace"
    assert r.exit_code == 2 and "looks like auditor 'ace'" in r.output and len(r.output.strip().splitlines()) == 1
    r = run.invoke(app, ["audit", "add-auditor", "\u03b1\u03ba\u03b9", *url])  # all Greek, unlike any name in use
    assert r.exit_code == 0, r.output
    assert run.invoke(app, ["audit", "add-auditor", "ace", *url]).exit_code == 0  # the same name re-keys

    r = run.invoke(app, ["audit", "add-auditor", "\uff41\uff44\uff41", *url])  # full-width ａｄａ
    assert r.exit_code == 0 and "auditor ada:" in r.output
    token = re.search(r"token (\S+)", r.output).group(1)
    with sqlite_store.session() as s:
        assert {a.name for a in s.query(schema.Auditor)} == {"admin", "ace", "ada", "\u03b1\u03ba\u03b9"}
    # sign-in looks names up the same way: full-width, or with spaces around, is the same auditor
    assert check_auditor(sqlite_store, "\uff41\uff44\uff41", token) and check_auditor(sqlite_store, " ada ", token)
    make_reviews(sqlite_store, tmp_path, kept=1, discarded=1)
    draw_sample(sqlite_store, CURRENT, kept=1, discarded=1)
    c, _ = _signed_in(sqlite_store, "\uff41\uff44\uff41", token)  # the session is ada's and stays valid
    assert c.get("/items", follow_redirects=False).status_code == 200
    r = run.invoke(app, ["audit", "remove-auditor", "\uff41\uff44\uff41", *url])
    assert r.exit_code == 0 and not check_auditor(sqlite_store, "ada", token)


def test_name_rules():
    assert normalise_name("  Jos\u0065\u0301 O'Brien-Smith_2. ") == "Jos\u00e9 O'Brien-Smith_2."  # NFKC composes
    assert normalise_name("\u0418\u0432\u0430\u043d") == "\u0418\u0432\u0430\u043d"  # one script, not Latin: fine
    assert normalise_name("\u4f50\u85e4\u307e\u308a") == "\u4f50\u85e4\u307e\u308a"  # kanji with kana
    assert normalise_name("\u0939\u093f\u0902\u0926\u0940")  # Devanagari vowel signs are marks on letters
    for bad in ("x\ty", "O\u2019Brien", "a" * 65, "\u0301a", "\u03b1b", "ann\u200b"):
        with pytest.raises(ValueError):
            normalise_name(bad)
    assert skeleton("\u0440\u043e\u0441") == "poc" and skeleton("0l1") == "0l1"  # digits are not folded
    assert confusable_with("\u0440\u043e\u0441", ["poc"]) == "poc" and confusable_with("poc", ["poc"]) is None
    assert confusable_with("Ann", ["ann"]) is None  # case is told apart
