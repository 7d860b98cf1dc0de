"""why an auditor judged a pairing "different object": a reason code

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 15:10:00

A nullable column: audits made before it have no reason (NULL).
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('audits', schema=None) as batch_op:
        batch_op.drop_column('reason')
