"""The SQL store: one SQLAlchemy engine, migrations applied on first use, idempotent writes.

SQLite (the default, a file in the data folder, WAL mode so the review UI can read while a run
writes) and PostgreSQL are both supported; anything dialect-specific lives in this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.orm import Session, sessionmaker

from engine.store import schema

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_MMAP_BYTES = 1 << 31  # address space, not memory (the OS's file cache); SQLite caps it near 2 GiB


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA wal_autocheckpoint=10000")  # checkpoint (and fsync) every ~40 MB of WAL, not every 4 MB
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")  # a reader (review UI) never fails on the writer's lock
    # A store of a million objects has indexes of hundreds of MB keyed by random hashes: each insert lands on a
    # page of its own. Mapped, a page already in the OS's cache costs a memory read, not a system call. The page
    # cache stays SQLite's default (2 MB): with the file mapped it holds the pages being written, and a larger one
    # costs the writer more than it saves (benchmarks/store_writes.py: 64 MB took 1.30 ms of the store thread per
    # object at a million objects, 2 MB 1.00; 0.88 against 0.77 over 2,000 objects).
    cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cur.close()


def alembic_config(connection: sa.Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


class Store:
    """Open (and migrate) the database at `url`.

    >>> store = Store("sqlite:///engine-data/engine.sqlite")
    >>> with store.session() as s: ...
    """

    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        if url.startswith("sqlite:///"):
            db_path = url.removeprefix("sqlite:///")
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        # JSON columns (masks as RLE, answers) through orjson: several times faster than json both ways.
        # A server's connections can be ended under us (a restart, terminated backends): checkouts are pinged
        # (the writer holds one connection for the run, so that costs a round trip per command, not per row).
        self.engine = sa.create_engine(
            url,
            pool_recycle=1800,
            pool_pre_ping=not url.startswith("sqlite"),
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
        )
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._statements: dict[tuple, Any] = {}
        if migrate:
            self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest migration (no-op when it is current)."""
        with self.engine.connect() as conn:
            if _at_head(conn):
                return
            sqlite = self.dialect == "sqlite"
            if sqlite:
                # SQLite alters a table by copying it: foreign keys must be off while it does (outside any
                # transaction), and are checked once it is done.
                _dbapi(conn).execute("PRAGMA foreign_keys=OFF")
            with conn.begin():
                if self.dialect == "postgresql":  # two processes starting at once must not both migrate
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(722001)"))
                command.upgrade(alembic_config(conn), "head")
            if sqlite:
                dbapi = _dbapi(conn)
                broken = dbapi.execute("PRAGMA foreign_key_check").fetchall()
                dbapi.execute("PRAGMA foreign_keys=ON")
                if broken:
                    raise RuntimeError(f"the migrated store has rows whose foreign keys point nowhere: {broken[:5]}")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._sessions() as s, s.begin():
            yield s

    def _insert(self, model: type[schema.Base]) -> Any:
        """The dialect's INSERT, which has ON CONFLICT (the two dialects' classes share no public base)."""
        from sqlalchemy.dialects import postgresql, sqlite

        if self.dialect == "postgresql":
            return postgresql.insert(model)
        if self.dialect == "sqlite":
            return sqlite.insert(model)
        raise NotImplementedError(f"idempotent inserts are not implemented for {self.dialect}")

    def insert_ignore(self, session: Session, model: type[schema.Base], rows: Sequence[dict[str, Any]]) -> int:
        """Insert rows, skipping any that collide with an existing key or unique constraint.

        Returns the number of rows actually inserted.
        """
        key = list(sa.inspect(model).local_table.primary_key)
        inserted = 0
        for row in rows:  # RETURNING tells inserted from skipped on every driver (rowcount does not)
            stmt = self._insert(model).values(**with_defaults(model, row)).on_conflict_do_nothing().returning(*key)
            inserted += session.execute(stmt).first() is not None
        return inserted

    def insert_many(
        self, session: Session | sa.Connection, model: type[schema.Base], rows: Sequence[dict[str, Any]]
    ) -> None:
        """insert_ignore for many rows in one executemany (no count of what was inserted: the hot path)."""
        if rows:
            stmt = self._statement(("ignore", model))
            _connection(session).execute(stmt, _uniform([with_defaults(model, r) for r in rows]))

    def upsert(
        self,
        session: Session | sa.Connection,
        model: type[schema.Base],
        rows: Sequence[dict[str, Any]],
        conflict: Sequence[str],
        update: Sequence[str],
    ) -> None:
        """Insert rows (one executemany); where `conflict` columns collide, overwrite the `update` columns instead."""
        if rows:
            stmt = self._statement(("upsert", model, tuple(conflict), tuple(update)))
            _connection(session).execute(stmt, _uniform([with_defaults(model, r) for r in rows]))

    def _statement(self, key: tuple) -> Any:
        """Insert statements built once per table and conflict rule (building one costs about a millisecond)."""
        if key not in self._statements:
            stmt = self._insert(key[1])
            if key[0] == "ignore":
                stmt = stmt.on_conflict_do_nothing()
            else:
                _, model, conflict, update = key
                set_ = {c: stmt.excluded[c] for c in update}
                if "updated_at" in model.__table__.c:  # each row carries its time (with_defaults)
                    set_["updated_at"] = stmt.excluded["updated_at"]
                stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_=set_)
            self._statements[key] = stmt
        return self._statements[key]

    def counts(self) -> dict[str, int]:
        """Rows per table, in schema order."""
        with self.session() as s:
            return {
                t.name: s.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in schema.Base.metadata.sorted_tables
            }

    def checkpoint(self, conn: sa.Connection) -> None:
        """Copy what SQLite's write-ahead log holds into the database file, without waiting on readers (PostgreSQL
        checkpoints by itself). The driver's writer does it as a run ends: the run pays for writing its own pages,
        not the next one, and leaves the file whole and the log short."""
        if self.dialect == "sqlite":
            _dbapi(conn).execute("PRAGMA wal_checkpoint(PASSIVE)")

    def dispose(self) -> None:
        self.engine.dispose()


def _at_head(conn: sa.Connection) -> bool:
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    current = MigrationContext.configure(conn).get_current_revision()
    conn.rollback()
    return current == ScriptDirectory.from_config(alembic_config()).get_current_head()


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with one set of keys (an executemany needs it): a column some rows leave out is None in them."""
    keys = set(rows[0])
    if all(r.keys() == keys for r in rows):
        return rows
    keys = set().union(*rows)
    return [{k: r.get(k) for k in keys} for r in rows]


def _connection(target: Session | sa.Connection) -> sa.Connection:
    return target.connection() if isinstance(target, Session) else target


def with_defaults(model: type[schema.Base], row: dict[str, Any]) -> dict[str, Any]:
    """The row with every Python-side column default filled in: Core inserts skip ORM defaults only when the
    column is given, so rows look the same as ORM-added ones."""
    missing = [d for d in _defaults(model) if d[0] not in row]
    if not missing:
        return row
    out = dict(row)
    for name, value, call in missing:
        out[name] = value(None) if call else value
    return out


@cache
def _defaults(model: type[schema.Base]) -> tuple[tuple[str, Any, bool], ...]:
    return tuple(
        (c.name, c.default.arg, c.default.is_callable)
        for c in model.__table__.columns
        if c.default is not None and (c.default.is_callable or c.default.is_scalar)
    )


def _dbapi(conn: sa.Connection) -> Any:
    """The driver's own connection (SQLite's PRAGMAs outside a transaction)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None  # a connection checked out of the pool always has one
    return raw


def safe_url(url: str) -> str:
    """The URL as it may be shown: with its password hidden."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"
