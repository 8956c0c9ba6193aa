"""image features: the version of the extractor that stored them, so a newer one refreshes them

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # features stored before this revision came from the first extractor (no window keypoints)
    op.add_column('image_features', sa.Column('extractor', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('image_features') as batch:
        batch.drop_column('extractor')
