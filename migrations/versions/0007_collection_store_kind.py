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
    # a plain DROP COLUMN (SQLite >= 3.35), never a batch rebuild: dropping the old collections table
    # would cascade to every image row (foreign keys are on)
    op.drop_column('collections', 'vector_backend')
