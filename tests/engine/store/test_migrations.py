"""Upgrading a store made by the previous release's migrations (revision 0002), with data in it, loses nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from engine.store.db import Store, alembic_config

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RLE = {"size": [4, 4], "counts": "04"}


def _rows() -> dict[str, list[dict]]:
    """One or more rows in every table of revision 0002, in insertion order."""
    v, o, m, r = "v" * 32, "o" * 32, "m" * 32, "r" * 32
    return {
        "runs": [
            dict(
                id="run1" + "0" * 28,
                command="run --pipelines detailed",
                status="finished",
                engine_version="0.1.0",
                config=json.dumps({"k": 1}),
                source="/src",
                summary=json.dumps({"videos": 1}),
                started_at=NOW,
                finished_at=NOW,
            )
        ],
        "videos": [
            dict(
                id=v,
                path="a.mp4",
                source_root="/src",
                kind="file",
                num_frames=10,
                fps=25.0,
                width=4,
                height=4,
                size_bytes=123,
                created_at=NOW,
            )
        ],
        "captions": [dict(id="c" * 32, video_id=v, source="sidecar", text="A man.", created_at=NOW, updated_at=NOW)],
        "model_calls": [
            dict(
                id="mc1" + "0" * 29,
                request_hash="h1" + "0" * 62,
                agent="annotator",
                model="gpt",
                endpoint="http://x",
                status="ok",
                tokens_in=100,
                tokens_out=20,
                cost_usd=0.5,
                latency_s=1.5,
                response=json.dumps({"parsed": {"description": "d"}}),
                error=None,
                run_id="run1" + "0" * 28,
                created_at=NOW,
            ),
            dict(
                id="mc2" + "0" * 29,
                request_hash="h2" + "0" * 62,
                agent="reviewer",
                model="gpt",
                endpoint="http://x",
                status="error",
                tokens_in=0,
                tokens_out=0,
                cost_usd=0.0,
                latency_s=0.1,
                response=None,
                error="http_503: down",
                run_id="run1" + "0" * 28,
                created_at=NOW,
            ),
        ],
        "failures": [
            dict(
                id="f" * 32,
                unit_kind="video",
                unit_id=v,
                stage="detailed.analyze",
                attempts=3,
                error_code="http_400",
                message="bad",
                quarantined=True,
                run_id="run1" + "0" * 28,
                created_at=NOW,
                updated_at=NOW,
            )
        ],
        "objects": [
            dict(
                id=o,
                video_id=v,
                noun="man",
                instance=0,
                is_subject=True,
                stage_version="analyzer@1|gpt",
                status="grounded",
                created_at=NOW,
            )
        ],
        "samples": [
            dict(
                id="s" * 32,
                data_type="detailed",
                qa_type=None,
                video_id=v,
                object_ids=json.dumps([o]),
                conversations=json.dumps(
                    [{"from": "human", "value": "<video>\n<region>"}, {"from": "gpt", "value": "A man."}]
                ),
                annotation=json.dumps([{"3": {"segmentation": RLE}}]),
                mode="single",
                split=None,
                run_id="run1" + "0" * 28,
                created_at=NOW,
            )
        ],
        "descriptions": [
            dict(
                id=f"d{k}" + "0" * 30,
                object_id=o,
                kind=kind,
                text=f"{kind} text",
                model="gpt",
                prompt_version=f"p_{kind}@1",
                model_call_id="mc1" + "0" * 29,
                created_at=NOW,
            )
            for k, kind in enumerate(("appearance", "motion", "region", "detailed"))
        ],
        "masklets": [
            dict(
                id=m,
                object_id=o,
                backend_version="grounded_sam2@1",
                anchor_frame=3,
                box=json.dumps([0, 0, 2, 2]),
                grounding_score=0.9,
                mask_score=0.8,
                height=4,
                width=4,
                frames=json.dumps({"3": RLE}),
                coverage=1.0,
                area_variation=0.0,
                mean_consecutive_iou=1.0,
                empty_frames=0,
                border_contact=0.0,
                created_at=NOW,
            )
        ],
        "reviews": [
            dict(
                id=r,
                object_id=o,
                mode="paper",
                verdict=True,
                confidence=0.9,
                rationale="same",
                region_description_id="d2" + "0" * 30,
                model="gpt",
                prompt_version="reviewer_judge@1",
                created_at=NOW,
            )
        ],
        "audits": [dict(id="a" * 32, review_id=r, auditor="ann", human_verdict=True, note="ok", created_at=NOW)],
        "auditors": [dict(name="ann", token_sha256="t" * 64, created_at=NOW)],
        "audit_items": [dict(review_id=r, stratum="kept", population=1, seed=0, drawn_at=NOW)],
    }


# Columns a later migration drops on purpose: 0013 keys model_calls by request_hash, and with the hashed id goes the
# one reference to it, which no engine ever filled.
DROPPED = {("model_calls", "id"), ("descriptions", "model_call_id")}
# 0014: the ids of a video's units, and every reference to them, begin with the video's prefix (all rows here are
# of video v)
PREFIXED = {
    ("objects", "id"),
    ("masklets", "id"),
    ("masklets", "object_id"),
    ("descriptions", "id"),
    ("descriptions", "object_id"),
    ("reviews", "id"),
    ("reviews", "object_id"),
    ("reviews", "masklet_id"),
    ("reviews", "region_description_id"),
    ("samples", "id"),
    ("audits", "review_id"),
    ("audit_items", "review_id"),
}
PREFIXED_LISTS = {("samples", "object_ids"), ("reviews", "description_ids")}


def _ids_by_video(name: str, row: dict, prefix: str = "v" * 8) -> dict:
    """A row as 0014 leaves it: with its video's prefix on each id of a video's unit."""
    out = dict(row)
    for column, value in row.items():
        if (name, column) in PREFIXED and value is not None:
            out[column] = prefix + value
        elif (name, column) in PREFIXED_LISTS and isinstance(value, list):  # (these rows hold the lists as text)
            out[column] = [prefix + x for x in value]
    return out


def _snapshot(conn, tables) -> dict[str, list[dict]]:
    out = {}
    for name, columns in tables.items():
        t = sa.Table(name, sa.MetaData(), autoload_with=conn)
        rows = conn.execute(sa.select(*(t.c[c] for c in columns)).order_by(*(t.c[c] for c in columns[:1]))).all()
        out[name] = [dict(zip(columns, row)) for row in rows]
    return out


def _insert(conn, name: str, batch: list[dict]) -> None:
    conn.execute(sa.Table(name, sa.MetaData(), autoload_with=conn).insert(), batch)


def _release_store(conn) -> dict[str, list[dict]]:
    """The schema the previous release created (0002), with `_rows()` in it; returns those rows."""
    command.upgrade(alembic_config(conn), "0002")
    rows = _rows()
    for name, batch in rows.items():
        _insert(conn, name, batch)
    return rows


def _migrate_to(url: str, revision: str) -> None:
    """Upgrade to `revision` as Store does to the head (SQLite's foreign keys off while tables are copied)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # outside SQLite's transaction: pysqlite begins one before DML only
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        with conn.begin():
            command.upgrade(alembic_config(conn), revision)
    engine.dispose()


def _upgrade_with_data(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        rows = _release_store(conn)
        tables = {name: [c for c in batch[0] if (name, c) not in DROPPED] for name, batch in rows.items()}
        before = _snapshot(conn, tables)
    Store(url).dispose()  # opening the store applies the new migrations
    with engine.connect() as conn:
        after = _snapshot(conn, tables)
        requests = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text("SELECT role, status, tokens_in, tokens_out, cost_usd, run_id FROM requests ORDER BY role")
            )
        ]
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
    for name in tables:  # every row, every old column, the same value (its ids with their video's prefix)
        assert after[name] == [_ids_by_video(name, row) for row in before[name]], name
    # the old ledger's calls now count in the request log, so totals over old runs are unchanged
    assert requests == [
        {
            "role": "annotator",
            "status": "ok",
            "tokens_in": 100,
            "tokens_out": 20,
            "cost_usd": 0.5,
            "run_id": "run1" + "0" * 28,
        },
        {
            "role": "reviewer",
            "status": "error",
            "tokens_in": 0,
            "tokens_out": 0,
            "cost_usd": 0.0,
            "run_id": "run1" + "0" * 28,
        },
    ]


