"""The audit web UI (FastAPI): sign in, audit the queue with the keyboard, undo, a dashboard, and the Runs pages (every
run; a run's funnel, throughput, cost, ETA and failures, from engine/store/run_report.py).

Everything a model wrote is shown through Jinja2 autoescaping, bidi-isolated; media routes take ids and frame
positions, never paths; state-changing requests need the auditor's session, its CSRF token and a same-origin
Origin (login included). A session is checked against the store on every request: re-keying or removing its
auditor ends it, as do an idle and an absolute timeout. Failed sign-ins are throttled per name and per client.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from PIL import Image

from engine.audit.names import lookup_key
from engine.audit.sampling import (
    KAPPA_MIN_ITEMS,
    audit_stats,
    calibration_pool,
    check_auditor,
    hash_token,
    latest_calibration,
    score_sources,
)
from engine.media import masks
from engine.media.overlay import color_for
from engine.media.video import MediaError, Video, fit_within
from engine.sources.ingest import caption_of
from engine.store import Store, audits, run_report, schema

COOKIE = "review_session"
MAX_SIDE = 640
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
IDLE_S = 30 * 60  # a session unused this long ends
ABSOLUTE_S = 12 * 3600  # and any session after this long
MAX_UNDO = 200  # per-session state is bounded
MAX_NOTE = 2000
REASONS = {
    "wrong_object": "wrong object",
    "mask_wrong": "mask wrong or drifting",
    "hallucinated": "description hallucinated",
    "several_objects": "several objects",
    "other": "other",
}
FAILED_LOGINS = 5  # failed sign-ins per name, and per client, within THROTTLE_S before sign-in is refused
THROTTLE_S = 15 * 60
# Login errors are fixed sentences chosen by code: nothing in the URL reaches the page.
LOGIN_ERRORS = {
    "bad": "Unknown name or token.",
    "throttled": f"Too many failed sign-ins: wait {THROTTLE_S // 60} minutes, or ask for a new token.",
    "ended": "Your session ended (signed out elsewhere, re-keyed, removed, or idle too long): sign in again.",
}


@dataclass
class AuditorSession:
    """A signed-in auditor's session in the review UI (not a database session)."""

    auditor: str
    token_sha256: str  # the auditor's token when they signed in: a new one ends this session
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    undo: deque = field(default_factory=lambda: deque(maxlen=MAX_UNDO))  # review ids decided, newest last
    skipped: set[str] = field(default_factory=set)  # audit items only: bounded by the sample
    started: float = field(default_factory=lambda: time.monotonic())
    seen: float = field(default_factory=lambda: time.monotonic())


class _Throttle:
    """Failed sign-ins per key (an auditor's name, a client's address) in a sliding window."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 10_000):
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self.failures: dict[str, deque] = {}

    def _recent(self, key: str, now: float) -> deque:
        q = self.failures.get(key, deque())
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        if len(self.failures) >= self.max_keys:  # bounded: the stalest keys go first
            for k in sorted(self.failures, key=lambda k: self.failures[k][-1] if self.failures[k] else 0)[:1000]:
                del self.failures[k]
        for k in keys:
            q = self._recent(k, now)
            q.append(now)
            self.failures[k] = q

    def clear(self, key: str) -> None:
        self.failures.pop(key, None)


def _to_login(request: Request) -> RedirectResponse:
    """To sign-in; saying why when the browser still held a session that has ended."""
    return RedirectResponse("/login?error=ended" if request.cookies.get(COOKIE) else "/login", status_code=303)


def _same_origin(request: Request) -> bool:
    """The request's Origin (or, without one, its Referer) names this server."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent or sent == "null":
        return False
    origin = urlsplit(sent)
    return (origin.scheme, origin.netloc) == (request.url.scheme, request.headers.get("host", request.url.netloc))


