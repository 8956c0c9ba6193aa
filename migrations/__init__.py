"""Alembic migrations of the catalog; ``indexer.catalog.schema`` applies them (``dinoseek db upgrade``)."""
