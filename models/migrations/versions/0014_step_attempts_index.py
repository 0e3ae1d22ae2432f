"""a step's attempts found by stage and target, not by reading the whole stage

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 09:10:00.000000
"""
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The new index starts with stage_id: it serves every read by stage the old one did.
    op.create_index('ix_step_stage_target_attempt', 'step', ['stage_id', 'target', 'attempt'],
                    unique=False)
    op.drop_index('ix_step_stage_id', table_name='step')


def downgrade() -> None:
    op.create_index('ix_step_stage_id', 'step', ['stage_id'], unique=False)
    op.drop_index('ix_step_stage_target_attempt', table_name='step')
