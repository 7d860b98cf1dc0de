"""The store on SQLite and PostgreSQL: migrations, idempotent writes, constraints, JSON round trips."""

import threading

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError

from engine.media import masks
from engine.store import schema
from engine.store.db import Store, alembic_config
from engine.store.ids import stable_id


def _video(vid="v" * 32, **kw):
    row = dict(
        id=vid,
        path="a/clip.mp4",
        source_root="/src",
        kind="file",
        num_frames=10,
        fps=25.0,
        width=64,
        height=48,
        size_bytes=1234,
    )
    row.update(kw)
    return row


def test_migrated_to_head_and_schema_matches_models(store):
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == head
        assert compare_metadata(ctx, schema.Base.metadata) == []  # models and migrations agree
    Store(store.url).dispose()  # opening again is a no-op migration


def test_insert_ignore_is_idempotent(store):
    with store.session() as s:
        assert store.insert_ignore(s, schema.Video, [_video()]) == 1
        assert store.insert_ignore(s, schema.Video, [_video(), _video("w" * 32)]) == 1
    with store.session() as s:
        assert store.insert_ignore(s, schema.Video, [_video(path="elsewhere.mp4")]) == 0
        assert s.get(schema.Video, "v" * 32).path == "a/clip.mp4"  # first seen wins
    assert store.counts()["videos"] == 2


def test_upsert_updates_on_the_unique_key(store):
    with store.session() as s:
        store.insert_ignore(s, schema.Video, [_video()])
        cap = dict(id=stable_id("caption", "v" * 32, "sidecar"), video_id="v" * 32, source="sidecar", text="old")
        store.upsert(s, schema.Caption, [cap], conflict=("video_id", "source"), update=("text",))
        store.upsert(s, schema.Caption, [{**cap, "text": "new"}], conflict=("video_id", "source"), update=("text",))
    with store.session() as s:
        rows = s.query(schema.Caption).all()
        assert [r.text for r in rows] == ["new"]


def test_unique_object_per_video_noun_instance_version(store):
    with store.session() as s:
        store.insert_ignore(s, schema.Video, [_video()])
        obj = dict(
            id=stable_id("object", "v" * 32, "man", 0, "a@1"),
            video_id="v" * 32,
            noun="man",
            stage_version="a@1",
            is_subject=True,
        )
        assert store.insert_ignore(s, schema.VideoObject, [obj]) == 1
        # a different id for the same (video, noun, instance, version) is still a duplicate
        assert store.insert_ignore(s, schema.VideoObject, [{**obj, "id": "x" * 32}]) == 0
        assert store.insert_ignore(s, schema.VideoObject, [{**obj, "id": "y" * 32, "instance": 1}]) == 1


def test_foreign_keys_and_check_constraints_are_enforced(store):
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(schema.Caption(id="c" * 32, video_id="missing", source="sidecar", text="t"))
    with store.session() as s:
        store.insert_ignore(s, schema.Video, [_video()])
        s.add(schema.VideoObject(id="o" * 32, video_id="v" * 32, noun="dog", stage_version="1"))
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(
            schema.Description(id="d" * 32, object_id="o" * 32, kind="bogus", text="t", model="m", prompt_version="1")
        )
    assert store.counts()["descriptions"] == 0


def test_masklet_rle_roundtrip(store, rng):
    frames = {}
    for f in (0, 7, 14):
        frames[str(f)] = masks.encode(rng.random((48, 64)) > 0.5)
    frames["21"] = None
    with store.session() as s:
        store.insert_ignore(s, schema.Video, [_video()])
        s.add(schema.VideoObject(id="o" * 32, video_id="v" * 32, noun="dog", stage_version="1"))
        s.flush()
        s.add(
            schema.Masklet(
                id="m" * 32,
                object_id="o" * 32,
                backend_version="test@1",
                anchor_frame=7,
                box=[1.0, 2.0, 30.0, 40.0],
                grounding_score=0.8,
                mask_score=0.9,
                height=48,
                width=64,
                frames=frames,
                coverage=masks.coverage(frames),
                area_variation=0.1,
                mean_consecutive_iou=0.5,
                empty_frames=1,
                border_contact=0.0,
            )
        )
    with store.session() as s:
        m = s.get(schema.Masklet, "m" * 32)
        assert m.coverage == 0.75 and m.frames["21"] is None and m.box == [1.0, 2.0, 30.0, 40.0]
        for k in ("0", "7", "14"):
            assert np.array_equal(masks.decode(m.frames[k]), masks.decode(frames[k]))