def test_upgrade_from_0002_keeps_every_row_on_sqlite(tmp_path):
    _upgrade_with_data(f"sqlite:///{tmp_path / 'old.sqlite'}")


def _in_a_fresh_database(pg_database: str, check) -> None:
    """check(url) on a PostgreSQL database of its own, dropped afterwards (migrations start from nothing)."""
    admin = sa.create_engine(pg_database, isolation_level="AUTOCOMMIT")
    name = f"engine_migrate_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        check(sa.make_url(pg_database).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.mark.postgres
def test_upgrade_from_0002_keeps_every_row_on_postgresql(pg_database):
    _in_a_fresh_database(pg_database, _upgrade_with_data)


def _natural_keys_both_ways(url: str) -> None:
    """0012 keys completions and gates by their unique keys and drops their hashed ids; its downgrade computes the
    ids again, equal to what the engine wrote before."""
    from engine.store.ids import stable_id

    v, o, m = "v" * 32, "o" * 32, "m" * 32
    gates = [
        dict(object_id=o, lineage=lin, masklet_id=m, passed=lin == "g1" * 16, gate=None if lin == "g1" * 16 else "iou",
             value=0.2, threshold=0.5, metrics=json.dumps({"iou": 0.2}), thresholds=json.dumps({"iou": 0.5}),
             run_id=None, created_at=NOW)
        for lin in ("g1" * 16, "g2" * 16)
    ]  # fmt: skip
    completions = [
        dict(video_id=v, unit_id=unit, stage=stage, lineage="l" * 32, run_id=None, created_at=NOW, dropped=None)
        for unit, stage in ((v, "analyze"), (o, "segment"), (o, "gate"))
    ]
    ids = {
        "gates": {stable_id("gate", g["object_id"], g["lineage"]) for g in gates},
        "completions": {stable_id("completion", c["unit_id"], c["stage"], c["lineage"]) for c in completions},
    }
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _release_store(conn)
        command.upgrade(alembic_config(conn), "0011")
        for name, batch in (("gates", gates), ("completions", completions)):
            _insert(conn, name, [dict(r, id=i) for r, i in zip(batch, sorted(ids[name]))])
    columns = {"gates": list(gates[0]), "completions": list(completions[0])}

    def snapshot(conn) -> dict[str, list[dict]]:  # in an order that does not depend on the key
        return {k: sorted(rows, key=repr) for k, rows in _snapshot(conn, columns).items()}

    with engine.connect() as conn:
        before = snapshot(conn)
    _migrate_to(url, "0012")
    with engine.begin() as conn:
        after = snapshot(conn)
        for name in columns:
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            assert "id" not in table.c
            assert [c.name for c in table.primary_key.columns] == (
                ["object_id", "lineage"] if name == "gates" else ["video_id", "unit_id", "stage", "lineage"]
            )
        assert after == before  # every row, every other column
        assert "ix_requests_request_hash" not in {i["name"] for i in sa.inspect(conn).get_indexes("requests")}
        command.downgrade(alembic_config(conn), "0011")
        assert "ix_requests_request_hash" in {i["name"] for i in sa.inspect(conn).get_indexes("requests")}
        for name in columns:
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            assert set(conn.execute(sa.select(table.c.id)).scalars()) == ids[name]
            assert [c.name for c in table.primary_key.columns] == ["id"]
        assert snapshot(conn) == before
    Store(url).dispose()  # and up again
    engine.dispose()


