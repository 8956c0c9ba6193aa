"""collection names unique whatever their case: 'Photos' and 'photos' would share store files on a case-insensitive filesystem

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    twins = op.get_bind().execute(sa.text(
        "select lower(name), count(*) from collections group by lower(name) having count(*) > 1")).all()
    if twins:
        names = ", ".join(f"{folded!r} ({n} collections)" for folded, n in twins)
        raise RuntimeError(f"collections whose names differ only in case share store files on case-insensitive "
                           f"filesystems: {names}; export one of each under another name and drop it, then upgrade")
    op.create_index('uq_collections_name_folded', 'collections', [sa.text('lower(name)')], unique=True)


def downgrade() -> None:
    op.drop_index('uq_collections_name_folded', table_name='collections')
