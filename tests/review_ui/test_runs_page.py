"""The review UI's Runs pages over HTTP: the list, a run's page (funnel, throughput, cost, ETA, slowest stage,
failures by reason), a failure group's units, the refresh script only while a run is in flight, sign-in."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from engine.audit.sampling import add_auditor
from engine.store import run_report, schema
from review_ui.app import create_app

RUNNING, FINISHED, ABORTED, OLD = ("1" * 32, "2" * 32, "3" * 32, "4" * 32)


def _role(requests: int, cost_usd: float) -> dict[str, float]:
    return dict(requests=requests, ok=requests, errors=0, cache_hits=0, tokens_in=1, tokens_out=1, cost_usd=cost_usd)


EVIL = '<script>window.__xss = 1</script><img src=x onerror="window.__xss=2">'
LIVE = {
    "at": "2026-12-06T12:00:00+00:00",
    "stages": {"caption": [4, 4], "analyze": [3, 4], "annotate": [1, 4], "review": [0, 4]},  # 8 of 16: half done
    "units_per_minute": 4.0,
    "objects": {"found": 9, "grounded": 7, "reviewed": 3, "kept": 2},
    "samples": {"detailed": 2, "short": 0, "qa": 1},
    "roles": {"annotator": _role(10, 0.25), "reviewer": _role(3, 0.05)},
    "stage_seconds": {"caption": [4, 2.0], "analyze": [3, 9.0], "annotate": [1, 30.0]},
    "videos_in_flight": 2,
    "history": [[0, 0, 0], [60, 4, 3], [120, 8, 9]],  # 3 then 6 objects per minute
}
SUMMARY = {
    "videos": 5,
    "objects": 40,
    "grounded": 30,
    "reviewed": 30,
    "kept": 20,
    "samples": {"detailed": 20, "qa": 12},
    "cost_usd": 1.5,
    "planned_cost_usd": 2.0,
}


def _run(rid: str, status: str, minutes_ago: float, **kw) -> schema.Run:
    started = schema.utcnow() - timedelta(minutes=minutes_ago)
    return schema.Run(id=rid, engine_version="0", config={}, source="/src", started_at=started, status=status, **kw)


def _failure(rid: str, unit: str, code: str, message: str, quarantined: bool, video: str | None = None):
    return schema.Failure(
        id=f"f{unit}{code}"[:32].ljust(32, "0"),
        unit_kind="video" if video else "file",
        unit_id=unit,
        video_id=video,
        stage="annotate",
        lineage="l",
        error_code=code,
        message=message,
        attempts=3,
        quarantined=quarantined,
        run_id=rid,
    )


def _video(path: str) -> schema.Video:
    return schema.Video(
        id="v" * 32, path=path, source_root="/src", kind="file", num_frames=1, fps=1, width=1, height=1, size_bytes=1
    )


@pytest.fixture
def runs_store(sqlite_store):
    """A running run with a full snapshot, a finished one, an aborted one with its reason, and one from before the
    live snapshot (live NULL); failures with HTML in their messages."""
    with sqlite_store.session() as s:
        s.add(
            _run(
                RUNNING,
                "running",
                2,
                command="run --pipelines detailed,qa",
                live=LIVE,
                summary={"planned_cost_usd": 0.9},
            )
        )
        s.add(
            _run(
                FINISHED,
                "finished",
                60,
                command="run --pipelines detailed",
                provenance={"pipelines": ["detailed"]},
                summary=SUMMARY,
                live={**LIVE, "stages": {"caption": [5, 5]}, "units_per_minute": None},
                finished_at=schema.utcnow() - timedelta(minutes=55),
            )
        )
        s.add(
            _run(
                ABORTED,
                "aborted",
                120,
                command="run --pipelines short",
                reason=f"aborted: {EVIL}",
                summary={"videos": 2},
            )
        )
        s.add(
            _run(
                OLD,
                "finished",
                300,
                command="run --pipelines short",
                summary={"videos": 3, "samples": 7, "cost_usd": 0.0},
                finished_at=schema.utcnow() - timedelta(minutes=290),
            )
        )
        s.add(_video("street/<b>bikes</b>.mp4"))
        s.flush()
        s.add_all(
            [
                _failure(RUNNING, "u1", "bad_json", f"model said {EVIL}", True, "v" * 32),
                _failure(RUNNING, "u2", "bad_json", "model said nothing", False),
                _failure(RUNNING, "u3", "timeout", "read timed out", True),
                _failure(FINISHED, "u4", "timeout", "another run's", True),
            ]
        )
    return sqlite_store


@pytest.fixture
def client(runs_store):
    token = add_auditor(runs_store, "ann")
    c = TestClient(create_app(runs_store), headers={"origin": "http://testserver"})
    r = c.post("/login", data={"name": "ann", "token": token}, follow_redirects=False)
    assert r.status_code == 303
    return c


def _text(html: str, element_id: str) -> str:
    """The text of the element with this id, tags removed, whitespace collapsed."""
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</(dd|p|td|code|table|svg)>', html, re.S)
    assert m, f"no #{element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", m.group(1)).split())


def _funnel(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-step="(\w+)" data-value="(\d*)"', html))


def test_sign_in_required_and_unknown_runs_are_404(runs_store):
    add_auditor(runs_store, "ann")
    c = TestClient(create_app(runs_store))
    for path in ("/runs", f"/runs/{RUNNING}", f"/runs/{RUNNING}/failures?code=timeout"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    assert c.get(f"/runs/{RUNNING}.json").status_code == 401


def test_unknown_run_is_404(client):
    assert client.get("/runs/" + "9" * 32).status_code == 404
    assert client.get("/runs/" + "9" * 32 + ".json").status_code == 404
    assert client.get("/runs/" + "9" * 32 + "/failures?code=x").status_code == 404
    assert client.get("/runs/" + "x" * 500).status_code == 404


def test_the_list_shows_every_run_newest_first_with_its_figures(client):
    html = client.get("/runs").text
    assert re.findall(r'data-run="(\w+)"', html) == [RUNNING, FINISHED, ABORTED, OLD]
    rows = {
        rid: " ".join(re.sub(r"<[^>]+>", " ", row).split())
        for rid, row in re.findall(r'data-run="(\w+)">(.*?)</tr>', html, re.S)
    }
    # running: units from the snapshot's stages, samples and cost so far from it
    assert "running" in rows[RUNNING] and "detailed, qa" in rows[RUNNING] and "so far" in rows[RUNNING]
    assert " 4 3 $0.3000 " in rows[RUNNING] + " "
    assert "detailed 5 32 $1.50" in rows[FINISHED] and "5 min 00 s" in rows[FINISHED]
    assert "short 2 — —" in rows[ABORTED] and "aborted:" in rows[ABORTED]
    assert "short 3 7 $0.0000" in rows[OLD]
    assert f'href="/runs/{FINISHED}"' in html
    # the reason is text, never markup
    assert "<script>window.__xss" not in html and "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html
    assert "/static/runs.js" in html  # a run is in flight: the list redraws itself


def test_a_running_runs_page_draws_its_snapshot(client):
    html = client.get(f"/runs/{RUNNING}").text
    assert 'data-state="running"' in html and '<script src="/static/runs.js" defer></script>' in html
    assert _text(html, "state") == "running"
    assert _funnel(html) == {
        "clips": "4",
        "objects": "9",
        "grounded": "7",
        "reviewed": "3",
        "kept": "2",
        "samples": "3",
    }
    # 8 stage-units left at 4 a minute
    assert _text(html, "eta") == "2 min 00 s (8 units left)" and _text(html, "done").startswith("50%")
    assert _text(html, "slowest") == "annotate: 30 s over 1 units, 30.0 s per unit"
    assert _text(html, "cost") == "$0.3000" and _text(html, "planned") == "$0.9000"
    assert _text(html, "projected") == "$0.6000"  # $0.30 at half way
    assert _text(html, "in-flight") == "2"
    # objects per minute between history points: 3 then 6, drawn as a line with its top at 6
    assert 'id="throughput"' in html and "<polyline" in html and ">6</text>" in html
    groups = re.findall(r'data-code="(\w+)">.*?>(\d+)</td><td>(\d+)</td>', html, re.S)
    assert groups == [("bad_json", "2", "1"), ("timeout", "1", "1")]  # units, quarantined
    assert f'href="/runs/{RUNNING}/failures?code=bad_json"' in html
    assert "<script>window.__xss" not in html and "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html


def test_a_finished_runs_page_draws_its_summary_and_does_not_refresh(client):
    html = client.get(f"/runs/{FINISHED}").text
    assert 'data-state="finished"' in html and "runs.js" not in html and 'id="eta"' not in html
    assert _funnel(html) == {
        "clips": "5",
        "objects": "40",
        "grounded": "30",
        "reviewed": "30",
        "kept": "20",
        "samples": "32",
    }
    assert _text(html, "cost") == "$1.50" and _text(html, "planned") == "$2.00"
    assert _text(html, "duration") == "5 min 00 s"
    assert re.findall(r'data-code="(\w+)"', html) == ["timeout"]  # its own failures only


def test_an_aborted_run_says_why_escaped(client):
    html = client.get(f"/runs/{ABORTED}").text
    assert 'data-state="aborted"' in html and "runs.js" not in html
    assert _text(html, "reason").startswith("aborted: &lt;script&gt;window.__xss")
    assert "<img src=x" not in html and 'id="no-failures"' in html


def test_a_run_from_before_the_snapshot_still_renders(client):
    html = client.get(f"/runs/{OLD}").text
    assert _text(html, "no-history") == "No history recorded." and _text(html, "live-at") == "none recorded"
    assert _text(html, "slowest") == "—" and _text(html, "projected") == "—" and _text(html, "planned") == "—"
    assert _funnel(html) == {"clips": "3", "objects": "", "grounded": "", "reviewed": "", "kept": "", "samples": "7"}
    assert _text(html, "cost") == "$0.0000"


def test_a_failure_groups_page_lists_its_units_escaped(client):
    html = client.get(f"/runs/{RUNNING}/failures", params={"code": "bad_json"}).text
    rows = re.findall(r"<tr>\s*<td>(\w+)</td><td><code>(\w+)</code></td>", html)
    assert sorted(rows) == [("file", "u2"), ("video", "u1")]
    assert "street/&lt;b&gt;bikes&lt;/b&gt;.mp4" in html and "<b>bikes</b>" not in html
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html and "<script>window" not in html
    other = client.get(f"/runs/{RUNNING}/failures", params={"code": "<nope>"}).text
    assert 'id="no-units"' in other and "&lt;nope&gt;" in other


def test_the_json_has_the_pages_figures(client):
    got = client.get(f"/runs/{RUNNING}.json").json()
    assert got["status"] == "running" and got["eta_s"] == 120.0 and got["slowest"]["name"] == "annotate"
    assert got["throughput"] == [[1.0, 3.0], [2.0, 6.0]] and got["projected_cost_usd"] == pytest.approx(0.6)


def test_snapshots_with_missing_or_odd_keys_give_dashes_not_errors(store):
    """Older engines wrote fewer keys; a value of the wrong type is read as unknown."""
    odd = {
        "stages": {"caption": "x", "analyze": [1]},
        "units_per_minute": "fast",
        "history": [[1], "x", [5, 1, None]],
        "roles": {"annotator": "?"},
        "stage_seconds": {"caption": [0, 1.5]},
        "objects": None,
        "samples": 3,
    }
    with store.session() as s:
        s.add(_run(RUNNING, "running", 1, command="run --dry-run", live=odd, summary={}))
        s.add(
            _run(
                OLD,
                "interrupted",
                10,
                command="run --pipelines short",
                heartbeat_at=schema.utcnow() - timedelta(minutes=4),
            )
        )
    r = run_report.run_report(store, RUNNING)
    assert r is not None and r.stages == [] and r.eta_s is None and r.throughput == [] and r.cost_usd is None
    assert r.slowest == run_report.SlowStage("caption", 0, 1.5, None) and r.pipelines == []
    assert dict(r.funnel)["samples"] == 3 and dict(r.funnel)["objects"] is None
    old = run_report.run_report(store, OLD)
    assert old is not None and old.duration_s == pytest.approx(360, abs=5)  # until its last heartbeat
    rows, total = run_report.list_runs(store, limit=1)
    assert total == 2 and [x.id for x in rows] == [RUNNING]


def test_failure_groups_and_their_units_on_each_backend(store):
    with store.session() as s:
        s.add(_run(RUNNING, "running", 1, command="run --pipelines qa"))
        s.add(_video("a.mp4"))
        s.flush()
        s.add_all(
            [_failure(RUNNING, "u1", "bad_json", "b", True, "v" * 32), _failure(RUNNING, "u2", "bad_json", "a", False)]
        )
    r = run_report.run_report(store, RUNNING)
    assert r is not None and r.failures == [run_report.FailureGroup("bad_json", 2, 1, "a")]
    units, total = run_report.failed_units(store, RUNNING, "bad_json", limit=1)
    assert total == 2 and len(units) == 1
    units, _ = run_report.failed_units(store, RUNNING, "bad_json")
    assert {(u.unit_id, u.path, u.quarantined) for u in units} == {("u1", "a.mp4", True), ("u2", None, False)}
