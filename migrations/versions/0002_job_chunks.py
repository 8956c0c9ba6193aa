"""job chunks, job counters, store generations, upload names

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_chunks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('image_ids', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('indexed', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('results', sa.JSON(), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'seq', name='uq_job_chunks_job_seq')
    )
    with op.batch_alter_table('job_chunks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_chunks_job_id'), ['job_id'], unique=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scanned', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('indexed', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('skipped', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('store_generation', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_name', sa.String(length=255), nullable=True))


def downgrade() -> None:
    # plain DROP COLUMNs (SQLite >= 3.35), never a batch rebuild: dropping the old collections or
    # images table would cascade to every row that refers to it (foreign keys are on)
    op.drop_column('images', 'client_name')
    op.drop_column('collections', 'store_generation')
    for column in ('skipped', 'indexed', 'scanned'):
        op.drop_column('jobs', column)
    with op.batch_alter_table('job_chunks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_chunks_job_id'))
    op.drop_table('job_chunks')
