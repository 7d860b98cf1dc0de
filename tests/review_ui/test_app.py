"""The review UI over HTTP: sign-in, CSRF, escaping of model text, media that serves only the store's frames."""

import re

import pytest
from fastapi.testclient import TestClient
from review_data import CURRENT, make_reviews

from engine.audit.sampling import add_auditor, draw_sample
from engine.store import schema
from review_ui.app import create_app


@pytest.fixture
def client(sqlite_store, tmp_path):
    reviews = make_reviews(sqlite_store, tmp_path, kept=2, discarded=2, evil=True)
    draw_sample(sqlite_store, CURRENT, kept=2, discarded=2)
    token = add_auditor(sqlite_store, "ann")
    c = TestClient(create_app(sqlite_store), headers={"origin": "http://testserver"})  # as a browser's form posts
    return c, token, reviews, sqlite_store


def _login(c, token):
    r = c.post("/login", data={"name": "ann", "token": token}, follow_redirects=False)
    assert r.status_code == 303 and "review_session" in r.cookies
    return c


def _csrf(html):
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_sign_in_required_and_wrong_tokens_refused(client):
    c, token, reviews, _ = client
    assert c.get("/", follow_redirects=False).headers["location"] == "/login"
    assert c.get(f"/media/{reviews[0]}/0.jpg").status_code == 401
    r = c.post("/login", data={"name": "ann", "token": "nope"}, follow_redirects=False)
    assert "error" in r.headers["location"] and "review_session" not in r.cookies
    assert c.post("/decide", data={"review_id": reviews[0], "verdict": "correct", "csrf": "x"}).status_code == 401


def test_model_text_is_escaped(client):
    c, token, reviews, _ = client
    _login(c, token)
    html = c.get(f"/item/{reviews[0]}").text
    assert "<script>window.__xss" not in html and "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html
    assert 'onerror="window.__xss=2"' not in html and "&#34;&gt;&lt;img src=x onerror=" in html
    assert c.get("/dashboard").status_code == 200


def test_decisions_need_the_csrf_token_and_undo_works(client):
    c, token, reviews, store = client
    _login(c, token)
    page = c.get(f"/item/{reviews[1]}").text
    assert c.post("/decide", data={"review_id": reviews[1], "verdict": "correct"}).status_code == 403
    assert c.post("/decide", data={"review_id": reviews[1], "verdict": "correct", "csrf": "forged"}).status_code == 403
    r = c.post(
        "/decide",
        data={"review_id": reviews[1], "verdict": "wrong", "note": "other object", "csrf": _csrf(page)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with store.session() as s:
        audit = s.query(schema.Audit).one()
        assert (audit.review_id, audit.auditor, audit.human_verdict, audit.note) == (
            reviews[1],
            "ann",
            False,
            "other object",
        )
    assert c.post("/undo", data={"csrf": _csrf(page)}, follow_redirects=False).status_code == 303
    with store.session() as s:
        assert s.query(schema.Audit).count() == 0
    bad = c.post("/decide", data={"review_id": "not-an-item", "verdict": "correct", "csrf": _csrf(page)})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/media/{rid}/../../../etc/passwd",
        "/media/{rid}/..%2F..%2Fetc%2Fpasswd",
        "/media/../../etc/passwd",
        "/media/{rid}/99.jpg",
        "/media/{rid}/0.txt",
        "/media/unknown/0.jpg",
        "/media/{rid}/-1.jpg",
        "/media/{rid}/%2Fetc%2Fpasswd",
    ],
)
def test_media_serves_only_the_stores_frames(client, path):
    c, token, reviews, _ = client
    _login(c, token)
    r = c.get(path.format(rid=reviews[0]))
    assert r.status_code in (400, 404), (path, r.status_code)
    ok = c.get(f"/media/{reviews[0]}/0.jpg")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg" and ok.content[:2] == b"\xff\xd8"
    png = c.get(f"/media/{reviews[0]}/3.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_review_binds_to_loopback_by_default():
    import inspect

    from engine.cli.audit import review

    assert inspect.signature(review).parameters["host"].default == "127.0.0.1"


def test_a_clips_frames_are_decoded_from_its_source_at_its_first_frame(sqlite_store, tmp_path):
    """An item of a clip (docs/clips.md) shows the clip's frames: its keys count from the clip's first frame."""
    import io

    import numpy as np
    from PIL import Image
    from synthetic import render, write_mp4

    reviews = make_reviews(sqlite_store, tmp_path, kept=1, discarded=0)
    frames, _ = render(8, 96, 72)  # what make_reviews wrote, now frames 8..15 of a source whose first 8 are black
    write_mp4(tmp_path / "clip.mp4", np.concatenate([np.zeros_like(frames), frames]))
    with sqlite_store.session() as s:
        video = s.query(schema.Video).one()
        video.first_frame, video.parent_id, video.num_frames = 8, "p" * 32, 8
    draw_sample(sqlite_store, CURRENT, kept=1, discarded=0)
    c = TestClient(create_app(sqlite_store), headers={"origin": "http://testserver"})
    _login(c, add_auditor(sqlite_store, "ann"))
    r = c.get(f"/media/{reviews[0]}/0.jpg")
    assert r.status_code == 200
    shown = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=float)
    assert abs(shown.mean() - frames[0].mean()) < 10 and shown.mean() > 100  # not the black frame 0 of the source
