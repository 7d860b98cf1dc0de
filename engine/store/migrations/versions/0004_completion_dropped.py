"""what a completed unit left out, by reason (QA pairs that name no object, ...)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 11:30:00

A nullable column: old completions keep NULL (nothing was counted then).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("completions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dropped", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("completions", schema=None) as batch_op:
        batch_op.drop_column("dropped")
