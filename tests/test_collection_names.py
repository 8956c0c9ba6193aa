"""Collection names that differ only in case are one name (issue 17, finding 15): their store files
would be one file on a case-insensitive filesystem, so the catalog refuses the second, on SQLite and
PostgreSQL alike, and the migration refuses a catalog that already holds such a pair."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlalchemy
from sqlalchemy.exc import IntegrityError

from dinoseek.settings import load_settings
from indexer.archive import export_collection, import_collection
from indexer.catalog import schema
from indexer.catalog.database import Catalog
from indexer.collections import create_collection
from indexer.errors import AlreadyExists
from indexer.jobs import index_paths
from indexer.library import Library
from tests.support.photos import skimage_photo


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_name_differing_only_in_case_is_refused(tmp_path, tiny_model, database, request) -> None:
    url = f"sqlite:///{tmp_path}/c.db" if database == "sqlite" else request.getfixturevalue("fresh_postgres")
    if database == "postgres":
        schema.upgrade(Catalog(url))
    library = Library(replace(load_settings({}), home=tmp_path / "home", database_url=url, model=str(tiny_model)))
    folder = tmp_path / "photos"
    folder.mkdir()
    skimage_photo("coffee").save(folder / "coffee.jpg")
    try:
        create_collection(library, "Photos")
        with pytest.raises(AlreadyExists, match="'Photos' exists, and 'photos' differs from it only in case"):
            create_collection(library, "photos")
        with pytest.raises(AlreadyExists, match="differs from it only in case"):
            index_paths(library, "PHOTOS", [folder])
        assert index_paths(library, "Photos", [folder]).indexed == 1  # the name itself still works
        export_collection(library, "Photos", tmp_path / "photos-export")
        with pytest.raises(AlreadyExists, match="differs from it only in case"):
            import_collection(library, tmp_path / "photos-export", "photos")
        with pytest.raises(IntegrityError), library.catalog.engine.begin() as conn:  # the database itself refuses
            conn.execute(sqlalchemy.text("insert into collections (name, store_generation, created_at) "
                                         "values ('pHoToS', 0, '2026-01-01')"))
    finally:
        library.close()


def test_the_migration_refuses_a_catalog_holding_such_a_pair(tmp_path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path}/old.db")
    schema.upgrade(catalog, "0005")
    with catalog.engine.begin() as conn:
        for name in ("holiday", "Holiday"):
            conn.execute(sqlalchemy.text("insert into collections (name, store_generation, created_at) "
                                         "values (:n, 0, '2026-01-01')"), {"n": name})
    with pytest.raises(RuntimeError, match="'holiday' \\(2 collections\\)"):
        schema.upgrade(catalog)
    assert schema.current_revision(catalog) == "0005"
    catalog.dispose()
