"""The Alembic migrations run up and down on SQLite and the real PostgreSQL, and match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from indexer.catalog import schema
from indexer.catalog.database import Catalog, CatalogError
from indexer.catalog.models import Base


def _check_round_trip(catalog: Catalog) -> None:
    schema.upgrade(catalog)
    assert schema.current_revision(catalog) == schema.head_revision()
    tables = set(inspect(catalog.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    schema.downgrade(catalog, "base")
    assert set(inspect(catalog.engine).get_table_names()) <= {"alembic_version"}
    schema.upgrade(catalog)  # and back up again: downgrade left nothing behind that blocks it
    assert schema.current_revision(catalog) == schema.head_revision()


def test_migrations_round_trip_on_sqlite(tmp_path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    _check_round_trip(catalog)
    catalog.dispose()


def test_downgrading_keeps_every_row_of_the_tables_that_stay(tmp_path) -> None:
    """A downgrade drops columns in place: rebuilding a table on SQLite (batch mode) would drop the
    old one and cascade to every image row that refers to it."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    schema.upgrade(catalog)
    with catalog.engine.begin() as conn:
        conn.execute(text("insert into collections (name, store_generation, created_at) values ('lib', 0, '2026-01-01')"))
        conn.execute(text("insert into images (collection_id, path, status) values (1, '/p/a.jpg', 'indexed')"))
        conn.execute(text("insert into image_features (image_id, data) values (1, x'00')"))
    for revision in ("0006", "0004", "0001"):
        schema.downgrade(catalog, revision)
        with catalog.engine.connect() as conn:
            assert conn.execute(text("select count(*) from images")).scalar() == 1, revision
            if revision != "0001":
                assert conn.execute(text("select count(*) from image_features")).scalar() == 1, revision
    catalog.dispose()


def test_migrations_round_trip_on_postgres(fresh_postgres: str) -> None:
    catalog = Catalog(fresh_postgres)
    assert catalog.engine.dialect.name == "postgresql"
    _check_round_trip(catalog)
    catalog.dispose()


def test_server_database_is_not_upgraded_implicitly(fresh_postgres: str, tmp_path) -> None:
    catalog = Catalog(fresh_postgres)
    with pytest.raises(CatalogError, match="dinoseek db upgrade"):
        schema.ensure_schema(catalog)
    catalog.dispose()
    sqlite = Catalog(f"sqlite:///{tmp_path / 'auto.db'}")
    schema.ensure_schema(sqlite)  # the embedded catalog upgrades itself
    assert schema.current_revision(sqlite) == schema.head_revision()
    sqlite.dispose()
