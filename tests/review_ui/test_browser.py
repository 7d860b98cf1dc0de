"""The review UI in a real browser: Playwright driving Debian's Chromium, headless.

Screenshots go to test-artifacts/ at the repository root. The browser comes from the system
(`make browser` installs Debian's chromium); no test downloads one. Where none is installed the
test is skipped with that reason, except under REQUIRE_BROWSER=1 (CI), where it fails.
"""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from review_data import CURRENT, make_reviews

from engine.audit.sampling import add_auditor, draw_sample
from engine.store import schema
from engine.store.ids import stable_id
from review_ui.app import create_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def server(sqlite_store, tmp_path):
    make_reviews(sqlite_store, tmp_path, kept=3, discarded=3, evil=True)
    draw_sample(sqlite_store, CURRENT, kept=3, discarded=3)
    token = add_auditor(sqlite_store, "ann")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(sqlite_store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", token, sqlite_store
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def page():
    if CHROMIUM is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("no chromium on PATH: run `make browser` (apt-get install chromium)")
        pytest.skip("no chromium on PATH: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        pg = browser.new_page(viewport={"width": 1280, "height": 800})
        yield pg
        browser.close()


def test_audit_five_items_with_the_keyboard_undo_one_and_see_the_dashboard(server, page):
    base, token, store = server
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(base + "/")
    page.fill("#name", "ann")
    page.fill("#token", token)
    page.click("#signin")
    page.goto(base + "/dashboard")
    assert page.inner_text("#n-audited") == "0"
    page.goto(base + "/")

    keys = ["y", "n", "y", "y", "n"]
    seen = []
    for i, key in enumerate(keys):
        page.wait_for_selector("#noun")
        seen.append(page.url.rsplit("/", 1)[-1])
        assert page.inner_text("#progress").startswith(f"{i} / 6")
        if i == 0:
            page.wait_for_function("document.getElementById('frame').complete")
            page.keyboard.press("ArrowRight")  # scrub one frame
            page.wait_for_function("document.getElementById('frame').src.endsWith('/1.jpg')")
            page.screenshot(path=str(ARTIFACTS / "review_item.png"), full_page=True)
        with page.expect_navigation():
            page.keyboard.press(key)
            if key == "n":
                page.keyboard.press("Enter")  # N asks for a reason; Enter records it without one
        assert page.url.endswith(seen[-1]) and page.is_visible("#revealed")  # decided: the verdict shows
        if i < len(keys) - 1:
            with page.expect_navigation():
                page.keyboard.press("ArrowRight")  # and the auditor moves on
    assert len(set(seen)) == 5  # five different items
    assert page.evaluate("window.__xss") is None  # the model text with <script> and onerror never ran

    with page.expect_navigation():
        page.keyboard.press("u")  # undo the last decision: that item again, undecided
    assert page.locator("#revealed").count() == 0
    assert page.url.endswith(seen[-1]) and page.inner_text("#progress").startswith("4 / 6")

    with store.session() as s:
        audits = {a.review_id: a.human_verdict for a in s.query(schema.Audit).filter_by(auditor="ann")}
    assert audits == {rid: key == "y" for rid, key in zip(seen[:4], keys[:4])}

    page.goto(base + "/items")  # the item list: four decided, two not
    assert page.locator("tr.decided").count() == 4 and page.locator("tr.undecided").count() == 2
    page.screenshot(path=str(ARTIFACTS / "review_items.png"), full_page=True)

    page.goto(base + "/dashboard")
    assert page.inner_text("#n-audited") == "4"
    with store.session() as s:
        kept = {r.id: r.verdict for r in s.query(schema.Review)}
    tp = sum(1 for rid, ok in audits.items() if kept[rid] and ok)
    assert page.inner_text("#tp") == f"TP {tp}"
    page.screenshot(path=str(ARTIFACTS / "review_dashboard.png"), full_page=True)
    assert (ARTIFACTS / "review_item.png").stat().st_size > 5000


def test_keys_ignore_repeats_and_modifiers_and_work_after_the_slider_under_a_strict_csp(server, page):
    base, token, store = server
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(base + "/")
    page.fill("#name", "ann")
    page.fill("#token", token)
    with page.expect_navigation():
        page.click("#signin")
    page.wait_for_selector("#noun")
    first = page.url
    csp = page.evaluate("fetch('/').then(r => r.headers.get('content-security-policy'))")
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]

    page.keyboard.press("Control+s")  # saving the page is not a skip
    page.wait_for_timeout(500)
    assert page.url == first
    page.keyboard.down("y")  # a held key: the first press decides, its auto-repeats decide nothing more
    page.wait_for_selector("#next")  # the item again, decided
    for _ in range(5):
        page.keyboard.down("y")  # auto-repeat events carry repeat = true
    page.keyboard.up("y")
    assert page.url == first
    with store.session() as s:
        assert s.query(schema.Audit).count() == 1  # one decision, not several
        assert s.query(schema.AuditEvent).count() == 1  # and not the same one again

    with page.expect_navigation():
        page.keyboard.press("ArrowRight")  # on to the next item
    second = page.url
    assert second != first
    assert page.is_hidden("#keys")
    page.keyboard.press("?")  # the list of keys
    assert page.is_visible("#keys")
    page.keyboard.press("?")
    page.click("#opacity")  # the slider has focus now; Y must still decide
    with page.expect_navigation():
        page.keyboard.press("y")
    assert page.url == second and page.is_visible("#next")
    with store.session() as s:
        assert s.query(schema.Audit).count() == 2
    assert violations == [] and page.evaluate("window.__xss") is None


def _sign_in(page, base, token):
    page.goto(base + "/login")
    page.fill("#name", "ann")
    page.fill("#token", token)
    with page.expect_navigation():
        page.click("#signin")


def _audit(store, review_id):
    with store.session() as s:
        a = s.query(schema.Audit).filter_by(review_id=review_id, auditor="ann").one_or_none()
        return None if a is None else (a.human_verdict, a.reason)


def _item_is_fresh(page):
    """Nothing of the item before carried over: no reason chosen, no reason prompt, nothing revealed."""
    page.wait_for_selector("#noun")
    assert page.evaluate("[...document.querySelectorAll('input[name=reason]')].every(r => !r.checked)")
    assert page.is_hidden("#choose-hint") and page.locator("#revealed").count() == 0
    assert page.locator("#next").count() == 0


def test_a_reason_before_or_after_n_is_recorded_and_the_verdict_shows_until_the_auditor_moves_on(server, page):
    """The issue: N then 2 recorded no reason and pre-selected 2 on the next item; after a decision the page jumped
    on, so the revealed verdict was never seen."""
    base, token, store = server
    with store.session() as s:
        kept = {r.id: r.verdict for r in s.query(schema.Review)}
        for r in s.query(schema.Review).filter_by(verdict=True):  # what ships with a kept object
            s.add(
                schema.Description(
                    id=stable_id("d", r.object_id, "detailed"),
                    object_id=r.object_id,
                    kind="detailed",
                    text=f"<b>Detailed</b> {r.id[:6]}: a red square slides right.",
                    model="m",
                    prompt_version="p@1",
                )
            )
    ARTIFACTS.mkdir(exist_ok=True)
    _sign_in(page, base, token)
    page.goto(base + "/dashboard")  # no audits yet: no metric reads 0.00
    assert "no audits yet" in page.inner_text("#metrics") and "0.00" not in page.inner_text("#metrics")
    page.screenshot(path=str(ARTIFACTS / "review_dashboard_no_audits.png"), full_page=True)
    page.goto(base + "/")
    rid = lambda: page.url.rsplit("/", 1)[-1]  # noqa: E731

    # (a) a reason first, then N: recorded at once, with that reason; the page stays, the verdict revealed
    _item_is_fresh(page)
    first = rid()
    page.keyboard.press("2")
    with page.expect_navigation():
        page.keyboard.press("n")
    assert rid() == first and _audit(store, first) == (False, "mask_wrong")
    assert page.inner_text("#verdict") == ("kept" if kept[first] else "discarded")
    assert "different object (mask wrong or drifting)" in page.inner_text("#decided")

    # (c) -> moves on; the next item has no reason chosen and nothing revealed
    with page.expect_navigation():
        page.keyboard.press("ArrowRight")
    second = rid()
    assert second != first
    _item_is_fresh(page)

    # (b) N first: it records nothing yet, it asks for the reason; the digit records the decision with it
    page.keyboard.press("n")
    assert page.is_visible("#choose-hint") and page.inner_text("#no").startswith("Confirm")
    page.wait_for_timeout(300)
    assert rid() == second and _audit(store, second) is None
    page.keyboard.press("Escape")  # cancelled: nothing chosen, nothing asked
    assert page.is_hidden("#choose-hint")
    page.keyboard.press("n")
    with page.expect_navigation():
        page.keyboard.press("4")
    assert rid() == second and _audit(store, second) == (False, "several_objects")
    assert "different object (several objects)" in page.inner_text("#decided")

    # Enter moves on too; N then Enter records a different object without a reason
    with page.expect_navigation():
        page.keyboard.press("Enter")
    third = rid()
    assert third not in (first, second)
    _item_is_fresh(page)
    page.keyboard.press("n")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert _audit(store, third) == (False, None)

    # (d) a kept item: after the decision its verdict, confidence, rationale and detailed description are on the
    # page (escaped), and they stay there until the auditor moves on
    target = next(r for r, k in kept.items() if k and _audit(store, r) is None)
    page.goto(base + f"/item/{target}")
    _item_is_fresh(page)
    assert "Detailed" not in page.inner_text("body")  # blind before the decision
    page.keyboard.press("3")
    with page.expect_navigation():
        page.keyboard.press("n")
    assert page.is_visible("#revealed") and page.inner_text("#verdict") == "kept"
    assert "confidence 0.80" in page.inner_text("#revealed")
    assert page.inner_text("#detailed") == f"<b>Detailed</b> {target[:6]}: a red square slides right."
    page.wait_for_timeout(500)
    assert rid() == target and page.is_visible("#next")
    page.screenshot(path=str(ARTIFACTS / "review_item_after_decision.png"), full_page=True)
    with page.expect_navigation():
        page.keyboard.press("ArrowRight")
    assert rid() not in (first, second, third, target)
    _item_is_fresh(page)
    with store.session() as s:
        assert s.query(schema.Audit).count() == 4
    assert page.evaluate("window.__xss") is None
