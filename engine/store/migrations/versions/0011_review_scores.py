"""reviews: the deciding judge's score P(same object) and its source, and every judge of a cascade

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 16:00:00

A judge's score is its answer token's probability where the server returns log-probabilities, else its verbalised
confidence (agents/reviewer.py). The review keeps the deciding judge's score and source, the token probability
when there was one, which judge decided, and every judge's answer (the Reviewer cascade, [[review.cascade]]).
Rows from before have none: `engine audit calibrate` reads their verbalised confidence, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS: tuple[tuple[str, sa.types.TypeEngine], ...] = (
    ("p_same", sa.Double()),
    ("score_source", sa.String(length=8)),
    ("token_p_same", sa.Double()),
    ("judge", sa.String(length=64)),
    ("judges", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
