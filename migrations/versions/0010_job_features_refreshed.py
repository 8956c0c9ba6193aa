"""jobs and job chunks: how many unchanged files had their local features found again

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('refreshed', sa.Integer(), server_default='0', nullable=False))
    op.add_column('job_chunks', sa.Column('refreshed', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('job_chunks') as batch:
        batch.drop_column('refreshed')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('refreshed')
