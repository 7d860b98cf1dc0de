"""lineage on every stage's results, a request log, completion markers, fast re-ingest, run states

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 07:28:38.629113

Results are unique per lineage now (engine/store/current.py), not per model and prompt version, so the
old unique constraints give way to lineage ones. Rows from before keep lineage NULL: nothing is
rewritten or dropped. The old model_calls rows were the only accounting; each is copied into the
request log as one request, so totals over old runs stay what they were.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# SQLite keeps the old unique constraints unnamed: batch mode names them by this convention to drop them.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}
OLD_UNIQUE = {
    "descriptions": ["object_id", "kind", "model", "prompt_version"],
    "masklets": ["object_id", "backend_version"],
    "reviews": ["object_id", "mode", "model", "prompt_version"],
    "failures": ["unit_id", "stage"],
}


def _old_unique_name(table: str) -> str:
    cols = OLD_UNIQUE[table]
    for uc in sa.inspect(op.get_bind()).get_unique_constraints(table):
        name = uc.get("name")
        if uc["column_names"] == cols and name:
            return name  # PostgreSQL: the name the server gave it
    return f"uq_{table}_{'_'.join(cols)}"


def _batch(table: str):
    return op.batch_alter_table(table, schema=None, naming_convention=NAMING)


def upgrade() -> None:
    op.create_table(
        "completions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("video_id", sa.String(length=32), nullable=False),
        sa.Column("unit_id", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("lineage", sa.String(length=32), nullable=False),
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
        sa.UniqueConstraint("unit_id", "stage", "lineage", name="uq_completions_unit_stage_lineage"),
    )
    with op.batch_alter_table("completions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_completions_video_id"), ["video_id"], unique=False)

    op.create_table(
        "requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("role", sa.String(length=48), nullable=False),
        sa.Column("endpoint_key", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("output_mode", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.Column("latency_s", sa.Double(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_requests_request_hash"), ["request_hash"], unique=False)
        batch_op.create_index("ix_requests_run_role", ["run_id", "role"], unique=False)

    old_names = {t: _old_unique_name(t) for t in OLD_UNIQUE}

    with _batch("descriptions") as batch_op:
        batch_op.drop_constraint(old_names["descriptions"], type_="unique")
        batch_op.add_column(sa.Column("lineage", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_descriptions_lineage"), ["lineage"], unique=False)
        batch_op.create_unique_constraint("uq_descriptions_object_kind_lineage", ["object_id", "kind", "lineage"])

    with _batch("failures") as batch_op:
        batch_op.drop_constraint(old_names["failures"], type_="unique")
        batch_op.add_column(sa.Column("video_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("lineage", sa.String(length=32), server_default="", nullable=False))
        batch_op.alter_column(
            "stage", existing_type=sa.VARCHAR(length=32), type_=sa.String(length=64), existing_nullable=False
        )
        batch_op.create_index(batch_op.f("ix_failures_video_id"), ["video_id"], unique=False)
        batch_op.create_unique_constraint("uq_failures_unit_stage_lineage", ["unit_id", "stage", "lineage"])

    with _batch("masklets") as batch_op:
        batch_op.drop_constraint(old_names["masklets"], type_="unique")
        batch_op.add_column(sa.Column("lineage", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_masklets_lineage"), ["lineage"], unique=False)
        batch_op.create_unique_constraint("uq_masklets_object_lineage", ["object_id", "lineage"])

    with _batch("reviews") as batch_op:
        batch_op.drop_constraint(old_names["reviews"], type_="unique")
        batch_op.add_column(sa.Column("lineage", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("masklet_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("description_ids", sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f("ix_reviews_lineage"), ["lineage"], unique=False)
        batch_op.create_unique_constraint("uq_reviews_object_lineage", ["object_id", "lineage"])
        batch_op.create_foreign_key("fk_reviews_masklet_id", "masklets", ["masklet_id"], ["id"])

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.alter_column(
            "status", existing_type=sa.VARCHAR(length=16), type_=sa.String(length=32), existing_nullable=False
        )

    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lineage", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_samples_lineage"), ["lineage"], unique=False)

    with op.batch_alter_table("videos", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mtime_ns", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_videos_source_path", ["source_root", "path"], unique=False)

    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("video_id", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_model_calls_video_id"), ["video_id"], unique=False)

    # The old ledger's rows become one request each (their retries were never recorded).
    op.execute("""
        INSERT INTO requests (id, run_id, role, endpoint_key, model, endpoint, request_hash, kind, attempt,
                              output_mode, status, tokens_in, tokens_out, cost_usd, latency_s, answer, sent_at,
                              finished_at)
        SELECT id, run_id, agent, agent, model, endpoint, request_hash, 'call', 1, '', status, tokens_in, tokens_out,
               cost_usd, latency_s, error, created_at, created_at
        FROM model_calls
    """)


def downgrade() -> None:
    op.execute("DELETE FROM requests")
    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_calls_video_id"))
        batch_op.drop_column("video_id")

    with op.batch_alter_table("videos", schema=None) as batch_op:
        batch_op.drop_index("ix_videos_source_path")
        batch_op.drop_column("mtime_ns")

    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_samples_lineage"))
        batch_op.drop_column("lineage")

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.alter_column(
            "status", existing_type=sa.String(length=32), type_=sa.VARCHAR(length=16), existing_nullable=False
        )
        batch_op.drop_column("reason")
        batch_op.drop_column("heartbeat_at")

    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_constraint("fk_reviews_masklet_id", type_="foreignkey")
        batch_op.drop_constraint("uq_reviews_object_lineage", type_="unique")
        batch_op.drop_index(batch_op.f("ix_reviews_lineage"))
        batch_op.drop_column("description_ids")
        batch_op.drop_column("masklet_id")
        batch_op.drop_column("lineage")
        batch_op.create_unique_constraint(f"uq_reviews_{'_'.join(OLD_UNIQUE['reviews'])}", OLD_UNIQUE["reviews"])

    with op.batch_alter_table("masklets", schema=None) as batch_op:
        batch_op.drop_constraint("uq_masklets_object_lineage", type_="unique")
        batch_op.drop_index(batch_op.f("ix_masklets_lineage"))
        batch_op.drop_column("lineage")
        batch_op.create_unique_constraint(f"uq_masklets_{'_'.join(OLD_UNIQUE['masklets'])}", OLD_UNIQUE["masklets"])

    with op.batch_alter_table("failures", schema=None) as batch_op:
        batch_op.drop_constraint("uq_failures_unit_stage_lineage", type_="unique")
        batch_op.drop_index(batch_op.f("ix_failures_video_id"))
        batch_op.alter_column(
            "stage", existing_type=sa.String(length=64), type_=sa.VARCHAR(length=32), existing_nullable=False
        )
        batch_op.drop_column("lineage")
        batch_op.drop_column("video_id")
        batch_op.create_unique_constraint(f"uq_failures_{'_'.join(OLD_UNIQUE['failures'])}", OLD_UNIQUE["failures"])

    with op.batch_alter_table("descriptions", schema=None) as batch_op:
        batch_op.drop_constraint("uq_descriptions_object_kind_lineage", type_="unique")
        batch_op.drop_index(batch_op.f("ix_descriptions_lineage"))
        batch_op.drop_column("lineage")
        batch_op.create_unique_constraint(
            f"uq_descriptions_{'_'.join(OLD_UNIQUE['descriptions'])}", OLD_UNIQUE["descriptions"]
        )

    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_index("ix_requests_run_role")
        batch_op.drop_index(batch_op.f("ix_requests_request_hash"))

    op.drop_table("requests")
    with op.batch_alter_table("completions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_completions_video_id"))

    op.drop_table("completions")
