"""clips: the frame ranges a source was split into, and clip units among the videos

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 14:00:00

Existing videos are sources (parent_id NULL, first_frame 0): what they were before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("videos", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("first_frame", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_videos_parent_id", ["parent_id"], unique=False)
    op.create_table(
        "clips",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=32), nullable=False),
        sa.Column("lineage", sa.String(length=32), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("kept", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("hashes", sa.JSON(), nullable=False),
        sa.Column("video_id", sa.String(length=32), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["videos.id"], name="fk_clips_source_id_videos"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_clips_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_clips"),
    )
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.create_index("ix_clips_source_id", ["source_id"], unique=False)
        batch_op.create_index("ix_clips_lineage", ["lineage"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_index("ix_clips_lineage")
        batch_op.drop_index("ix_clips_source_id")
    op.drop_table("clips")
    with op.batch_alter_table("videos", schema=None) as batch_op:
        batch_op.drop_index("ix_videos_parent_id")
        batch_op.drop_column("first_frame")
        batch_op.drop_column("parent_id")
