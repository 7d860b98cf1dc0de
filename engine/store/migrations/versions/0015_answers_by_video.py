"""model_calls keyed by (video_id, request_hash), so that a video's answers share index pages

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 04:00:00

Keyed by the request's hash alone (0013), each answer a run stored was a page at a random place of the key's index:
in a store of a million objects, about 4 of the 17 pages a run's writes touched per object
(benchmarks/store_writes.py, the WAL's frames by b-tree). Keyed by the video first, a video's answers share pages,
and the key serves the run's preload of a video's answers, so video_id's own index goes. The index on agent goes
too: nothing reads by it. A call made outside any video (NULL before) is kept under '' (schema.NO_VIDEO).

SQLite copies the table: a store of a million objects and 4.8 million answers took 60 s, once; its file grew from
7.5 to 8.9 GB, the difference being free pages that later writes reuse. PostgreSQL changes the key in place.

The downgrade keeps one row per hash (the first video's, in key order) where several videos stored the same answer.
"""

from typing import Literal

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NO_VIDEO = ""  # engine/store/schema.py's NO_VIDEO as this revision wrote it


def _recreate() -> Literal["always", "auto"]:
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    t = sa.table("model_calls", sa.column("video_id"))
    op.execute(t.update().where(t.c.video_id.is_(None)).values(video_id=NO_VIDEO))
    op.drop_index("ix_model_calls_video_id", table_name="model_calls")
    op.drop_index("ix_model_calls_agent", table_name="model_calls")
    with op.batch_alter_table("model_calls", recreate=_recreate()) as batch_op:
        batch_op.drop_constraint("pk_model_calls", type_="primary")
        batch_op.alter_column("video_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_primary_key("pk_model_calls", ["video_id", "request_hash"])


def downgrade() -> None:
    conn = op.get_bind()
    t = sa.table("model_calls", sa.column("video_id"), sa.column("request_hash"))
    first = sa.select(sa.func.min(t.c.video_id), t.c.request_hash).group_by(t.c.request_hash)
    conn.execute(t.delete().where(sa.tuple_(t.c.video_id, t.c.request_hash).not_in(first)))
    with op.batch_alter_table("model_calls", recreate=_recreate()) as batch_op:
        batch_op.drop_constraint("pk_model_calls", type_="primary")
        batch_op.alter_column("video_id", existing_type=sa.String(length=32), nullable=True)
        batch_op.create_primary_key("pk_model_calls", ["request_hash"])
    op.execute(t.update().where(t.c.video_id == NO_VIDEO).values(video_id=None))
    op.create_index("ix_model_calls_agent", "model_calls", ["agent"], unique=False)
    op.create_index("ix_model_calls_video_id", "model_calls", ["video_id"], unique=False)