def test_natural_keys_of_completions_and_gates_both_ways_on_sqlite(tmp_path):
    _natural_keys_both_ways(f"sqlite:///{tmp_path / 'old.sqlite'}")


@pytest.mark.postgres
def test_natural_keys_of_completions_and_gates_both_ways_on_postgresql(pg_database):
    _in_a_fresh_database(pg_database, _natural_keys_both_ways)


def _answers_by_hash_both_ways(url: str) -> None:
    """0013 keys model_calls by request_hash, dropping the hashed id and the never-filled reference to it, and adds
    requests' (role, sent_at) index; its downgrade computes the ids again, equal to what the engine wrote."""
    from sqlalchemy.exc import IntegrityError

    from engine.store.ids import stable_id

    calls = [
        dict(request_hash=f"{i}" * 64, agent="annotator", model="m", endpoint="http://x", status="ok", tokens_in=9,
             tokens_out=3, cost_usd=0.0, latency_s=0.1, response=json.dumps({"parsed": {"n": i}}), error=None,
             run_id=None, video_id="v" * 32, created_at=NOW)
        for i in range(3)
    ]  # fmt: skip
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _release_store(conn)
        command.upgrade(alembic_config(conn), "0012")
        _insert(conn, "model_calls", [dict(c, id=stable_id("model_call", c["request_hash"])) for c in calls])
    columns = {
        "model_calls": [c for c in calls[0] if c != "response"],  # JSON: not comparable on PostgreSQL
        "descriptions": ["id", "object_id", "kind", "text", "model", "prompt_version"],
    }

    def snapshot(conn) -> dict[str, list[dict]]:
        return {k: sorted(rows, key=repr) for k, rows in _snapshot(conn, columns).items()}

    def ids(conn) -> dict[str, str]:
        return dict(conn.execute(sa.text("SELECT request_hash, id FROM model_calls")).all())

    with engine.connect() as conn:
        before, old_ids = snapshot(conn), ids(conn)
    _migrate_to(url, "0013")
    with engine.begin() as conn:
        inspect = sa.inspect(conn)
        assert [c["name"] for c in inspect.get_columns("model_calls")].count("id") == 0
        assert inspect.get_pk_constraint("model_calls")["constrained_columns"] == ["request_hash"]
        assert "model_call_id" not in {c["name"] for c in inspect.get_columns("descriptions")}
        assert inspect.get_foreign_keys("descriptions") == [
            fk for fk in inspect.get_foreign_keys("descriptions") if fk["referred_table"] != "model_calls"
        ]
        assert {"name": "ix_requests_role_sent_at", "column_names": ["role", "sent_at"]} in [
            {k: i[k] for k in ("name", "column_names")} for i in inspect.get_indexes("requests")
        ]
        assert snapshot(conn) == before  # every row, every other column
        command.downgrade(alembic_config(conn), "0012")
        inspect = sa.inspect(conn)
        assert inspect.get_pk_constraint("model_calls")["constrained_columns"] == ["id"]
        assert "ix_requests_role_sent_at" not in {i["name"] for i in inspect.get_indexes("requests")}
        assert any(fk["referred_table"] == "model_calls" for fk in inspect.get_foreign_keys("descriptions"))
        recomputed = ids(conn)
        assert snapshot(conn) == before
    # the engine's rows get back the ids it gave them; rows from before 0003 get the engine's ids too
    assert recomputed == {h: stable_id("model_call", h) for h in old_ids}
    assert all(recomputed[c["request_hash"]] == old_ids[c["request_hash"]] for c in calls)
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the hash is unique again
        _insert(conn, "model_calls", [dict(calls[0], id="x" * 32)])
    Store(url).dispose()  # and up again
    engine.dispose()


