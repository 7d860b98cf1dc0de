"""runs: what made each run's results, beyond its resolved settings

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 11:20:00

`provenance` holds the config file, the --set overrides, the ENGINE_ variables that applied, where each plug-in
was imported from, the pipelines run and the lineages they made current (engine/store/views.py), so reading
commands can show a run's results without its flags or its PYTHONPATH. NULL for runs made before it: their view
is rebuilt from `config`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provenance", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("provenance")
