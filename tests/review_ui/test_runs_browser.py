"""The run page in a real browser follows a real run: open while the run is in flight, it redraws itself (no reload
by anyone) until it shows the run's final state.

An `engine run` in a subprocess (the fake endpoint, slowed so the run stays in flight a while; the fake segmentor)
writes its live snapshot to a store that the review app, served by uvicorn in a thread, reads. Chromium comes from
the system as in test_browser.py. With SCREENSHOTS_DIR set, the test saves runs-list.png, run-in-flight.png and
run-finished.png there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from engine_runs import RUN_FLAGS
from fake_endpoint import FakeEndpoint
from synthetic import Shape, render, write_frame_folder, write_mp4

from engine.audit.sampling import add_auditor
from engine.store import Store, run_report
from review_ui.app import create_app

REPO = Path(__file__).resolve().parents[2]
ENGINE = str(Path(sys.executable).with_name("engine"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = os.environ.get("SCREENSHOTS_DIR")
# Per answer while the test watches the run in flight: its videos then need several times the heartbeat's 10 s, so a
# snapshot with units done lands while the run still runs. Then 0, so it ends soon.
IN_FLIGHT_LATENCY_S = 6.0
RUN_DEADLINE_S = 400


@pytest.fixture
def source(tmp_path, bikes_mp4) -> Path:
    """As tests/pipelines/conftest.py's: two generated clips, real footage, and a frame folder without a caption."""
    src = tmp_path / "videos"
    src.mkdir()
    write_mp4(src / "shapes.mp4", render(24, 96, 72)[0])
    (src / "shapes.txt").write_text("A red square slides past a blue circle.")
    other = (Shape("green square", "square", (40, 170, 60), 20, (0.1, 0.6), (2.0, -1.0)),)
    write_mp4(src / "green.mp4", render(16, 80, 60, shapes=other)[0])
    (src / "green.txt").write_text("A green square rises next to a white wall.")
    shutil.copy(bikes_mp4, src / "bikes.mp4")
    (src / "bikes.txt").write_text("A cyclist rides a bike past a car and a bus.")
    write_frame_folder(src / "JPEGImages" / "seq", render(12, 64, 48)[0])
    return src


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
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()


@pytest.fixture
def run_store(tmp_path) -> Iterator[Store]:
    """The run's store, made (and migrated) before the run starts, so the run and the UI open the same file."""
    s = Store(f"sqlite:///{tmp_path / 'data' / 'engine.sqlite'}")
    yield s
    s.dispose()


@pytest.fixture
def server(run_store) -> Iterator[str]:
    """The review app on that store, served by uvicorn in a thread."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(run_store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def _running_run(store: Store, run: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + RUN_DEADLINE_S
    while time.monotonic() < deadline and run.poll() is None:
        rows, _ = run_report.list_runs(store, limit=5)
        found = [r.id for r in rows if r.status == run_report.RUNNING]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"the run never showed as running (exit {run.poll()}):\n{log.read_text()[-3000:]}")


def _shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


@pytest.mark.timeout(900)
def test_the_run_page_follows_a_run_from_in_flight_to_its_end(source, tmp_path, run_store, server, page):
    token = add_auditor(run_store, "ann")
    log = tmp_path / "run.log"
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": str(REPO / "tests" / "support"),
        "OPENAI_API_KEY": "sk-test",
        "COLUMNS": "120",
    }
    base = server
    with FakeEndpoint(latency_s=IN_FLIGHT_LATENCY_S) as fe, log.open("w") as out:
        env["OPENAI_BASE_URL"] = fe.base_url
        cmd = [ENGINE, "run", "--source", str(source), "--pipelines", "detailed", "--data-dir", str(tmp_path / "data")]
        run = subprocess.Popen([*cmd, *RUN_FLAGS], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            page.goto(base + "/login")
            page.fill("#name", "ann")
            page.fill("#token", token)
            with page.expect_navigation():
                page.click("#signin")
            run_id = _running_run(run_store, run, log)

            page.goto(f"{base}/runs/{run_id}")
            assert page.get_attribute("#live", "data-state") == "running"
            assert page.locator('script[src="/static/runs.js"]').count() == 1
            page.evaluate("window.__same_page = true")  # a reload would drop it
            # the snapshot's stages appear and count up while the run is in flight, drawn by the page itself
            page.wait_for_function(
                """() => {
                    const live = document.getElementById("live");
                    if (live.dataset.state !== "running") return true;
                    return [...document.querySelectorAll("#stages tr[data-stage] td:nth-child(2)")]
                        .some(td => +td.textContent > 0);
                }""",
                timeout=RUN_DEADLINE_S * 1000,
            )
            assert page.get_attribute("#live", "data-state") == "running", "the run ended before it was seen"
            assert page.inner_text("#state") == "running" and page.locator("#eta").count() == 1
            _shot(page, "run-in-flight.png")
            fe.latency_s = 0.0  # seen in flight: let it end
            page.wait_for_selector('#live:not([data-state="running"])', timeout=RUN_DEADLINE_S * 1000)
            assert run.wait(timeout=RUN_DEADLINE_S) == 0, log.read_text()[-3000:]
        finally:
            if run.poll() is None:
                run.terminate()  # ours, by its pid
                run.wait(timeout=60)

    # the same page, never reloaded, now shows the run as it ended: its final state and the summary's funnel
    assert page.evaluate("window.__same_page") is True
    page.wait_for_selector("#state.finished")  # the last redraw may land a moment after the row closed
    final = run_report.run_report(run_store, run_id)
    assert final is not None and final.status == "finished" and final.funnel_from == "summary"
    shown = page.eval_on_selector_all("#funnel g.step", "gs => gs.map(g => [g.dataset.step, g.dataset.value])")
    assert shown == [[k, "" if v is None else str(v)] for k, v in final.funnel]
    assert page.locator("#eta").count() == 0 and "so far" not in page.inner_text("#duration")
    _shot(page, "run-finished.png")

    page.goto(base + "/runs")
    assert page.locator(f'tr[data-run="{run_id}"] td.state').inner_text() == "finished"
    assert page.locator('script[src="/static/runs.js"]').count() == 0  # nothing in flight: nothing redraws
    _shot(page, "runs-list.png")
    assert violations == []