def test_answers_keyed_by_their_hash_both_ways_on_sqlite(tmp_path):
    _answers_by_hash_both_ways(f"sqlite:///{tmp_path / 'old.sqlite'}")


@pytest.mark.postgres
def test_answers_keyed_by_their_hash_both_ways_on_postgresql(pg_database):
    _in_a_fresh_database(pg_database, _answers_by_hash_both_ways)


def _ids_by_video_both_ways(url: str) -> None:
    """0014 puts the video's prefix on the ids of its units and on every reference to them: the ids the engine
    computes now (derived_id); its downgrade gives every row back as it was."""
    from engine.store.ids import derived_id, hash_part, stable_id

    w, version, lin = "w" * 32, "analyzer@1|gpt", "l" * 32
    p, q = stable_id("object", w, "dog", 0, version), stable_id("object", w, "dog", 1, version)  # as before 0014
    mp, mq = stable_id("masklet", p, lin), stable_id("masklet", q, lin)
    dp = {k: stable_id("description", p, k, lin) for k in ("appearance", "region")}
    rp, sp, sq = (
        stable_id("review", p, lin),
        stable_id("sample", "detailed", p, lin),
        stable_id("sample", "qa", [p, q], 0, lin),
    )
    clip = stable_id("clip", w, 0.0, 2.0, lin)
    rows = {
        "videos": [dict(id=w, path="w.mp4", source_root="/src", kind="file", num_frames=10, fps=25.0, width=64,
                        height=48, size_bytes=9, created_at=NOW)],
        "objects": [dict(id=o, video_id=w, noun="dog", instance=i, is_subject=i == 0, stage_version=version,
                         status="pending", created_at=NOW) for i, o in enumerate((p, q))],
        "masklets": [dict(id=m, object_id=o, backend_version="b", lineage=lin, anchor_frame=0, box=[0, 0, 1, 1],
                          grounding_score=1.0, mask_score=1.0, height=48, width=64, frames={"0": RLE}, coverage=1.0,
                          area_variation=0.0, mean_consecutive_iou=1.0, empty_frames=0, border_contact=0.0,
                          created_at=NOW) for o, m in ((p, mp), (q, mq))],
        "descriptions": [dict(id=d, object_id=p, kind=k, lineage=lin, text="a dog", model="m", prompt_version="v",
                              created_at=NOW) for k, d in dp.items()],
        "gates": [dict(object_id=p, lineage=lin, masklet_id=mp, passed=True, metrics={}, thresholds={},
                       created_at=NOW)],
        "reviews": [dict(id=rp, object_id=p, lineage=lin, masklet_id=mp, description_ids=list(dp.values()),
                         mode="paper", verdict=True, confidence=0.9, rationale="same", model="m",
                         region_description_id=dp["region"], prompt_version="v", created_at=NOW)],
        "samples": [dict(id=s, data_type=t, video_id=w, object_ids=ids, conversations=[], annotation=[],
                         mode="single", lineage=lin, created_at=NOW)
                    for s, t, ids in ((sp, "detailed", [p]), (sq, "qa", [p, q]))],
        "completions": [dict(video_id=w, unit_id=u, stage=st, lineage=lin, created_at=NOW)
                        for u, st in ((w, "analyze"), (p, "segment"), (f"{p}+{q}", "qa"), (clip, "split"))],
        "failures": [dict(id=stable_id("failure", u, "review", lin), unit_kind=k, unit_id=u, video_id=w, lineage=lin,
                          stage="review", attempts=1, error_code="x", message="m", quarantined=False, created_at=NOW,
                          updated_at=NOW) for k, u in (("object", q), ("video", w))],
        "audits": [dict(id=stable_id("audit", rp, "bob"), review_id=rp, auditor="bob", human_verdict=True, note="",
                        created_at=NOW)],
        "audit_events": [dict(id="e" * 32, review_id=rp, auditor="bob", action="decide", human_verdict=True, note="",
                              created_at=NOW)],
        "audit_items": [dict(review_id=rp, stratum="kept", population=1, seed=0, drawn_at=NOW)],
    }  # fmt: skip
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _release_store(conn)
        command.upgrade(alembic_config(conn), "0013")
        for name, batch in rows.items():
            _insert(conn, name, batch)
    columns = {name: [c for c in batch[0] if c != "frames"] for name, batch in rows.items()}
    columns["objects"] = ["id", "video_id", "noun", "instance"]  # the release's object (video v) too

    def snapshot(conn) -> dict[str, list[dict]]:
        return {k: sorted(rows, key=repr) for k, rows in _snapshot(conn, columns).items()}

    def widths(conn) -> set[int]:
        inspect = sa.inspect(conn)
        return {
            c["type"].length
            for table, names in (("objects", {"id"}), ("reviews", {"id", "masklet_id"}), ("audits", {"review_id"}))
            for c in inspect.get_columns(table)
            if c["name"] in names
        }

    with engine.connect() as conn:
        before = snapshot(conn)
        assert widths(conn) == {32}
    Store(url).dispose()  # opening the store applies 0014 (and on SQLite checks every foreign key)
    pw, qw = "w" * 8 + p, "w" * 8 + q
    with engine.begin() as conn:
        after = snapshot(conn)
        assert widths(conn) == {40}
        # the ids the engine computes now, from each unit's parts (the release's rows, of video v, are checked by
        # test_upgrade_from_0002_keeps_every_row_*)
        of_w = {k: [r for r in v if w[:8] in repr(r)] for k, v in after.items()}
        assert {r["id"] for r in of_w["objects"]} == {derived_id(w, "object", w, "dog", i, version) for i in (0, 1)}
        assert {r["id"] for r in of_w["objects"]} == {pw, qw}
        assert [r["id"] for r in of_w["masklets"]] == sorted(
            derived_id(o, "masklet", hash_part(o), lin) for o in (pw, qw)
        )
        ds = {derived_id(pw, "description", hash_part(pw), k, lin) for k in dp}
        assert {r["id"] for r in of_w["descriptions"]} == ds
        assert {r["object_id"] for r in of_w["descriptions"]} == {pw}
        (review,) = of_w["reviews"]
        assert review["id"] == derived_id(pw, "review", hash_part(pw), lin)
        assert review["object_id"] == pw and review["masklet_id"] == "w" * 8 + mp
        assert review["description_ids"] == ["w" * 8 + d for d in dp.values()]  # in their order
        assert review["region_description_id"] == "w" * 8 + dp["region"]
        assert after["gates"] == [dict(before["gates"][0], object_id=pw, masklet_id="w" * 8 + mp)]
        samples = {r["data_type"]: r for r in of_w["samples"]}
        assert samples["detailed"]["id"] == derived_id(pw, "sample", "detailed", hash_part(pw), lin)
        assert samples["qa"]["id"] == derived_id(w, "sample", "qa", [p, q], 0, lin)
        assert samples["qa"]["object_ids"] == [pw, qw]
        assert {r["unit_id"] for r in after["completions"]} == {w, pw, f"{pw}+{qw}", clip}  # a video's, a clip's kept
        assert {r["unit_id"] for r in of_w["failures"]} == {qw, w}
        assert {r["id"] for r in of_w["failures"]} == {r["id"] for r in rows["failures"]}  # their ids as before
        for table in ("audits", "audit_events", "audit_items"):
            assert [r["review_id"] for r in of_w[table]] == [review["id"]]
        assert of_w["audits"][0]["id"] == stable_id("audit", hash_part(review["id"]), "bob")  # its id as before
        command.downgrade(alembic_config(conn), "0013")
        assert snapshot(conn) == before  # every row as it was
        assert widths(conn) == {32}
    Store(url).dispose()  # and up again
    engine.dispose()


