"""Alembic migrations of the catalog; ``migrations.runner`` applies them (``dinoseek db upgrade``)."""
