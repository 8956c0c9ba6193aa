"""collections record which kind of store holds their vectors (faiss, qdrant-edge, qdrant-server)

A plain install without FAISS keeps its vectors in Qdrant Edge, and a collection keeps its stores
when the default changes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # existing collections stay NULL: the library that opens one next records the kind it serves them with
    op.add_column('collections', sa.Column('vector_backend', sa.String(32), nullable=True))


def downgrade() -> None:
    # SQLite's batch mode rebuilds the table without its expression index (0006): drop and remake it
    op.drop_index('uq_collections_name_folded', table_name='collections')
    with op.batch_alter_table('collections') as batch:
        batch.drop_column('vector_backend')
    op.create_index('uq_collections_name_folded', 'collections', [sa.text('lower(name)')], unique=True)
