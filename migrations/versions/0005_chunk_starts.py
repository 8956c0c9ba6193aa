"""how many times each job chunk was started, so a chunk that kills its worker is not redelivered forever

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('job_chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('starts', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('job_chunks', schema=None) as batch_op:
        batch_op.drop_column('starts')
