"""completions and gates keyed by what they say, with no hashed id; requests lose their request_hash index

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 19:00:00

Nothing references a completion marker or a gate verdict, yet each had a primary key that hashed its unique key,
so each insert wrote two index pages at random places; in a store of a million objects each is a page of its own
(and a page the checkpoint writes again). Now the unique key is the primary key: (object_id, lineage) for gates;
for completions (video_id, unit_id, stage, lineage), video first, so that a video's markers share pages and its
separate video_id index goes. A unit belongs to one video, so this key is unique where (unit_id, stage, lineage)
was. `benchmarks/store_writes.py` (a run's writes replayed into a store of a million objects) measured the extra
cost of that store's writes over an empty one's at 0.24 ms of CPU per object with these keys, 0.39 without.
requests.request_hash had an index of its own that no query uses (a request's answer is model_calls' row, found
by its own key): one more random page per request. Dropping it took the writer's CPU per object in a store of a
million objects and their model calls from 0.95 to 0.80 ms, an empty store's being 0.46 (store_writes.py, 3 tries).
SQLite copies both tables to change a primary key: a store of a million objects takes some seconds, once.
"""

import sqlalchemy as sa
from alembic import op

from engine.store.ids import stable_id

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

KEYS = {"gates": ("object_id", "lineage"), "completions": ("video_id", "unit_id", "stage", "lineage")}
UNIQUES = {"gates": "uq_gates_object_lineage", "completions": "uq_completions_unit_stage_lineage"}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, key in KEYS.items():
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch_op:
            if table == "completions":
                batch_op.drop_index("ix_completions_video_id")
            batch_op.drop_constraint(UNIQUES[table], type_="unique")
            batch_op.drop_column("id")  # and with it the primary key on it
            batch_op.create_primary_key(f"pk_{table}", list(key))
    op.drop_index("ix_requests_request_hash", table_name="requests")


def downgrade() -> None:
    """The hashed ids again, computed as the engine computed them before."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    conn = op.get_bind()
    op.create_index("ix_requests_request_hash", "requests", ["request_hash"], unique=False)
    for table, key in KEYS.items():
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch_op:
            batch_op.drop_constraint(f"pk_{table}", type_="primary")
            batch_op.add_column(sa.Column("id", sa.String(length=32), nullable=True))
        t = sa.table(table, *(sa.column(c) for c in ("id", *key)))
        rows = conn.execute(sa.select(*(t.c[c] for c in key))).all()
        if table == "gates":
            ids = [dict(o=r.object_id, l=r.lineage, new=stable_id("gate", r.object_id, r.lineage)) for r in rows]
            where = sa.and_(t.c.object_id == sa.bindparam("o"), t.c.lineage == sa.bindparam("l"))
        else:
            ids = [
                dict(u=r.unit_id, s=r.stage, l=r.lineage, new=stable_id("completion", r.unit_id, r.stage, r.lineage))
                for r in rows
            ]
            where = sa.and_(
                t.c.unit_id == sa.bindparam("u"), t.c.stage == sa.bindparam("s"), t.c.lineage == sa.bindparam("l")
            )
        if ids:
            conn.execute(t.update().where(where).values(id=sa.bindparam("new")), ids)
        unique = ("object_id", "lineage") if table == "gates" else ("unit_id", "stage", "lineage")
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch_op:
            batch_op.alter_column("id", existing_type=sa.String(length=32), nullable=False)
            batch_op.create_primary_key(f"pk_{table}", ["id"])
            batch_op.create_unique_constraint(UNIQUES[table], list(unique))
            if table == "completions":
                batch_op.create_index("ix_completions_video_id", ["video_id"], unique=False)
