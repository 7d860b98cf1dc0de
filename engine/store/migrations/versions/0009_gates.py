"""gates: each masklet's quality-gate verdict at a lineage

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 14:00:00

One row per object and gate lineage (pipelines/stages.py GateStage): passed, or the gate that stopped it with the
metric's value and threshold, and the metrics and thresholds it was judged by. Stores before it have none: their
objects were never gated, and a run at a gate lineage gates them from their stored masklets.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gates",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("lineage", sa.String(length=32), nullable=False),
        sa.Column("masklet_id", sa.String(length=32), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("gate", sa.String(length=32), nullable=True),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["object_id"], ["objects.id"], name="fk_gates_object_id_objects"),
        sa.ForeignKeyConstraint(["masklet_id"], ["masklets.id"], name="fk_gates_masklet_id_masklets"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_gates_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_gates"),
        sa.UniqueConstraint("object_id", "lineage", name="uq_gates_object_lineage"),
    )
    with op.batch_alter_table("gates", schema=None) as batch_op:
        batch_op.create_index("ix_gates_object_id", ["object_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gates", schema=None) as batch_op:
        batch_op.drop_index("ix_gates_object_id")
    op.drop_table("gates")
