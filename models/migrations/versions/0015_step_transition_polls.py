"""when GetState saw each step's transition under way and settled

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 22:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Steps recorded before have neither: their durations, which only ever made expected
    # times grow, are no longer learned from.
    with op.batch_alter_table('step', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seen_moving_after', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('seen_settled_after', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('step', schema=None) as batch_op:
        batch_op.drop_column('seen_settled_after')
        batch_op.drop_column('seen_moving_after')