def test_session_rolls_back_on_error(store):
    with pytest.raises(RuntimeError), store.session() as s:
        store.insert_ignore(s, schema.Video, [_video()])
        raise RuntimeError("boom")
    assert store.counts()["videos"] == 0


def test_sqlite_uses_wal_and_a_reader_is_not_blocked_by_a_writer(sqlite_store):
    with sqlite_store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with sqlite_store.session() as s:
        sqlite_store.insert_ignore(s, schema.Video, [_video()])
    writing = threading.Event()
    release = threading.Event()

    def writer():
        with sqlite_store.session() as s:
            sqlite_store.insert_ignore(s, schema.Video, [_video("w" * 32)])
            s.flush()
            writing.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    assert writing.wait(10)
    reader = Store(sqlite_store.url)  # another connection, as the review UI would open
    try:
        assert reader.counts()["videos"] == 1  # sees the committed row, not the open transaction
    finally:
        release.set()
        t.join()
        reader.dispose()
    assert sqlite_store.counts()["videos"] == 2


def test_the_writer_checkpoints_as_it_closes_so_the_file_alone_holds_the_run(sqlite_store, tmp_path):
    """A run's writes reach engine.sqlite itself when its writer closes, though other connections stay open (the
    pool's, a review UI's): a copy of that file alone, without its -wal, has them, and the run paid for the copy."""
    import asyncio
    import shutil
    import sqlite3

    from engine.store.io import Insert, StoreIO

    reader = Store(sqlite_store.url)  # another connection open all along: SQLite checkpoints on its own only at
    reader.counts()  # the last close
    db = tmp_path / "engine.sqlite"

    async def write() -> None:
        io = StoreIO(sqlite_store)
        io.submit([Insert(schema.Video, [_video(f"{i:032x}", path=f"v{i}.mp4") for i in range(50)])])
        await io.flush()
        assert (tmp_path / "engine.sqlite-wal").stat().st_size > 0  # committed, in the log
        await io.aclose()

    asyncio.run(write())
    shutil.copyfile(db, tmp_path / "copy.sqlite")
    with sqlite3.connect(tmp_path / "copy.sqlite") as copy:
        assert copy.execute("SELECT count(*) FROM videos").fetchone() == (50,)
    assert reader.counts()["videos"] == 50
    reader.dispose()


def test_sqlite_creates_the_data_folder(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'deep' / 'er' / 'engine.sqlite'}")
    assert (tmp_path / "deep" / "er" / "engine.sqlite").exists()
    s.dispose()


def test_runs_and_model_calls_keep_json(store):
    with store.session() as s:
        s.add(schema.Run(id="r" * 32, command="run", engine_version="0.1", config={"a": {"b": [1, 2]}}))
        s.flush()
        s.add(
            schema.ModelCall(
                video_id=schema.NO_VIDEO,
                request_hash="h" * 64,
                agent="analyzer",
                model="m",
                status="ok",
                tokens_in=10,
                tokens_out=2,
                cost_usd=0.001,
                response={"nouns": ["man"]},
                run_id="r" * 32,
            )
        )
    with store.session() as s:
        assert s.get(schema.Run, "r" * 32).config == {"a": {"b": [1, 2]}}
        assert s.get(schema.ModelCall, (schema.NO_VIDEO, "h" * 64)).response == {"nouns": ["man"]}
    with store.session() as s:  # the same request from a video: an answer of its own
        s.add(schema.ModelCall(video_id="v" * 32, request_hash="h" * 64, agent="a", model="m", status="ok"))
    with pytest.raises(IntegrityError), store.session() as s:  # one row per video and request hash: the cache key
        s.add(schema.ModelCall(video_id="v" * 32, request_hash="h" * 64, agent="a", model="m", status="ok"))
    assert sa.inspect(store.engine).has_table("audits")
