"""`engine audit gates` on simulated audits: a pool of masklets whose kind is known (good, drifting, flickering,
mostly empty), a Reviewer that keeps good ones more often, a stratified audit sample whose reason codes follow
the kinds. The thresholds it suggests must meet the target on the whole pool, not only on the audited items."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from review_data import ANALYZER_VERSION, LINEAGE
from typer.testing import CliRunner

from engine.api import Engine
from engine.cli import app
from engine.config import load_config
from engine.media import masks
from engine.media.gates import gate_metrics
from engine.store import Store, schema
from engine.store.audits import decide_audit
from engine.store.ids import stable_id

H, W, FRAMES = 48, 64, 8
KINDS = {"good": 0.7, "drift": 0.1, "flicker": 0.1, "sparse": 0.1}


def _masklet(kind: str, rng: np.random.Generator) -> dict[str, dict | None]:
    bw, bh = int(rng.integers(8, 20)), int(rng.integers(6, 14))
    x, y = int(rng.integers(2, W - bw - 12)), int(rng.integers(2, H - bh - 2))
    step = int(rng.integers(0, 3))
    empty = set(rng.choice(FRAMES, size=int(rng.integers(5, 8)), replace=False)) if kind == "sparse" else set()
    if kind == "good" and rng.random() < 0.3:
        empty = {int(rng.integers(0, FRAMES))}  # lost once, as real trackers are
    frames: dict[str, dict | None] = {}
    for k in range(FRAMES):
        m = np.zeros((H, W), bool)
        if k in empty:
            frames[str(k)] = None
            continue
        if kind == "drift" and k >= 2:
            m[:, :] = True  # the background around a hole
            m[y : y + bh, : int(W * rng.uniform(0.05, 0.5))] = False
        elif kind == "flicker" and k % 2:
            m[H - bh - 1 : H - 1, W - bw - 1 : W - 1] = True  # elsewhere, apart from the first place
        else:
            m[y : y + bh, x + step * k : x + step * k + bw] = True
        frames[str(k)] = masks.encode(m)
    return frames


def make_pool(store: Store, n: int, seed: int = 0) -> dict[str, str]:
    """n reviewed objects with masklets of known kinds; returns review id -> kind."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(list(KINDS), size=n, p=list(KINDS.values()))
    out = {}
    with store.session() as s:
        vid = "v" * 32
        s.add(
            schema.Video(
                id=vid, path="pool.mp4", source_root="/x", kind="file", num_frames=FRAMES, fps=8.0, width=W,
                height=H, size_bytes=1,
            )
        )  # fmt: skip
        s.flush()
        for i, kind in enumerate(kinds):
            oid, mid, rid = stable_id("object", i), stable_id("masklet", i), stable_id("review", i)
            frames = _masklet(str(kind), rng)
            q = masks.quality({int(k): v for k, v in frames.items()})
            s.add(schema.VideoObject(id=oid, video_id=vid, noun=f"thing {i}", stage_version=ANALYZER_VERSION))
            s.flush()
            s.add(
                schema.Masklet(
                    id=mid, object_id=oid, backend_version="sim@1", lineage=LINEAGE["segment"], anchor_frame=0,
                    box=[0, 0, 1, 1], grounding_score=0.9, mask_score=0.9, height=H, width=W, frames=frames, **q,
                )
            )  # fmt: skip
            s.flush()
            keep = bool(rng.random() < (0.85 if kind == "good" else 0.35))
            s.add(
                schema.Review(
                    id=rid, object_id=oid, mode="paper", verdict=keep, confidence=0.8, rationale="", model="m",
                    prompt_version="j@1", lineage=LINEAGE["review"], masklet_id=mid,
                )
            )  # fmt: skip
            out[rid] = str(kind)
    return out


def audit(store: Store, kinds: dict[str, str], eng: Engine, per_stratum: int, seed: int = 0) -> None:
    """Draw the stratified sample, then decide each item as its kind says (one in twenty good ones is marked
    wrong for another reason: the gates must ignore those)."""
    eng.audit_sample(kept=per_stratum, discarded=per_stratum, seed=seed)
    rng = np.random.default_rng(seed)
    with store.session() as s:
        drawn = [rid for (rid,) in s.query(schema.AuditItem.review_id)]
    for rid in drawn:
        if kinds[rid] == "good":
            other = rng.random() < 0.05
            decide_audit(store, rid, "ann", not other, "", "wrong_object" if other else None)
        else:
            decide_audit(store, rid, "ann", False, "", "mask_wrong")


