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
    for name in tables:
        assert after[name] == before[name], name  # every row, every old column, the same value
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
    Store(url).dispose()  # opening the store applies 0012
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
    Store(url).dispose()  # opening the store applies 0013
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
