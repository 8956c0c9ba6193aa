"""duplicate review: judged pairs kept for re-grouping, decisions, the trash, reference folders, thresholds

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('collections', sa.Column('reference_folders', sa.JSON(), nullable=True))
    op.add_column('collections', sa.Column('review_thresholds', sa.JSON(), nullable=True))
    op.create_table(
        'duplicate_edges',
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('a', sa.Integer(), nullable=False),
        sa.Column('b', sa.Integer(), nullable=False),
        sa.Column('verdict', sa.String(length=16), nullable=False),
        sa.Column('copy_probability', sa.Float(), nullable=False),
        sa.Column('descriptor', sa.Float(), nullable=False),
        sa.Column('evidence', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['a'], ['images.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['b'], ['images.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('a', 'b'),
    )
    op.create_index('ix_duplicate_edges_collection_id', 'duplicate_edges', ['collection_id'])
    op.create_index('ix_duplicate_edges_b', 'duplicate_edges', ['b'])
    op.create_table(
        'duplicate_decisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('other_image_id', sa.Integer(), nullable=True),
        sa.Column('rule', sa.String(length=255), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['other_image_id'], ['images.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('kind', 'image_id', 'other_image_id', name='uq_duplicate_decisions'),
    )
    op.create_index('ix_duplicate_decisions_collection_id', 'duplicate_decisions', ['collection_id'])
    op.create_index('ix_duplicate_decisions_image_id', 'duplicate_decisions', ['image_id'])
    op.create_index('ix_duplicate_decisions_other_image_id', 'duplicate_decisions', ['other_image_id'])
    op.create_table(
        'trash_entries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('collection_id', sa.Integer(), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=False),
        sa.Column('original_path', sa.Text(), nullable=False),
        sa.Column('trash_path', sa.Text(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=True),
        sa.Column('size_bytes', sa.BigInteger(), nullable=True),
        sa.Column('client_name', sa.String(length=255), nullable=True),
        sa.Column('trashed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('restored_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('restore_job_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_trash_entries_collection_id', 'trash_entries', ['collection_id'])


def downgrade() -> None:
    op.drop_index('ix_trash_entries_collection_id', table_name='trash_entries')
    op.drop_table('trash_entries')
    for index in ('other_image_id', 'image_id', 'collection_id'):
        op.drop_index(f'ix_duplicate_decisions_{index}', table_name='duplicate_decisions')
    op.drop_table('duplicate_decisions')
    op.drop_index('ix_duplicate_edges_b', table_name='duplicate_edges')
    op.drop_index('ix_duplicate_edges_collection_id', table_name='duplicate_edges')
    op.drop_table('duplicate_edges')
    # a plain DROP COLUMN (SQLite >= 3.35), never a batch rebuild: dropping the old collections table
    # would cascade to every image row (foreign keys are on)
    op.drop_column('collections', 'review_thresholds')
    op.drop_column('collections', 'reference_folders')