def create_app(store: Store, reveal: str = "after", current: Any = None) -> FastAPI:
    """reveal: "after" shows the Reviewer's verdict, confidence, rationale and the detailed description once the
    auditor has decided (never before: that would anchor the judgement and give the stratum away); "never".
    current: the configuration's versions (engine/store/current.py), for the dashboard's calibration curve."""
    if reveal not in ("after", "never"):
        raise ValueError("reveal is after or never")
    app = FastAPI(title="videorefer-engine review", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static")
    sessions: dict[str, AuditorSession] = {}
    throttle = _Throttle(FAILED_LOGINS, THROTTLE_S)

    def session_of(request: Request) -> AuditorSession | None:
        sid = request.cookies.get(COOKIE, "")
        sess = sessions.get(sid)
        if sess is None:
            return None
        now = time.monotonic()
        stored = audits.auditor_token_sha256(store, sess.auditor)  # re-keyed or removed since sign-in: it is over
        valid = stored is not None and secrets.compare_digest(stored, sess.token_sha256)
        if not valid or now - sess.seen > IDLE_S or now - sess.started > ABSOLUTE_S:
            sessions.pop(sid, None)
            return None
        sess.seen = now
        return sess

    def require(request: Request, csrf: str | None = None) -> AuditorSession:
        sess = session_of(request)
        if sess is None:
            raise HTTPException(401, "sign in first")
        if csrf is not None and not secrets.compare_digest(csrf, sess.csrf):
            raise HTTPException(403, "bad or missing CSRF token")
        return sess

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        if request.method == "POST" and not _same_origin(request):  # cross-site forms, login CSRF included
            response = Response("cross-origin request refused", status_code=403, media_type="text/plain")
        else:
            response = await call_next(request)
        if not request.url.path.startswith("/media/"):
            response.headers["Cache-Control"] = "no-store"  # Back after sign-out shows no item
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        # scripts only from files of this server (review_ui/static); inline styles stay
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self'; style-src 'self' "
            "'unsafe-inline'; script-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, error: str = ""):
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": LOGIN_ERRORS.get(error)})

    @app.post("/login")
    def login(request: Request, name: str = Form(...), token: str = Form(...)):
        name, token = lookup_key(name), token.strip()  # the session, throttle and lookup use the stored form
        client = f"client:{request.client.host if request.client else '-'}"
        if throttle.blocked(f"name:{name}", client):
            return RedirectResponse("/login?error=throttled", status_code=303)
        if not check_auditor(store, name, token):
            throttle.fail(f"name:{name}", client)
            return RedirectResponse("/login?error=bad", status_code=303)
        throttle.clear(f"name:{name}")
        sid = secrets.token_urlsafe(32)
        sessions[sid] = AuditorSession(name, hash_token(token))
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict")
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        require(request, csrf)
        sessions.pop(request.cookies.get(COOKIE, ""), None)
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    def queue(request: Request):
        sess = session_of(request)
        if sess is None:
            return _to_login(request)
        nxt = _next_item(store, sess)
        if nxt is None:
            return TEMPLATES.TemplateResponse(request, "done.html", {"sess": sess, "progress": _progress(store, sess)})
        return RedirectResponse(f"/item/{nxt}", status_code=303)

    @app.get("/item/{review_id}", response_class=HTMLResponse)
    def item(request: Request, review_id: str):
        sess = session_of(request)
        if sess is None:
            return _to_login(request)
        data = _item(store, review_id)
        if data is None:
            raise HTTPException(404, "no such audit item")
        decided = audits.auditor_decision(store, review_id, sess.auditor)
        return TEMPLATES.TemplateResponse(
            request,
            "item.html",
            {
                "sess": sess,
                "item": data,
                "decided": decided,
                "progress": _progress(store, sess),
                "can_undo": bool(sess.undo),
                "reveal": decided is not None and reveal == "after",
                "reasons": REASONS,
                "max_note": MAX_NOTE,
            },
        )

    @app.post("/decide")
    def decide(
        request: Request,
        review_id: str = Form(...),
        verdict: str = Form(...),
        note: str = Form(""),
        reason: str = Form(""),
        csrf: str = Form(""),
    ):
        """verdict "correct": the same object; "wrong": a different object, with an optional reason code."""
        sess = require(request, csrf)
        if verdict not in ("correct", "wrong") or not audits.is_audit_item(store, review_id):
            raise HTTPException(400, "verdict must be correct (same object) or wrong (different), for an audit item")
        if reason and (verdict != "wrong" or reason not in schema.AUDIT_REASONS):
            raise HTTPException(400, f"a reason is for a different object, one of {', '.join(schema.AUDIT_REASONS)}")
        if len(note) > MAX_NOTE:  # refused, never cut
            raise HTTPException(400, f"the note is longer than {MAX_NOTE:,} characters")
        audits.decide_audit(
            store, review_id, sess.auditor, same_object=verdict == "correct", note=note.strip(), reason=reason or None
        )
        if review_id in sess.undo:  # a decision changed: one undo step, not two
            sess.undo.remove(review_id)
        sess.undo.append(review_id)
        # With reveal "after" the item comes back decided, its verdict revealed, until the auditor moves on (the
        # queue's next item is "/"); jumping straight on would hide what the reveal is for. Blind ("never"): on.
        return RedirectResponse(f"/item/{review_id}" if reveal == "after" else "/", status_code=303)

    @app.post("/skip")
    def skip(request: Request, review_id: str = Form(...), csrf: str = Form("")):
        sess = require(request, csrf)
        # only audit items: the set stays bounded
        if len(review_id) > 64 or not audits.is_audit_item(store, review_id):
            raise HTTPException(400, "not an audit item")
        sess.skipped.add(review_id)
        return RedirectResponse("/", status_code=303)

    @app.post("/undo")
    def undo(request: Request, csrf: str = Form("")):
        sess = require(request, csrf)
        if not sess.undo:
            return RedirectResponse("/", status_code=303)
        review_id = sess.undo.pop()
        audits.undo_audit(store, review_id, sess.auditor)
        return RedirectResponse(f"/item/{review_id}", status_code=303)

    @app.get("/items", response_class=HTMLResponse)
    def items(
        request: Request, state: str = "", noun: str = "", auditor: str = "", reason: str = "", stratum: str = ""
    ):
        """Every audit item, skipped ones included, filtered; each row jumps to its item, where a decision can be
        changed at any time. The stratum (the Reviewer's verdict) shows only on items this auditor has decided,
        and only when verdicts are revealed after a decision."""
        sess = session_of(request)
        if sess is None:
            return _to_login(request)
        rows = _item_rows(store, sess, reveal == "after")
        for key, value in (
            ("state", state),
            ("noun", noun.strip().lower()),
            ("auditor", auditor.strip()),
            ("reason", reason),
            ("stratum", stratum),
        ):
            if value:
                rows = [r for r in rows if _matches(r, key, value)]
        return TEMPLATES.TemplateResponse(
            request,
            "items.html",
            {
                "sess": sess,
                "rows": rows,
                "progress": _progress(store, sess),
                "reasons": REASONS,
                "f": {"state": state, "noun": noun, "auditor": auditor, "reason": reason, "stratum": stratum},
                "show_stratum": reveal == "after",
            },
        )

    @app.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request):
        sess = session_of(request)
        if sess is None:
            return _to_login(request)
        rule = request.query_params.get("rule", "majority")
        try:
            st = audit_stats(store, rule=rule)
        except ValueError:
            raise HTTPException(400, "rule is majority, first or adjudicator:<name>") from None
        cal = latest_calibration(store) if current is not None else None
        scores = score_sources(store, current) if cal is not None and current is not None else []
        return TEMPLATES.TemplateResponse(
            request,
            "dashboard.html",
            {
                "sess": sess,
                "st": st,
                "progress": _progress(store, sess),
                "kappa_min": KAPPA_MIN_ITEMS,
                "cal": cal,
                "cal_score": cal.estimates.get("score", "verbal") if cal is not None else None,
                "scores": scores,
            },
        )

    @app.get("/calibration.png")
    def calibration_png(request: Request, score: str = ""):
        """The newest calibration's precision-yield curve, recomputed from the audits as they are now, on its own
        score or on `score` (tokens or verbal: the dashboard shows both where every review has both)."""
        require(request)
        from engine.audit.calibrate import calibrate, plot

        cal = latest_calibration(store) if current is not None else None
        if cal is None:
            raise HTTPException(404, "no calibration yet: engine audit calibrate")
        try:
            pool, _, source = calibration_pool(store, current, cal.rule, score or cal.estimates.get("score", "verbal"))
        except ValueError as e:
            raise HTTPException(404, str(e)) from None
        buf = io.BytesIO()
        curve = calibrate(pool, cal.target)
        curve.score = source
        plot(curve, buf)
        return Response(buf.getvalue(), media_type="image/png")

    @app.get("/runs", response_class=HTMLResponse)
    def runs(request: Request):
        """Every run, newest first (the newest LIST_LIMIT), each linking to its page."""
        sess = session_of(request)
        if sess is None:
            return _to_login(request)
        rows, total = run_report.list_runs(store)
        return TEMPLATES.TemplateResponse(
            request,
            "runs.html",
            {"sess": sess, "rows": rows, "total": total, "running": any(r.status == run_report.RUNNING for r in rows)},
        )

    # before /runs/{run_id}, whose parameter would take "<id>.json" too
    @app.get("/runs/{run_id}.json")
    def run_json(request: Request, run_id: str):
        require(request)
        return JSONResponse(jsonable_encoder(_report_or_404(store, run_id)))

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str):
        sess = session_of(request)
        if sess is None:
            return _to_login(request)
        r = _report_or_404(store, run_id)
        return TEMPLATES.TemplateResponse(
            request,
            "run.html",
            {"sess": sess, "r": r, "funnel": _funnel_bars(r.funnel), "throughput": _line_chart(r.throughput)},
        )

    @app.get("/runs/{run_id}/failures", response_class=HTMLResponse)
    def run_failures(request: Request, run_id: str, code: str = ""):
        """The units of one failure group (an error code) of a run."""
        sess = session_of(request)
        if sess is None:
            return _to_login(request)
        r = _report_or_404(store, run_id)
        units, total = run_report.failed_units(store, run_id, code)
        return TEMPLATES.TemplateResponse(
            request, "run_failures.html", {"sess": sess, "r": r, "code": code, "units": units, "total": total}
        )

    @app.get("/media/{review_id}/{name}")
    def media(request: Request, review_id: str, name: str):
        require(request)
        stem, _, ext = name.partition(".")
        # ASCII digits only ("²".isdigit() is true), and few of them (int() refuses 5,000 digits)
        if not (stem.isascii() and stem.isdigit() and len(stem) <= 6) or ext not in ("jpg", "png", "edge.png"):
            raise HTTPException(404, "no such frame")
        images = _item_images(store, review_id)
        pos = int(stem)
        if images is None or pos >= len(images[0]):
            raise HTTPException(404, "no such frame")
        body = images[{"jpg": 0, "png": 1, "edge.png": 2}[ext]][pos]
        return Response(
            body,
            media_type="image/jpeg" if ext == "jpg" else "image/png",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    return app


# --- runs ------------------------------------------------------------------------------------------

FUNNEL_W = 480  # the longest bar, in SVG units
FUNNEL_ROW = 30
CHART_W, CHART_H, CHART_PAD = 560, 180, 40


def _report_or_404(store: Store, run_id: str) -> run_report.RunReport:
    r = run_report.run_report(store, run_id) if len(run_id) <= 64 else None
    if r is None:
        raise HTTPException(404, "no such run")
    return r


def _funnel_bars(funnel: list[tuple[str, int | None]]) -> list[dict[str, Any]]:
    """Horizontal bars, each as long as its step's count against the largest; a step not known has none."""
    top = max((v for _, v in funnel if v), default=0) or 1
    return [
        {"label": label, "value": v, "y": i * FUNNEL_ROW, "width": round(FUNNEL_W * (v or 0) / top, 1)}
        for i, (label, v) in enumerate(funnel)
    ]


def _line_chart(points: list[tuple[float, float]]) -> dict[str, Any] | None:
    """An SVG polyline of (x, y) points in a CHART_W x CHART_H box with CHART_PAD for the axes' labels."""
    if not points:
        return None
    x_max = max(x for x, _ in points) or 1.0
    y_max = max(y for _, y in points) or 1.0
    w, h = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD

    def at(x: float, y: float) -> tuple[float, float]:
        return round(CHART_PAD + w * x / x_max, 1), round(CHART_PAD + h - h * max(y, 0.0) / y_max, 1)

    xy = [at(x, y) for x, y in points]
    return {
        "points": " ".join(f"{x},{y}" for x, y in xy),
        "dots": xy if len(xy) <= 60 else [],  # a dot per point while they stay apart
        "x_max": x_max,
        "y_max": y_max,
        "box": (CHART_PAD, CHART_PAD, CHART_PAD + w, CHART_PAD + h),
    }


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _usd(v: float | None) -> str:
    if v is None:
        return "—"
    return f"${v:,.2f}" if v >= 1 else f"${v:.4f}"


def _utc(t: datetime | str | None) -> str:
    if isinstance(t, str):  # the live snapshot's "at"
        try:
            return _utc(datetime.fromisoformat(t))
        except ValueError:
            return t
    if t is None:
        return "—"
    return (t.astimezone(UTC) if t.tzinfo else t).strftime("%Y-%m-%d %H:%M:%S UTC")


TEMPLATES.env.filters.update(duration=_duration_text, usd=_usd, utc=_utc)


# --- queries --------------------------------------------------------------------------------------


def _item_rows(store: Store, sess: AuditorSession, reveal: bool) -> list[dict[str, Any]]:
    """The item list: one query per table for every item."""
    order = _ordered_items(store)
    listing = audits.audit_item_list(store)
    rows = []
    for n, rid in enumerate(order, 1):
        decisions = listing.audits.get(rid, [])
        mine = next((a for a in decisions if a.auditor == sess.auditor), None)
        state = "decided" if mine else "skipped" if rid in sess.skipped else "undecided"
        rows.append(
            {
                "n": n,
                "review_id": rid,
                "noun": listing.nouns.get(rid, ""),
                "state": state,
                "mine": None if mine is None else ("same" if mine.same_object else "different"),
                "reason": mine.reason if mine else None,
                "auditors": sorted(a.auditor for a in decisions),
                "reasons": sorted({a.reason for a in decisions if a.reason}),
                "stratum": listing.strata[rid] if reveal and mine else None,
            }
        )
    return rows


def _matches(row: dict[str, Any], key: str, value: str) -> bool:
    if key == "state":
        return row["state"] == value or (value == "undecided" and row["state"] == "skipped")
    if key == "noun":
        return value in row["noun"].lower()
    if key == "auditor":
        return value in row["auditors"]
    if key == "reason":
        return value in row["reasons"]
    return row["stratum"] is not None and row["stratum"].split(":")[0] == value


def _ordered_items(store: Store) -> list[str]:
    ids = audits.audit_item_ids(store)
    # a fixed shuffle, so kept and discarded items are interleaved and the auditor cannot guess the stratum
    return sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())


