"""The item list (issue 15, part 3): every item, skipped ones included, filtered; a decision changed at any time with
its history kept; audits exported with notes and reason codes."""

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
from engine.audit.sampling import add_auditor, draw_sample
from engine.cli import app
from engine.store import schema


@pytest.fixture
def signed_in(sqlite_store, tmp_path):
    reviews = make_reviews(sqlite_store, tmp_path, kept=2, discarded=2)
    draw_sample(sqlite_store, CURRENT, kept=2, discarded=2)
    c = TestClient(ui.create_app(sqlite_store), headers={"origin": "http://testserver"})
    c.post("/login", data={"name": "ann", "token": add_auditor(sqlite_store, "ann")})
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get(f"/item/{reviews[0]}").text).group(1)
    return sqlite_store, reviews, c, csrf


def _states(html: str) -> list[str]:
    return re.findall(r'<tr class="(undecided|decided|skipped)">', html)


def test_skipped_items_stay_in_the_list_and_filters_work(signed_in):
    store, reviews, c, csrf = signed_in
    order = ui._ordered_items(store)
    c.post("/skip", data={"review_id": order[0], "csrf": csrf})
    c.post("/decide", data={"review_id": order[1], "verdict": "wrong", "reason": "several_objects", "csrf": csrf})
    c.post("/decide", data={"review_id": order[2], "verdict": "correct", "csrf": csrf})
    c.post("/decide", data={"review_id": order[3], "verdict": "correct", "csrf": csrf})
    done = c.get("/").text
    assert 'href="/items?state=skipped">1</a>' in done  # the end of the queue points to the skipped item
    html = c.get("/items").text
    assert _states(html) == ["skipped", "decided", "decided", "decided"]
    assert all(f'href="/item/{rid}"' in html for rid in order)  # each row jumps to its item
    assert _states(c.get("/items?state=skipped").text) == ["skipped"]
    assert _states(c.get("/items?state=undecided").text) == ["skipped"]  # skipped is not decided
    assert _states(c.get("/items?reason=several_objects").text) == ["decided"]
    assert len(_states(c.get("/items?auditor=ann").text)) == 3 and _states(c.get("/items?auditor=bob").text) == []
    assert len(_states(c.get("/items?noun=object").text)) == 4
    kept = _states(c.get("/items?stratum=kept").text)
    discarded = _states(c.get("/items?stratum=discarded").text)
    assert len(kept) + len(discarded) == 3  # the stratum shows on decided items only
    blind = TestClient(ui.create_app(store, reveal="never"), headers={"origin": "http://testserver"})
    blind.post("/login", data={"name": "bob", "token": add_auditor(store, "bob")})
    assert "stratum" not in blind.get("/items").text


def test_a_decision_can_be_changed_any_time_and_the_history_is_kept(signed_in):
    store, reviews, c, csrf = signed_in
    rid = reviews[1]
    c.post("/decide", data={"review_id": rid, "verdict": "correct", "csrf": csrf})
    for other in reviews[2:]:  # later decisions: the first is beyond a short undo now
        c.post("/decide", data={"review_id": other, "verdict": "correct", "csrf": csrf})
    page = c.get(f"/item/{rid}").text  # from the item list
    assert "Your decision: same object" in page
    c.post(
        "/decide",
        data={"review_id": rid, "verdict": "wrong", "reason": "hallucinated", "note": "no dog, a cat", "csrf": csrf},
    )
    with store.session() as s:
        a = s.query(schema.Audit).filter_by(review_id=rid).one()
        assert (a.human_verdict, a.reason, a.note) == (False, "hallucinated", "no dog, a cat")
        events = s.query(schema.AuditEvent).filter_by(review_id=rid).order_by(schema.AuditEvent.created_at).all()
        assert [(e.action, e.human_verdict) for e in events] == [("decide", True), ("decide", False)]


def test_audits_export_as_jsonl_and_csv_with_notes_and_reasons(signed_in):
    store, reviews, c, csrf = signed_in
    note = 'mask on the "wrong" one,\nsee frame 3'
    c.post(
        "/decide",
        data={"review_id": reviews[0], "verdict": "wrong", "reason": "wrong_object", "note": note, "csrf": csrf},
    )
    c.post("/decide", data={"review_id": reviews[1], "verdict": "correct", "csrf": csrf})
    c.post("/undo", data={"csrf": csrf})
    url = ["--database-url", store.url]
    r = CliRunner().invoke(app, ["audit", "export", *url])
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert r.exit_code == 0 and len(rows) == 1
    assert (rows[0]["reason"], rows[0]["note"], rows[0]["same_object"], rows[0]["stratum"]) == (
        "wrong_object",
        note,
        False,
        "kept",
    )
    r = CliRunner().invoke(app, ["audit", "export", "--format", "csv", *url])
    got = list(csv.DictReader(io.StringIO(r.output)))
    assert r.exit_code == 0 and got[0]["note"] == note and got[0]["reason"] == "wrong_object"
    r = CliRunner().invoke(app, ["audit", "export", "--history", *url])
    assert [json.loads(x)["action"] for x in r.output.splitlines()] == ["decide", "decide", "undo"]
    assert CliRunner().invoke(app, ["audit", "export", "--format", "xml", *url]).exit_code == 2


def test_an_export_of_no_audits_says_so_and_is_not_a_success(sqlite_store):
    r = CliRunner().invoke(app, ["audit", "export", "--database-url", sqlite_store.url])
    assert r.exit_code == 4 and "no audits in the store" in r.output