def pool_rates(store: Store, kinds: dict[str, str], thresholds: dict[str, float]) -> tuple[float, float]:
    """Removal of bad masklets and loss of good ones over the whole pool, by their known kinds."""
    from engine.audit.gates import fails

    bad = good = bad_out = good_out = 0
    with store.session() as s:
        for rid, frames, iou, border in s.query(
            schema.Review.id, schema.Masklet.frames, schema.Masklet.mean_consecutive_iou, schema.Masklet.border_contact
        ).join(schema.Masklet, schema.Masklet.id == schema.Review.masklet_id):
            out = any(fails(k, t, gate_metrics(frames, iou, border)) for k, t in thresholds.items())
            if kinds[rid] == "good":
                good, good_out = good + 1, good_out + out
            else:
                bad, bad_out = bad + 1, bad_out + out
    return bad_out / bad, good_out / good


@pytest.fixture
def pool(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cfg_file = tmp_path / "engine.toml"
    cfg_file.write_text('# my settings\ndata_dir = "data"\n\n[gates]\nmax_area_share = 0.6  # keep this comment\n')
    cfg = load_config(cfg_file, overrides={"data_dir": str(data)}, environ={})
    eng = Engine(cfg, results="config", environ={})
    kinds = make_pool(eng.store, 600)
    return eng, kinds, cfg_file, data


def test_suggested_gates_meet_the_target_on_the_whole_pool(pool):
    eng, kinds, _, _ = pool
    audit(eng.store, kinds, eng, per_stratum=80)
    g = eng.audit_gates(min_removal=0.5, max_loss=0.05)
    assert g.needed is None and g.n_bad >= 20 and g.n_good >= 20
    removal, loss = pool_rates(eng.store, kinds, g.thresholds)
    print(f"\nsuggested {g.thresholds}\non the audited items (weighted): removal {g.removal}, loss {g.loss}")
    print(f"on the whole pool of {len(kinds)}: removal {removal:.3f}, loss {loss:.3f}")
    assert g.meets_target
    assert removal >= 0.5 and loss <= 0.05
    for e in (g.removal, g.loss):
        assert e.low - 1e-9 <= e.value <= e.high + 1e-9
    from engine.audit.gates import OFF
    from engine.media.gates import GATES

    tightened = {k for k, t in g.thresholds.items() if t != OFF[GATES[k][1]]}
    assert len(tightened) >= 2, g.thresholds  # each bad kind has its own metric: one gate cannot take them all
    for f in g.alone:
        print(f"  {f.key}: AUC {f.auc:.2f}, alone at {f.threshold:.3f} removes {f.removal:.0%}, loses {f.loss:.0%}")
    assert g.pool == len(kinds) and 0 < g.gated_in_pool < len(kinds)


def test_too_few_audits_of_bad_masks_say_how_many_more_instead_of_guessing(pool):
    eng, kinds, _, _ = pool
    audit(eng.store, kinds, eng, per_stratum=10)
    g = eng.audit_gates()
    assert g.thresholds == {} and g.needed is not None and "more audits" in g.needed, g.needed


def test_the_command_prints_the_fit_and_apply_writes_the_config_keeping_its_comments(pool):
    eng, kinds, cfg_file, data = pool
    audit(eng.store, kinds, eng, per_stratum=80)
    args = ["audit", "gates", "--config", str(cfg_file), "--data-dir", str(data), "--set", "split.detector=none"]
    r = CliRunner().invoke(app, [*args, "--apply"], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "Each gate alone" in r.output and "Suggested gates" in r.output and "Reviewer requests" in r.output
    text = cfg_file.read_text()
    assert "# my settings" in text and "# keep this comment" in text
    applied = load_config(cfg_file, environ={}).gates
    assert applied.thresholds() == pytest.approx(eng.audit_gates().thresholds, abs=1e-6)


def test_apply_writes_nothing_when_the_target_is_missed(pool, monkeypatch):
    eng, kinds, cfg_file, data = pool
    audit(eng.store, kinds, eng, per_stratum=80)
    fit = Engine.audit_gates

    def short_of_target(self, *a, **kw):  # the simulation separates too well to miss a target on its own
        g = fit(self, *a, **kw)
        g.removal = dataclasses.replace(g.removal, value=0.2)
        return g

    monkeypatch.setattr(Engine, "audit_gates", short_of_target)
    before = cfg_file.read_text()
    args = ["audit", "gates", "--config", str(cfg_file), "--data-dir", str(data), "--apply"]
    r = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert r.exit_code == 1, r.output
    assert "nothing written" in r.output and cfg_file.read_text() == before