def _next_item(store: Store, sess: AuditorSession) -> str | None:
    done = audits.decided_review_ids(store, sess.auditor)
    return next((i for i in _ordered_items(store) if i not in done and i not in sess.skipped), None)


def _progress(store: Store, sess: AuditorSession) -> dict[str, int]:
    items = set(_ordered_items(store))
    done = audits.decided_review_ids(store, sess.auditor) & items
    return {"done": len(done), "total": len(items)}


def _item(store: Store, review_id: str) -> dict[str, Any] | None:
    """What the item page shows of an audit item; None when the review is not one."""
    view = audits.audit_item_view(store, review_id)
    if view is None:
        return None
    return {
        "review_id": review_id,
        "noun": view.noun,
        "appearance": view.texts.get("appearance", ""),
        "motion": view.texts.get("motion", ""),
        "region": view.texts.get("region", ""),
        "keep": view.keep,
        "confidence": view.confidence,
        "rationale": view.rationale,
        "mode": view.mode,
        "judge": view.judge,
        "p_same": view.p_same,
        "score_source": view.score_source,
        "frames": len(view.frame_indices),
        "frame_indices": view.frame_indices,
        "caption": caption_of(view.captions) or "",
        # exists only for kept objects: shown after the decision, as the verdict is
        "detailed": view.detailed or "",
    }


