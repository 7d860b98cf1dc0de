"""Sessions a team can trust (issue 15, part 1): revoked with their auditor, timed out, throttled sign-in, Origin
checked on every POST, fixed login messages, no-store pages, bidi-isolated model text, no 500 on odd media names,
no negative caching, bounded per-session state, and a warning for a non-loopback bind."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from review_data import CURRENT, make_reviews
from typer.testing import CliRunner

import review_ui.app as ui
from engine.audit.sampling import add_auditor, draw_sample, remove_auditor
from engine.store import schema

ORIGIN = {"origin": "http://testserver"}


@pytest.fixture
def setup(sqlite_store, tmp_path):
    reviews = make_reviews(sqlite_store, tmp_path, kept=2, discarded=2)
    draw_sample(sqlite_store, CURRENT, kept=2, discarded=2)
    token = add_auditor(sqlite_store, "ann")
    return sqlite_store, reviews, token, tmp_path


def _client(store) -> TestClient:
    return TestClient(ui.create_app(store), headers=ORIGIN)


def _login(c, token, name="ann"):
    return c.post("/login", data={"name": name, "token": token}, follow_redirects=False)


def _csrf(c, review_id):
    return re.search(r'name="csrf" value="([^"]+)"', c.get(f"/item/{review_id}").text).group(1)


def test_rekeying_or_removing_an_auditor_ends_their_sessions(setup):
    store, reviews, token, _ = setup
    c = _client(store)
    assert _login(c, token).status_code == 303
    csrf = _csrf(c, reviews[0])
    add_auditor(store, "ann")  # re-keyed: the old token's session is over
    r = c.get(f"/item/{reviews[0]}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?error=ended"
    assert c.post("/decide", data={"review_id": reviews[0], "verdict": "correct", "csrf": csrf}).status_code == 401
    with store.session() as s:
        assert s.query(schema.Audit).count() == 0  # nothing written by the ended session

    new = add_auditor(store, "ann")
    assert _login(c, new).status_code == 303 and c.get(f"/item/{reviews[0]}").status_code == 200
    assert remove_auditor(store, "ann") and not remove_auditor(store, "ann")
    assert c.get("/", follow_redirects=False).headers["location"] == "/login?error=ended"
    assert "Your session ended" in c.get("/login?error=ended").text


def test_remove_auditor_on_the_command_line(setup, tmp_path):
    from engine.cli import app

    store, _, _, _ = setup
    url = store.url
    r = CliRunner().invoke(app, ["audit", "remove-auditor", "ann", "--database-url", url])
    assert r.exit_code == 0 and "removed" in r.output
    r = CliRunner().invoke(app, ["audit", "remove-auditor", "ann", "--database-url", url])
    assert r.exit_code == 1 and "no auditor named" in r.output


def test_sessions_expire_when_idle_and_after_an_absolute_time(setup, monkeypatch):
    store, reviews, token, _ = setup
    now = [1000.0]
    monkeypatch.setattr(ui.time, "monotonic", lambda: now[0])
    c = _client(store)
    _login(c, token)
    for _ in range(30):  # active all along, a step under the idle limit each time ...
        now[0] += ui.IDLE_S - 60
        if now[0] - 1000.0 > ui.ABSOLUTE_S:
            break
        assert c.get(f"/item/{reviews[0]}", follow_redirects=False).status_code == 200
    # ... until the absolute limit
    assert c.get(f"/item/{reviews[0]}", follow_redirects=False).headers["location"] == "/login?error=ended"
    _login(c, token)
    now[0] += ui.IDLE_S + 1  # idle too long
    assert c.get("/", follow_redirects=False).headers["location"] == "/login?error=ended"


def test_sign_in_is_throttled_per_name_and_per_client_and_trims_its_inputs(setup):
    store, _, token, _ = setup
    c = _client(store)
    for _ in range(ui.FAILED_LOGINS):
        assert _login(c, "wrong").headers["location"] == "/login?error=bad"
    r = _login(c, token)  # the right token, after too many wrong ones: refused, with a clear message
    assert r.headers["location"] == "/login?error=throttled" and "review_session" not in r.cookies
    assert "Too many failed sign-ins" in c.get("/login?error=throttled").text
    bob = add_auditor(store, "bob")
    assert _login(c, bob, "bob").headers["location"] == "/login?error=throttled"  # the same client, another name

    other = _client(store)  # a new server: a token with spaces around it (pasted) signs in
    assert _login(other, f"  {bob} \n", " bob ").headers["location"] == "/"


def test_every_post_needs_a_same_origin_origin_login_included(setup):
    store, reviews, token, _ = setup
    bare = TestClient(ui.create_app(store))
    assert _login(bare, token).status_code == 403  # no Origin, no Referer: a login CSRF is refused
    evil = TestClient(ui.create_app(store), headers={"origin": "http://evil.example"})
    assert _login(evil, token).status_code == 403
    by_referer = TestClient(ui.create_app(store), headers={"referer": "http://testserver/login"})
    assert _login(by_referer, token).status_code == 303
    c = _client(store)
    _login(c, token)
    csrf = _csrf(c, reviews[0])
    r = c.post(
        "/decide",
        data={"review_id": reviews[0], "verdict": "correct", "csrf": csrf},
        headers={"origin": "http://evil.example"},
    )
    assert r.status_code == 403


def test_pages_are_not_stored_and_login_errors_are_fixed_sentences(setup):
    store, reviews, token, _ = setup
    c = _client(store)
    page = c.get("/login?error=<b>you+have+been+hacked</b>")
    assert "hacked" not in page.text and page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "same-origin"
    assert "Unknown name or token." in c.get("/login?error=bad").text
    _login(c, token)
    assert c.get(f"/item/{reviews[0]}").headers["cache-control"] == "no-store"


def test_model_text_is_bidi_isolated(setup):
    store, reviews, token, _ = setup
    with store.session() as s:
        obj = s.query(schema.VideoObject).first()
        obj.noun = "\u202eevil"  # RIGHT-TO-LEFT OVERRIDE: would reverse what follows it on screen
        review_id = s.query(schema.Review).filter_by(object_id=obj.id).one().id
    c = _client(store)
    _login(c, token)
    html = c.get(f"/item/{review_id}").text
    assert '<h2 id="noun"><bdi>\u202eevil</bdi></h2>' in html


@pytest.mark.parametrize("name", ["\u00b2.jpg", "1" * 5000 + ".jpg", "\u0661.png", "0x1.jpg", "1e3.jpg"])
def test_malformed_media_names_are_404_never_500(setup, name):
    store, reviews, token, _ = setup
    c = _client(store)
    _login(c, token)
    assert c.get(f"/media/{reviews[0]}/{name}").status_code == 404


def test_a_failed_frame_lookup_is_not_cached(setup):
    store, reviews, token, src = setup
    (src / "clip.mp4").rename(src / "away.mp4")  # the video is missing while the server runs ...
    ui._item_images_cached.cache_clear()
    c = _client(store)
    _login(c, token)
    assert c.get(f"/media/{reviews[0]}/0.jpg").status_code == 404
    (src / "away.mp4").rename(src / "clip.mp4")  # ... and back: its frames show without a restart
    assert c.get(f"/media/{reviews[0]}/0.jpg").status_code == 200


def test_skip_takes_only_audit_items(setup):
    store, reviews, token, _ = setup
    app = ui.create_app(store)
    c = TestClient(app, headers=ORIGIN)
    _login(c, token)
    csrf = _csrf(c, reviews[0])
    assert c.post("/skip", data={"review_id": "x" * 10_000, "csrf": csrf}).status_code == 400
    assert c.post("/skip", data={"review_id": "nope", "csrf": csrf}).status_code == 400
    assert c.post("/skip", data={"review_id": reviews[0], "csrf": csrf}, follow_redirects=False).status_code == 303


def test_a_non_loopback_bind_warns_and_says_how_to_use_tls(setup, monkeypatch):
    import uvicorn

    from engine.cli import app
    from engine.cli.audit import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("localhost") and not _loopback("0.0.0.0")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    store = setup[0]
    r = CliRunner().invoke(app, ["review", "--host", "0.0.0.0", "--database-url", store.url], env={"COLUMNS": "200"})
    flat = " ".join(r.output.split())
    assert r.exit_code == 0 and "warning: --host 0.0.0.0" in flat and "TLS" in flat and "ssh -L" in flat
    r = CliRunner().invoke(app, ["review", "--database-url", store.url], env={"COLUMNS": "200"})
    assert "warning" not in r.output
