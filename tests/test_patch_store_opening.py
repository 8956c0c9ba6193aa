"""The patch store is opened only by what reads it: a duplicate scan and searches by picture and by
id read the global store alone (the patch store is ~20x its size: gigabytes at 100,000 images, read
whole from a FAISS file), and a region query opens it."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from dinoseek.settings import load_settings
from indexer.duplicates import find_duplicates
from indexer.jobs import index_paths
from indexer.library import Library
from indexer.query import search_by_id, search_files, search_region_files
from indexer.stores import StoreError
from tests.support.photos import skimage_photo

NAMES = ("coffee", "rocket", "astronaut", "chelsea")


@pytest.fixture
def indexed(tmp_path, tiny_model, monkeypatch):
    """Settings of an embedded FAISS library holding NAMES and an edited copy of the rocket."""
    for key in [k for k in os.environ if k.startswith("DINOSEEK_")]:
        monkeypatch.delenv(key)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in NAMES:
        skimage_photo(name).save(photos / f"{name}.jpg", quality=92)
    skimage_photo("rocket").resize((300, 200)).save(photos / "rocket-small.jpg", quality=70)
    settings = replace(load_settings(), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                       vector_backend="faiss", model=str(tiny_model))
    library = Library(settings)
    assert index_paths(library, "c", [photos]).indexed == len(NAMES) + 1
    library.close()
    return settings, photos


def _opening(library: Library, monkeypatch) -> list[str]:
    """The names of the stores the library opens from now on."""
    opened: list[str] = []
    backend = library.backend_of("c")
    open_store = backend.open

    def recording(spec):
        opened.append(spec.name)
        return open_store(spec)

    monkeypatch.setattr(backend, "open", recording)
    return opened


def test_scans_and_searches_open_the_global_store_alone_and_a_region_query_the_patches(indexed, monkeypatch) -> None:
    settings, photos = indexed
    library = Library(settings)
    try:
        opened = _opening(library, monkeypatch)
        groups = find_duplicates(library, "c")
        assert any(g.kind == "near" and len(g.image_ids) == 2 for g in groups), groups
        hits = search_files(library, "c", [photos / "rocket-small.jpg"], k=3)[0].results
        assert hits and hits[0].path.endswith("rocket.jpg")
        assert search_by_id(library, "c", hits[0].image_id, k=3)
        assert [name for name in opened if not name.endswith(".global")] == [], opened

        region = search_region_files(library, "c", [photos / "rocket-small.jpg"], [60, 40, 240, 160], k=3)[0]
        assert region.results
        assert [name for name in opened if name.endswith(".patches")] == ["c.patches"], opened
    finally:
        library.close()


def test_a_closed_collection_does_not_open_its_patch_store_afterwards(indexed) -> None:
    settings, _ = indexed
    library = Library(settings)
    with library.catalog.session() as s:
        stores = library.stores_for(s, library.get_collection(s, "c"))
    stores.close()
    with pytest.raises(StoreError, match="closed"):
        stores.patches
    library.close()