class _NoFrames(Exception):
    pass


ItemImages = tuple[list[bytes], list[bytes], list[bytes]]  # per sampled frame: JPEG, mask PNG, contour PNG


def _item_images(store: Store, review_id: str) -> ItemImages | None:
    """The item's sampled frames (JPEG), its mask filled and as a contour (transparent PNGs), only for audit items
    of this store.
    Only successes are cached: an item drawn while the server runs shows its frames."""
    try:
        return _item_images_cached(store, review_id)
    except _NoFrames:
        return None


@lru_cache(maxsize=16)
def _item_images_cached(store: Store, review_id: str) -> ItemImages:
    judged = audits.audit_item_masks(store, review_id)
    if judged is None:
        raise _NoFrames(review_id)
    try:
        reader = Video(judged.video_path)
        frames = reader.frames([int(k) + judged.first_frame for k in judged.frame_keys])
    except (MediaError, IndexError):
        raise _NoFrames(review_id) from None
    size = fit_within(reader.info.width, reader.info.height, MAX_SIDE)
    color = np.array(color_for(3), dtype=np.uint8)  # yellow: stands out on most footage
    jpgs, pngs, edges = [], [], []
    for frame, rle in zip(frames, judged.rles):
        buf = io.BytesIO()
        Image.fromarray(frame).resize(size).save(buf, format="JPEG", quality=85)
        jpgs.append(buf.getvalue())
        m = masks.decode(rle) if rle is not None else np.zeros(frame.shape[:2], bool)
        m = np.asarray(Image.fromarray(m).resize(size, Image.Resampling.NEAREST))
        pngs.append(_png(m, color))
        edges.append(_png(m & ~_eroded(_eroded(m)), color))  # a 2-pixel contour: what is under it stays visible
    return jpgs, pngs, edges


def _eroded(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    out[1:] &= m[:-1]
    out[:-1] &= m[1:]
    out[:, 1:] &= m[:, :-1]
    out[:, :-1] &= m[:, 1:]
    return out


def _png(m: np.ndarray, color: np.ndarray) -> bytes:
    """A transparent PNG with the mask's pixels in colour."""
    rgba = np.zeros((*m.shape, 4), np.uint8)
    rgba[m, :3] = color
    rgba[m, 3] = 255
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()
