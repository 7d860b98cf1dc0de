"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 00:31:30.218929
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("engine_version", sa.String(length=32), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "videos",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("source_root", sa.Text(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("file", "frames", name="video_kind", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("num_frames", sa.Integer(), nullable=False),
        sa.Column("fps", sa.Double(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "captions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("video_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("video_id", "source"),
    )
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_captions_video_id"), ["video_id"], unique=False)

    op.create_table(
        "failures",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("unit_kind", sa.String(length=32), nullable=False),
        sa.Column("unit_id", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("quarantined", sa.Boolean(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("unit_id", "stage"),
    )
    op.create_table(
        "model_calls",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "ok",
                "error",
                "refused",
                "invalid",
                name="call_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        sa.Column("latency_s", sa.Double(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_hash"),
    )
    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_calls_agent"), ["agent"], unique=False)
        batch_op.create_index(batch_op.f("ix_model_calls_run_id"), ["run_id"], unique=False)

    op.create_table(
        "objects",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("video_id", sa.String(length=32), nullable=False),
        sa.Column("noun", sa.String(length=128), nullable=False),
        sa.Column("instance", sa.Integer(), nullable=False),
        sa.Column("is_subject", sa.Boolean(), nullable=False),
        sa.Column("stage_version", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "grounded",
                "not_grounded",
                name="object_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("video_id", "noun", "instance", "stage_version"),
    )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_objects_video_id"), ["video_id"], unique=False)

    op.create_table(
        "samples",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column(
            "data_type",
            sa.Enum("short", "detailed", "qa", name="data_type", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("qa_type", sa.String(length=32), nullable=True),
        sa.Column("video_id", sa.String(length=32), nullable=False),
        sa.Column("object_ids", sa.JSON(), nullable=False),
        sa.Column("conversations", sa.JSON(), nullable=False),
        sa.Column("annotation", sa.JSON(), nullable=False),
        sa.Column(
            "mode",
            sa.Enum("single", "multi", name="frame_mode", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("split", sa.String(length=16), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_samples_data_type"), ["data_type"], unique=False)
        batch_op.create_index(batch_op.f("ix_samples_video_id"), ["video_id"], unique=False)

    op.create_table(
        "descriptions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "appearance",
                "motion",
                "region",
                "detailed",
                "short",
                name="description_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prompt_version", sa.String(length=64), nullable=False),
        sa.Column("model_call_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_call_id"],
            ["model_calls.id"],
        ),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["objects.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", "kind", "model", "prompt_version"),
    )
    with op.batch_alter_table("descriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_descriptions_object_id"), ["object_id"], unique=False)

    op.create_table(
        "masklets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("backend_version", sa.String(length=200), nullable=False),
        sa.Column("anchor_frame", sa.Integer(), nullable=False),
        sa.Column("box", sa.JSON(), nullable=False),
        sa.Column("grounding_score", sa.Double(), nullable=False),
        sa.Column("mask_score", sa.Double(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("frames", sa.JSON(), nullable=False),
        sa.Column("coverage", sa.Double(), nullable=False),
        sa.Column("area_variation", sa.Double(), nullable=False),
        sa.Column("mean_consecutive_iou", sa.Double(), nullable=False),
        sa.Column("empty_frames", sa.Integer(), nullable=False),
        sa.Column("border_contact", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["objects.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", "backend_version"),
    )
    with op.batch_alter_table("masklets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_masklets_object_id"), ["object_id"], unique=False)

    op.create_table(
        "reviews",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column(
            "mode",
            sa.Enum("paper", "direct", name="review_mode", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("verdict", sa.Boolean(), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("region_description_id", sa.String(length=32), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prompt_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["objects.id"],
        ),
        sa.ForeignKeyConstraint(
            ["region_description_id"],
            ["descriptions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", "mode", "model", "prompt_version"),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviews_object_id"), ["object_id"], unique=False)

    op.create_table(
        "audits",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("review_id", sa.String(length=32), nullable=False),
        sa.Column("auditor", sa.String(length=64), nullable=False),
        sa.Column("human_verdict", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("review_id", "auditor"),
    )
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audits_review_id"), ["review_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audits_review_id"))

    op.drop_table("audits")
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviews_object_id"))

    op.drop_table("reviews")
    with op.batch_alter_table("masklets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_masklets_object_id"))

    op.drop_table("masklets")
    with op.batch_alter_table("descriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_descriptions_object_id"))

    op.drop_table("descriptions")
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_samples_video_id"))
        batch_op.drop_index(batch_op.f("ix_samples_data_type"))

    op.drop_table("samples")
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_objects_video_id"))

    op.drop_table("objects")
    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_calls_run_id"))
        batch_op.drop_index(batch_op.f("ix_model_calls_agent"))

    op.drop_table("model_calls")
    op.drop_table("failures")
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_captions_video_id"))

    op.drop_table("captions")
    op.drop_table("videos")
    op.drop_table("runs")
