"""runs: a live snapshot of the run in flight, rewritten with each heartbeat

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 11:50:00

`live` holds per-stage units done and total, units per minute over the last minute and when it was taken
(engine/runtime/executor.py writes it; `engine status --follow` reads it from any shell that reaches the store).
NULL for runs before it and for dry runs.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("live", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("live")