def test_ids_by_video_both_ways_on_sqlite(tmp_path):
    _ids_by_video_both_ways(f"sqlite:///{tmp_path / 'old.sqlite'}")


@pytest.mark.postgres
def test_ids_by_video_both_ways_on_postgresql(pg_database):
    _in_a_fresh_database(pg_database, _ids_by_video_both_ways)


def _answers_by_video_both_ways(url: str) -> None:
    """0015 keys model_calls by (video_id, request_hash), a call outside any video under '', and drops the indexes
    on video_id and agent; its downgrade keeps one answer per hash."""
    from sqlalchemy.exc import IntegrityError

    w, x = "w" * 32, "x" * 32
    calls = [
        dict(request_hash=f"{i}" * 64, agent="annotator", model="m", endpoint="http://x", status="ok", tokens_in=9,
             tokens_out=3, cost_usd=0.0, latency_s=0.1, response=json.dumps({"parsed": {"n": i}}), error=None,
             run_id=None, video_id=video, created_at=NOW)
        for i, video in enumerate((w, w, x, None))
    ]  # fmt: skip
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _release_store(conn)
        command.upgrade(alembic_config(conn), "0014")
        _insert(conn, "model_calls", calls)
    columns = {"model_calls": [c for c in calls[0] if c != "response"]}  # JSON: not comparable on PostgreSQL

    def snapshot(conn) -> list[dict]:
        return sorted(_snapshot(conn, columns)["model_calls"], key=repr)

    def indexes(conn) -> set[str]:
        return {i["name"] for i in sa.inspect(conn).get_indexes("model_calls")}

    with engine.connect() as conn:
        before = snapshot(conn)
        assert {"ix_model_calls_video_id", "ix_model_calls_agent"} <= indexes(conn)
    _migrate_to(url, "0015")
    with engine.begin() as conn:
        assert sa.inspect(conn).get_pk_constraint("model_calls")["constrained_columns"] == ["video_id", "request_hash"]
        assert indexes(conn) == {"ix_model_calls_run_id"}
        # every row and column kept; the release's call and the probe's, made outside any video, are under ''
        assert snapshot(conn) == sorted([dict(r, video_id=r["video_id"] or "") for r in before], key=repr)
        _insert(conn, "model_calls", [dict(calls[0], video_id=x)])  # the same request from another video: its own
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _insert(conn, "model_calls", [dict(calls[0])])  # but once per video
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0014")
        assert sa.inspect(conn).get_pk_constraint("model_calls")["constrained_columns"] == ["request_hash"]
        assert {"ix_model_calls_video_id", "ix_model_calls_agent"} <= indexes(conn)
        assert snapshot(conn) == before  # one answer per hash again: the first video's, (w, "0"*64)
    Store(url).dispose()  # and up again
    engine.dispose()


def test_answers_by_video_both_ways_on_sqlite(tmp_path):
    _answers_by_video_both_ways(f"sqlite:///{tmp_path / 'old.sqlite'}")


@pytest.mark.postgres
def test_answers_by_video_both_ways_on_postgresql(pg_database):
    _in_a_fresh_database(pg_database, _answers_by_video_both_ways)
