"""Blind, unambiguous judging (issue 15, part 2): the Reviewer's verdict, confidence and rationale, and the detailed
description, stay hidden until the auditor has decided; the question names what is judged; "different object"
takes a reason code; notes are refused when too long, never cut; a changed decision is one undo step."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from review_data import CURRENT, make_reviews

import review_ui.app as ui
from engine.audit.sampling import add_auditor, draw_sample
from engine.store import schema
from engine.store.ids import stable_id


@pytest.fixture
def items(sqlite_store, tmp_path):
    reviews = make_reviews(sqlite_store, tmp_path, kept=2, discarded=2, evil=True)
    with sqlite_store.session() as s:
        review = s.get(schema.Review, reviews[0])
        s.add(
            schema.Description(
                id=stable_id("d", review.object_id, "detailed"),
                object_id=review.object_id,
                kind="detailed",
                text="A red square slides right.",
                model="m",
                prompt_version="p@1",
            )
        )
        s.add(
            schema.Caption(
                id="c" * 32,
                video_id=s.get(schema.VideoObject, review.object_id).video_id,
                source="sidecar",
                text="Shapes move on a wall.",
            )
        )
    draw_sample(sqlite_store, CURRENT, kept=2, discarded=2)
    return sqlite_store, reviews, add_auditor(sqlite_store, "ann")


def _signed_in(store, token, reveal="after") -> TestClient:
    c = TestClient(ui.create_app(store, reveal=reveal), headers={"origin": "http://testserver"})
    assert c.post("/login", data={"name": "ann", "token": token}, follow_redirects=False).status_code == 303
    return c


def _csrf(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_the_reviewers_verdict_is_hidden_until_the_auditor_decides(items):
    store, reviews, token = items
    c = _signed_in(store, token)
    html = c.get(f"/item/{reviews[0]}").text
    assert 'id="verdict"' not in html and "confidence" not in html and "A red square slides right." not in html
    assert "kept" not in html.replace("kept object", "")  # not even in words
    assert "Same object (Y)" in html and "Different object (N)" in html and "same object?" in html
    assert "Shapes move on a wall." in html and "1 of 4" in html  # the caption, and where the frame is
    for label in ui.REASONS.values():
        assert label in html
    r = c.post(
        "/decide",
        data={
            "review_id": reviews[0],
            "verdict": "wrong",
            "reason": "mask_wrong",
            "note": "drifts to the circle",
            "csrf": _csrf(html),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    after = c.get(f"/item/{reviews[0]}").text
    assert 'id="verdict" class="keep">kept' in after and "A red square slides right." in after
    assert "&lt;script&gt;window.__xss" in after and "<script>window.__xss" not in after  # the rationale, escaped
    assert "different object (mask wrong or drifting); note: <bdi>drifts to the circle</bdi>" in after
    with store.session() as s:
        a = s.query(schema.Audit).one()
        assert (a.human_verdict, a.reason, a.note) == (False, "mask_wrong", "drifts to the circle")

    never = _signed_in(store, token, reveal="never")
    assert 'id="revealed"' not in never.get(f"/item/{reviews[0]}").text


def test_bad_reasons_and_long_notes_are_refused_not_cut(items):
    store, reviews, token = items
    c = _signed_in(store, token)
    csrf = _csrf(c.get(f"/item/{reviews[1]}").text)
    for data in (
        {"verdict": "correct", "reason": "mask_wrong"},
        {"verdict": "wrong", "reason": "meh"},
        {"verdict": "wrong", "note": "x" * (ui.MAX_NOTE + 1)},
    ):
        assert c.post("/decide", data={"review_id": reviews[1], "csrf": csrf, **data}).status_code == 400
    assert 'maxlength="2000"' in c.get(f"/item/{reviews[1]}").text
    with store.session() as s:
        assert s.query(schema.Audit).count() == 0


def test_changing_a_decision_is_one_undo_step(items):
    store, reviews, token = items
    c = _signed_in(store, token)
    csrf = _csrf(c.get(f"/item/{reviews[2]}").text)
    for verdict in ("correct", "wrong", "correct"):
        c.post("/decide", data={"review_id": reviews[2], "verdict": verdict, "csrf": csrf})
    c.post("/undo", data={"csrf": csrf})
    with store.session() as s:
        assert s.query(schema.Audit).count() == 0
    assert "disabled" in c.get(f"/item/{reviews[2]}").text.split('id="undo"')[1].split("</form>")[0]


def test_the_mask_as_a_contour(items):
    store, reviews, token = items
    c = _signed_in(store, token)
    fill, edge = c.get(f"/media/{reviews[0]}/1.png"), c.get(f"/media/{reviews[0]}/1.edge.png")
    assert fill.status_code == edge.status_code == 200 and edge.content[:4] == b"\x89PNG"
    import io

    import numpy as np
    from PIL import Image

    alpha = lambda r: np.asarray(Image.open(io.BytesIO(r.content)))[..., 3] > 0  # noqa: E731
    f, e = alpha(fill), alpha(edge)
    assert e.any() and (e <= f).all() and e.sum() < f.sum()  # the contour is a part of the fill's pixels


def test_the_dashboard_counts_items_names_its_rule_and_shows_kappa_per_pair(items):
    store, reviews, token = items
    with store.session() as s:
        for who, verdict in (("ann", True), ("bob", False)):
            s.add(
                schema.Audit(
                    id=stable_id("a", reviews[0], who), review_id=reviews[0], auditor=who, human_verdict=verdict
                )
            )
    c = _signed_in(store, token)
    html = c.get("/dashboard").text
    assert '<strong id="n-audited">1</strong> (2 decisions; 1 items labelled by several auditors' in html
    assert '<strong id="rule">majority</strong>' in html and "too few items (under 20)" in html
    assert "<td>ann · bob</td><td>1</td>" in html
    assert '<strong id="rule">first</strong>' in c.get("/dashboard?rule=first").text
    assert c.get("/dashboard?rule=loudest").status_code == 400


def test_a_decision_comes_back_revealed_when_reveal_is_after_and_moves_on_when_never(items):
    store, reviews, token = items
    for reveal, to in (("after", f"/item/{reviews[0]}"), ("never", "/")):
        c = _signed_in(store, token, reveal=reveal)
        csrf = _csrf(c.get(f"/item/{reviews[0]}").text)
        data = {"review_id": reviews[0], "verdict": "correct", "csrf": csrf}
        r = c.post("/decide", data=data, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, to)
        page = c.get(f"/item/{reviews[0]}").text
        assert 'id="next" class="next" href="/"' in page and 'data-decided="1"' in page  # -> / Enter: next item
        assert ('id="revealed"' in page) == (reveal == "after")
    other = c.get(f"/item/{reviews[1]}").text  # undecided: no way on but a decision or a skip
    assert 'id="next"' not in other and 'data-decided="0"' in other
    assert "checked" not in other.split('id="reasons"')[1].split("</p>")[0]  # no reason chosen for the auditor


def test_the_dashboard_with_no_audits_shows_no_numbers(items):
    store, reviews, token = items
    c = _signed_in(store, token)
    html = c.get("/dashboard").text
    metrics = html.split('<table id="metrics">')[1].split("</table>")[0]
    assert metrics.count("<td>no audits yet</td>") == 4 and metrics.count("<td>-</td>") == 12
    assert "0.00" not in html and "1.00" not in html and "No audits yet" in html

    with store.session() as s:  # one discarded item audited: precision has no kept items to count yet
        rid = next(r.id for r in s.query(schema.Review).filter_by(verdict=False))
        s.add(schema.Audit(id=stable_id("a", rid, "ann"), review_id=rid, auditor="ann", human_verdict=False))
    metrics = c.get("/dashboard").text.split('<table id="metrics">')[1].split("</table>")[0]
    assert "<td>precision</td><td>-</td><td>-</td><td>-</td><td>no kept items audited yet</td>" in metrics
    assert "<td>accuracy</td><td>1.00</td>" in metrics and "no audits yet" not in metrics
