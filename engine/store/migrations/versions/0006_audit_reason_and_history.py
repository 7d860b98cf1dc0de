"""audits: a reason code for "different object", the history of every decision, and keep-threshold calibrations

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 15:10:00

A nullable column: audits made before it have no reason (NULL). The history starts empty: an audit made before it
has its current row only.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=32), nullable=True))
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("review_id", sa.String(length=32), nullable=False),
        sa.Column("auditor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("human_verdict", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], name="fk_audit_events_review_id_reviews"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_review_id", ["review_id"], unique=False)
    op.create_table(
        "calibrations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("target", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("rule", sa.String(length=80), nullable=False),
        sa.Column("estimates", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calibrations"),
    )


def downgrade() -> None:
    op.drop_table("calibrations")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_review_id")
    op.drop_table("audit_events")
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.drop_column("reason")
