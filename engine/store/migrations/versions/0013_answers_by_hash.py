"""model_calls keyed by request_hash alone; requests indexed by (role, sent_at) for the plan's bounded read

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 22:00:00

A cached answer had two keys at random places: a hashed id (its primary key) and its unique request_hash, so each
answer wrote two index pages that, in a store of a million objects, are each a page of their own. Every lookup
and delete goes by the hash; the id served only descriptions.model_call_id, a reference no version of the engine
ever filled (`git log -S model_call_id`: only the first schema and a test's rows). Both go, and the hash is the
primary key.

The plan's measured tokens per call read every answered request of the store, once a run (4.8 million rows at a
million objects). They now read each role's newest requests, which this index finds; a new request lands at the
end of its role's range, a page the writer already holds.

SQLite copies model_calls and descriptions to change them: a store of a million objects and 4.8 million answers took
235 s, once. The file grew from 7.2 to 8.8 GB: the difference is free pages, which later writes reuse.
"""

from typing import Literal

import sqlalchemy as sa
from alembic import op

from engine.store.ids import stable_id

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# SQLite's reflection names no constraint that 0001 left unnamed; PostgreSQL named them by its own rules.
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s"}


def _recreate() -> Literal["always", "auto"]:
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def _names() -> tuple[str, str, str]:
    """(model_calls' unique request_hash, its primary key, descriptions' foreign key to it) as this database
    calls them."""
    if op.get_bind().dialect.name == "sqlite":
        return "uq_model_calls_request_hash", "pk_model_calls", "fk_descriptions_model_call_id"
    return "model_calls_request_hash_key", "model_calls_pkey", "descriptions_model_call_id_fkey"


def upgrade() -> None:
    unique, _, fk = _names()
    recreate = _recreate()
    with op.batch_alter_table("descriptions", recreate=recreate, naming_convention=SQLITE_NAMES) as batch_op:
        batch_op.drop_constraint(fk, type_="foreignkey")
        batch_op.drop_column("model_call_id")
    with op.batch_alter_table("model_calls", recreate=recreate, naming_convention=SQLITE_NAMES) as batch_op:
        batch_op.drop_constraint(unique, type_="unique")
        batch_op.drop_column("id")  # and with it the primary key on it
        batch_op.create_primary_key("pk_model_calls", ["request_hash"])
    op.create_index("ix_requests_role_sent_at", "requests", ["role", "sent_at"], unique=False)


def downgrade() -> None:
    """The hashed ids again, as the engine computed them (rows from before 0003 had ids of their own: those are
    not kept); descriptions get back their reference, empty, as the engine always left it."""
    conn = op.get_bind()
    unique, pk, fk = _names()
    recreate = _recreate()
    op.drop_index("ix_requests_role_sent_at", table_name="requests")
    with op.batch_alter_table("model_calls", recreate=recreate) as batch_op:
        batch_op.drop_constraint("pk_model_calls", type_="primary")
        batch_op.add_column(sa.Column("id", sa.String(length=32), nullable=True))
    t = sa.table("model_calls", sa.column("id"), sa.column("request_hash"))
    hashes = conn.execute(sa.select(t.c.request_hash)).scalars().all()
    if hashes:
        conn.execute(
            t.update().where(t.c.request_hash == sa.bindparam("h")).values(id=sa.bindparam("new")),
            [dict(h=h, new=stable_id("model_call", h)) for h in hashes],
        )
    with op.batch_alter_table("model_calls", recreate=recreate) as batch_op:
        batch_op.alter_column("id", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_primary_key(pk, ["id"])
        batch_op.create_unique_constraint(unique, ["request_hash"])
    with op.batch_alter_table("descriptions", recreate=recreate) as batch_op:
        batch_op.add_column(sa.Column("model_call_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(fk, "model_calls", ["model_call_id"], ["id"])
