"""Backup / restore of a whole library and export / import of one collection, across backends.

A real library (photos, edited copies, an identical copy, a broken file) is indexed on SQLite +
FAISS, backed up, and restored into a fresh PostgreSQL database with embedded Qdrant Edge stores:
searches, region searches and duplicate groups must come back the same, row for row and id for
id. An exported collection imported into a library that already holds another gives the same
answers under new ids. Archives that cannot be trusted, and targets that are not empty, are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, replace
from datetime import timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from dinoseek.cli import main
from dinoseek.settings import load_settings
from indexer.archive import backup, export_collection, import_collection, prepare_restore_target, restore
from indexer.archive.format import ArchiveError, TargetNotEmpty
from indexer.catalog.models import Base, Image, ImageFeatures
from indexer.collections import collection_counts
from indexer.duplicates import find_duplicates, list_groups
from indexer.errors import Busy, InvalidRequest, NotFound
from indexer.ingest import local_features
from indexer.jobs import create_index_job, fail_job, index_paths
from indexer.library import Library
from indexer.query.regions import search_region_files
from indexer.query.search import search_by_id, search_files
from indexer.stores.patches import patch_ids
from tests.support.databases import scratch_databases
from tests.support.photos import skimage_photo

PHOTOS = ("coffee", "rocket", "astronaut", "chelsea", "camera", "immunohistochemistry")
BOX = [40, 40, 200, 160]


def _settings(home: Path, model: Path, **overrides):
    url = overrides.pop("database_url", None) or f"sqlite:///{home / 'dinoseek.db'}"
    return replace(load_settings({}), home=home, database_url=url, model=str(model), **overrides)


def _photos(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in PHOTOS:
        img = skimage_photo(name)
        img.save(root / f"{name}.jpg", quality=90)
        img.resize((img.width // 2, img.height // 2)).save(root / f"{name}_small.jpg", quality=70)
    shutil.copy(root / "rocket.jpg", root / "rocket_copy.jpg")  # identical bytes: an exact group
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # a failed row and a job error
    return root


def _queries(root: Path) -> list[Path]:
    root.mkdir(parents=True)
    chelsea, coffee, astronaut = skimage_photo("chelsea"), skimage_photo("coffee"), skimage_photo("astronaut")
    out = [root / "chelsea_crop.jpg", root / "coffee_tiny.jpg", root / "astronaut_grey.png"]
    chelsea.crop((10, 10, chelsea.width - 20, chelsea.height - 10)).save(out[0], quality=55)
    coffee.resize((160, 100)).save(out[1], quality=50)
    astronaut.convert("L").save(out[2])
    return out


def _state(library: Library, name: str, queries: list[Path]) -> dict:
    """Everything a user sees of a collection: searches (by file, by id, by region), saved and
    recomputed duplicate groups, counts."""
    searches = [[(h.image_id, h.path, h.score) for h in r.results]
                for r in search_files(library, name, queries, k=20)]
    with library.catalog.session() as s:
        collection = library.get_collection(s, name)
        indexed = list(s.scalars(select(Image.id).where(Image.collection_id == collection.id,
                                                        Image.status == "indexed").order_by(Image.id)))
    by_id = {i: [(h.image_id, h.path, h.score) for h in search_by_id(library, name, i, k=5)] for i in indexed[:4]}
    regions = [[(h.image_id, h.path, h.box) for h in r.results]
               for r in search_region_files(library, name, queries[:2], BOX, k=5)]
    saved, _ = list_groups(library, name)
    groups = [(g["kind"], g["score"], g["image_ids"], g["paths"]) for g in saved]
    found = [(g.kind, g.image_ids, g.paths) for g in find_duplicates(library, name, threshold=0.95, save=False)]
    (counts,) = [c for c in collection_counts(library) if c["name"] == name]
    return {"search": searches, "by_id": by_id, "regions": regions, "groups": groups, "found": found,
            "counts": counts, "indexed": indexed}


def _content(path: str, cache: dict[str, str] = {}) -> str:  # noqa: B006 - a deliberate cache
    """What a result is, whatever its id: identical files (rocket.jpg, rocket_copy.jpg) have identical
    vectors, so their order among themselves is the backend's choice."""
    if path not in cache:
        cache[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return cache[path]


def _assert_same(got: dict, expected: dict, new_id=lambda i: i) -> None:
    """``got`` is ``expected`` with image ids passed through ``new_id``: the same images (ids and
    paths) in the same order (up to identical files), scores within 1e-5."""

    def same_hits(a, b, with_scores=True):
        assert {(i, p) for i, p, *_ in a} == {(new_id(i), p) for i, p, *_ in b}
        assert [(_content(p), *rest) for _, p, *rest in a if not with_scores] == \
            [(_content(p), *rest) for _, p, *rest in b if not with_scores]
        assert [_content(p) for _, p, *_ in a] == [_content(p) for _, p, *_ in b]
        if with_scores:
            np.testing.assert_allclose([s for *_, s in a], [s for *_, s in b], atol=1e-5)

    assert len(got["search"]) == len(expected["search"]) and all(expected["search"])
    for a, b in zip(got["search"], expected["search"]):
        same_hits(a, b)
    assert got["indexed"] == [new_id(i) for i in expected["indexed"]]
    assert got["by_id"].keys() == {new_id(i) for i in expected["by_id"]}
    for i, hits in expected["by_id"].items():
        same_hits(got["by_id"][new_id(i)], hits)
    assert len(got["regions"]) == len(expected["regions"]) and all(expected["regions"])
    for a, b in zip(got["regions"], expected["regions"]):
        same_hits(a, b, with_scores=False)  # (id, path, box): boxes must match too
    assert got["groups"] == [(k, s, [new_id(i) for i in ids], paths) for k, s, ids, paths in expected["groups"]]
    assert {"exact", "near"} <= {g[0] for g in expected["groups"]}
    assert got["found"] == [(k, [new_id(i) for i in ids], paths) for k, ids, paths in expected["found"]]
    same = ("name", "vector_backend", "last_job")  # the target's own store kind holds the vectors; jobs get new ids
    assert {k: v for k, v in got["counts"].items() if k not in same} == \
        {k: v for k, v in expected["counts"].items() if k not in same}
    assert {**got["counts"]["last_job"], "id": None} == {**expected["counts"]["last_job"], "id": None}


def _catalog(library: Library) -> dict[str, list[dict]]:
    """Every row of every table, datetimes in UTC (SQLite hands them back naive); but a collection's
    store kind, which is the library's that holds its vectors (checked apart)."""
    out = {}
    with library.catalog.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = []
            for row in conn.execute(select(table).order_by(*table.primary_key.columns)).mappings():
                rows.append({k: (v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc))
                             if hasattr(v, "tzinfo") and hasattr(v, "hour") else v for k, v in row.items()
                             if (table.name, k) != ("collections", "vector_backend")})
            out[table.name] = rows
    return out


def _vectors(library: Library, name: str, image_ids: list[int], grids: dict[int, tuple[int, int]]):
    """A collection's global vectors and patch cells, by image id."""
    with library.catalog.session() as s:
        stores = library.stores_for(s, library.get_collection(s, name))
    found, vectors = stores.global_.fetch(np.array(image_ids))
    assert found.tolist() == image_ids
    cells = {}
    for i in image_ids:
        wanted = patch_ids(i, *grids[i])
        got, v = stores.patches.fetch(wanted)
        assert got.tolist() == wanted.tolist()
        cells[i] = v
    return vectors, cells


def _grids(library: Library, name: str) -> dict[int, tuple[int, int]]:
    with library.catalog.session() as s:
        collection = library.get_collection(s, name)
        return {r.id: (r.patch_rows, r.patch_cols) for r in s.scalars(select(Image).where(
            Image.collection_id == collection.id, Image.status == "indexed"))}


@dataclass
class Source:
    root: Path
    folder: Path
    queries: list[Path]
    library: Library
    state: dict


@pytest.fixture(scope="module")
def source(tmp_path_factory, tiny_model) -> Source:
    """A collection indexed on SQLite + FAISS, with a duplicate scan saved."""
    root = tmp_path_factory.mktemp("source")
    folder = _photos(root / "photos")
    queries = _queries(root / "queries")
    library = Library(_settings(root / "home", tiny_model))
    report = index_paths(library, "lib", [folder])
    assert (report.indexed, report.failed) == (13, 1)
    find_duplicates(library, "lib", threshold=0.95)
    yield Source(root, folder, queries, library, _state(library, "lib", queries))
    library.close()


@pytest.fixture
def scratch_postgres(postgres_url):
    with scratch_databases(postgres_url, "dinoseek_backup") as databases:
        yield databases


def test_every_store_scrolls_out_everything_it_holds(tmp_path) -> None:
    """The store protocol's scroll, on every backend: each live vector once, ids ascending, in batches."""
    from qdrant_client import QdrantClient

    from indexer.stores.base import StoreSpec
    from indexer.stores.faiss_store import FaissStore
    from indexer.stores.qdrant_edge_store import QdrantEdgeStore
    from indexer.stores.qdrant_server_store import QdrantServerStore

    rng = np.random.default_rng(3)
    x = rng.standard_normal((700, 24)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = (np.arange(700, dtype=np.int64) * 7919 + 11)[::-1].copy()  # not positions, not in order
    spec = StoreSpec("s", 24)
    for store in (FaissStore(spec, tmp_path / "faiss"), QdrantEdgeStore(spec, tmp_path / "edge"),
                  QdrantServerStore(spec, QdrantClient(path=str(tmp_path / "local")), owns_client=True)):
        try:
            store.upsert(ids, x)
            store.delete(ids[:30])
            store.upsert(ids[30:40], x[:10])  # replaced vectors come out as they are now
            batches = list(store.scroll(256))
            assert [len(b) for b, _ in batches] == [256, 256, 158], type(store).__name__
            got_ids = np.concatenate([b for b, _ in batches])
            got = np.concatenate([v for _, v in batches])
            order = np.argsort(ids[30:])
            expected = np.concatenate([x[:10], x[40:]])[order]
            np.testing.assert_array_equal(got_ids, ids[30:][order])
            np.testing.assert_allclose(got, expected, atol=1e-6)
            assert got.dtype == np.float32 and got_ids.dtype == np.int64
        finally:
            store.close()


def test_sqlite_faiss_backup_restores_into_postgres_and_qdrant_edge(source, tmp_path, tiny_model,
                                                                    scratch_postgres) -> None:
    archive = tmp_path / "library.tar"
    written = backup(source.library, archive)
    assert tarfile.is_tarfile(archive) and written.kind == "library"
    assert written.vectors["lib.global"] == 13 and written.rows["images"] == 14
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]

    url = scratch_postgres.create()
    settings = _settings(tmp_path / "restored", tiny_model, database_url=url, vector_backend="qdrant")
    prepare_restore_target(settings)  # a fresh database: schema first
    target = Library(settings)
    try:
        report = restore(target, archive)
        assert report.rows == written.rows and report.vectors == written.vectors
        assert target.catalog.engine.dialect.name == "postgresql"
        assert (tmp_path / "restored" / "stores" / "lib.global" / "edge_config.json").exists()  # an Edge shard
        assert _catalog(target) == _catalog(source.library)  # every row, every column, every id
        assert target.backend_of("lib").name == "qdrant-edge" and source.library.backend_of("lib").name == "faiss"
        assert len(_catalog(target)["image_features"]) == 13  # each indexed image's local features came too
        _assert_same(_state(target, "lib", source.queries), source.state)
        grids = _grids(source.library, "lib")
        assert grids == _grids(target, "lib")
        ids = sorted(grids)
        vectors, cells = _vectors(target, "lib", ids, grids)
        old_vectors, old_cells = _vectors(source.library, "lib", ids, grids)
        np.testing.assert_allclose(vectors, old_vectors, atol=1e-6)
        for i in ids:
            np.testing.assert_allclose(cells[i], old_cells[i], atol=1e-3)

        # a second restore into the now full catalog is refused, naming it
        with pytest.raises(TargetNotEmpty, match=r"catalog at postgresql\+psycopg://.*dinoseek_backup_.* is not "
                                                 r"empty \(.*images: 14 rows"):
            restore(target, archive)
        # new rows get ids past the restored ones (PostgreSQL sequences were moved), and the
        # restored collection keeps working: index a new photo, then scan it for duplicates
        extra = tmp_path / "extra"
        extra.mkdir()
        skimage_photo("hubble_deep_field").save(extra / "hubble.jpg", quality=90)
        before = _catalog(target)
        more = index_paths(target, "lib", [extra])
        assert more.indexed == 1 and more.job_id == max(r["id"] for r in before["jobs"]) + 1
        find_duplicates(target, "lib", threshold=0.95)
        after = _catalog(target)
        assert max(r["id"] for r in after["images"]) == max(r["id"] for r in before["images"]) + 1
        assert min(r["id"] for r in after["duplicate_groups"]) > max(r["id"] for r in before["duplicate_groups"])
    finally:
        target.close()


def test_refused_archives_and_targets_leave_nothing_behind(source, tmp_path, tiny_model) -> None:
    archive = tmp_path / "library"  # the directory form
    backup(source.library, archive)
    assert (archive / "manifest.json").is_file() and (archive / "catalog" / "images.jsonl").is_file()
    with pytest.raises(InvalidRequest, match="library already exists; choose a new name"):
        backup(source.library, archive)

    # the source library itself is not empty
    with pytest.raises(TargetNotEmpty, match=r"catalog at sqlite:///.*is not empty \(.*collections: 1 rows.*images: 14"):
        restore(source.library, archive)

    empty = Library(_settings(tmp_path / "empty", tiny_model))
    try:
        copies = iter(range(100))

        def tampered(rel: str, edit) -> Path:
            copy = tmp_path / f"tampered-{next(copies)}"
            shutil.copytree(archive, copy)
            edit(copy / rel)
            return copy

        def flip_byte(path: Path) -> None:
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x01
            path.write_bytes(bytes(data))

        for rel in ("catalog/images.jsonl", "vectors/lib/patches.vectors.npy", "vectors/lib/global.ids.npy"):
            with pytest.raises(ArchiveError, match=f"{rel} does not match its checksum"):
                restore(empty, tampered(rel, flip_byte))
        with pytest.raises(ArchiveError, match="catalog/jobs.jsonl is missing"):
            restore(empty, tampered("catalog/jobs.jsonl", Path.unlink))

        def manifest(change):
            def edit(path: Path) -> None:
                doc = json.loads(path.read_text())
                change(doc)
                path.write_text(json.dumps(doc))
            return edit

        with pytest.raises(ArchiveError, match="catalog revision 0000_elsewhere; this dinoseek .* is at revision"):
            restore(empty, tampered("manifest.json", manifest(lambda d: d.update(alembic_revision="0000_elsewhere"))))
        with pytest.raises(ArchiveError, match="format 'dinoseek-archive/9'"):
            restore(empty, tampered("manifest.json", manifest(lambda d: d.update(format="dinoseek-archive/9"))))
        with pytest.raises(ArchiveError, match="use `dinoseek restore`"):
            import_collection(empty, archive)
        with pytest.raises(ArchiveError, match="nowhere.tar does not exist"):
            restore(empty, tmp_path / "nowhere.tar")
        truncated = tmp_path / "truncated.tar"
        backup(source.library, tmp_path / "whole.tar")
        truncated.write_bytes((tmp_path / "whole.tar").read_bytes()[:3000])
        with pytest.raises(ArchiveError, match="truncated.tar"):
            restore(empty, truncated)
        assert not any(_catalog(empty).values())  # nothing was written by any refused restore

        # an empty catalog, but stores that already hold vectors
        stale = Library(_settings(tmp_path / "stale", tiny_model))
        try:
            shutil.copytree(source.root / "home" / "stores", tmp_path / "stale" / "stores")
            with pytest.raises(TargetNotEmpty, match="vector store 'lib.global' at .*stale.* already holds 13 vectors"):
                restore(stale, archive)
            assert not any(_catalog(stale).values())
        finally:
            stale.close()

        # the untouched archive restores, into SQLite and FAISS this time
        restore(empty, archive)
        _assert_same(_state(empty, "lib", source.queries), source.state)
    finally:
        empty.close()


def test_export_import_gives_the_same_answers_under_new_ids(source, tmp_path, tiny_model) -> None:
    out = tmp_path / "lib-export.tar"
    exported = export_collection(source.library, "lib", out)
    assert exported.kind == "collection" and "job_chunks" not in exported.rows
    with pytest.raises(NotFound, match="no collection named 'nope'"):
        export_collection(source.library, "nope", tmp_path / "nope.tar")

    other = tmp_path / "other-photos"
    other.mkdir()
    for name in ("hubble_deep_field", "coins", "astronaut"):
        skimage_photo(name).save(other / f"{name}.jpg", quality=85)
    target = Library(_settings(tmp_path / "target", tiny_model, vector_backend="qdrant"))
    try:
        index_paths(target, "holiday", [other])
        holiday_queries = [other / "coins.jpg"]
        holiday = [(h.image_id, h.score) for h in search_files(target, "holiday", holiday_queries, k=5)[0].results]

        report = import_collection(target, out)
        assert report.collections == ["lib"] and report.vectors == exported.vectors
        with source.library.catalog.session() as s:
            old = {r.path: r.id for r in s.scalars(select(Image))}
        with target.catalog.session() as s:
            new = {r.path: r.id for r in s.scalars(select(Image).where(
                Image.collection_id == target.get_collection(s, "lib").id))}
        assert new.keys() == old.keys()
        mapping = {old[p]: new[p] for p in old}
        assert all(mapping[i] != i for i in mapping)  # the other collection holds the old ids
        _assert_same(_state(target, "lib", source.queries), source.state, new_id=mapping.__getitem__)

        # patch cells moved with their images: cell c of image i is cell c of mapping[i]
        grids = _grids(source.library, "lib")
        old_vectors, old_cells = _vectors(source.library, "lib", sorted(grids), grids)
        new_grids = {mapping[i]: g for i, g in grids.items()}
        vectors, cells = _vectors(target, "lib", [mapping[i] for i in sorted(grids)], new_grids)
        np.testing.assert_allclose(vectors, old_vectors, atol=1e-6)
        for i in grids:
            np.testing.assert_allclose(cells[mapping[i]], old_cells[i], atol=1e-3)

        # and their local features, byte for byte, with the version of the extractor that found them
        with source.library.catalog.session() as s:
            old_features = {r.image_id: (r.data, r.extractor) for r in s.scalars(select(ImageFeatures))}
        with target.catalog.session() as s:
            new_features = {r.image_id: (r.data, r.extractor) for r in s.scalars(select(ImageFeatures))}
        assert {extractor for _, extractor in old_features.values()} == {local_features.EXTRACTOR}
        assert len(old_features) == 13 and {mapping[i]: d for i, d in old_features.items()}.items() <= new_features.items()

        # the collection that was there is untouched; the model row is shared, not duplicated
        assert [(h.image_id, h.score) for h in search_files(target, "holiday", holiday_queries, k=5)[0].results] == holiday
        assert len(_catalog(target)["models"]) == 1

        with pytest.raises(TargetNotEmpty, match="collection 'lib' already exists .* --as NAME"):
            import_collection(target, out)
        again = import_collection(target, out, "lib-2")
        assert again.collections == ["lib-2"] and again.vectors == {"lib-2.global": 13, "lib-2.patches":
                                                                    exported.vectors["lib.patches"]}
        copy = _state(target, "lib-2", source.queries)
        assert [[_content(p) for _, p, _ in hits] for hits in copy["search"]] == \
            [[_content(p) for _, p, _ in hits] for hits in source.state["search"]]
    finally:
        target.close()


@pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")
def test_import_into_the_qdrant_multivector_patch_layout(source, tmp_path, tiny_model, monkeypatch) -> None:
    """A collection imported into a Qdrant server (qdrant-client local mode) whose patch store is
    one multivector per image: every cell arrives in its image's point, searches answer as on the
    source, and it exports again with the same vectors (the store scrolls its cells back out)."""
    from qdrant_client import QdrantClient

    import indexer.stores.qdrant_server_store as qss

    client = QdrantClient(location=":memory:")

    class Shared:  # one local "server" behind every connect(); the stores must not close it
        def __getattr__(self, name):
            return getattr(client, name)

        def close(self) -> None:
            pass

    monkeypatch.setattr(qss, "connect", lambda url, config=None, **kwargs: Shared())
    exported = export_collection(source.library, "lib", tmp_path / "lib-export.tar")
    target = Library(_settings(tmp_path / "target", tiny_model, vector_backend="qdrant",
                               qdrant_url="http://qdrant.invalid:6333", qdrant_patch_layout="multivector"))
    try:
        report = import_collection(target, tmp_path / "lib-export.tar")
        assert report.vectors == exported.vectors
        assert client.get_collection("lib.patches").config.params.vectors.multivector_config is not None
        grids = _grids(source.library, "lib")
        assert client.count("lib.patches").count == len(grids)  # one point per image
        with source.library.catalog.session() as s:
            old = {r.path: r.id for r in s.scalars(select(Image))}
        with target.catalog.session() as s:
            new = {r.path: r.id for r in s.scalars(select(Image))}
        mapping = {old[p]: new[p] for p in old}
        _, old_cells = _vectors(source.library, "lib", sorted(grids), grids)
        _, cells = _vectors(target, "lib", [mapping[i] for i in sorted(grids)],
                            {mapping[i]: g for i, g in grids.items()})
        for i in grids:
            np.testing.assert_allclose(cells[mapping[i]], old_cells[i], atol=1e-3)
        found = search_files(target, "lib", source.queries, k=20)
        assert [[_content(h.path) for h in r.results] for r in found] == \
            [[_content(p) for _, p, _ in hits] for hits in source.state["search"]]
        assert all(r.results for r in search_region_files(target, "lib", source.queries[:2], BOX, k=5))
        again = export_collection(target, "lib", tmp_path / "again.tar")
        assert again.vectors == exported.vectors
    finally:
        target.close()
        client.close()


def test_backup_refuses_while_a_collection_is_being_indexed_or_written(tmp_path, tiny_model, monkeypatch) -> None:
    import indexer.archive.common
    from indexer.stores.locks import collection_writer_lock

    folder = tmp_path / "photos"
    folder.mkdir()
    skimage_photo("coffee").save(folder / "coffee.jpg")
    library = Library(_settings(tmp_path / "home", tiny_model))
    try:
        index_paths(library, "lib", [folder])
        job = create_index_job(library, "lib", [folder])  # queued: a worker would pick it up
        for attempt in (lambda: backup(library, tmp_path / "b.tar"),
                        lambda: export_collection(library, "lib", tmp_path / "e.tar")):
            with pytest.raises(Busy, match=f"collection 'lib' is being indexed by job {job} \\(queued\\)"):
                attempt()
        fail_job(library, job, "given up")
        monkeypatch.setattr(indexer.archive.common, "LOCK_TIMEOUT", 0.3)
        with collection_writer_lock(library.stores_dir, "lib"):  # a worker writing its chunk
            with pytest.raises(Busy, match="being written by another process"):
                backup(library, tmp_path / "b.tar")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "photos"]  # no archive, no leftovers
        assert backup(library, tmp_path / "b.tar").vectors["lib.global"] == 1
    finally:
        library.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dinoseek.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_cli_backup_restore_export_import(source, tmp_path, tiny_model, capsys, monkeypatch) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DINOSEEK_")}
    base.update(DINOSEEK_MODEL=str(tiny_model), OMP_NUM_THREADS="1")
    out = _cli(dict(base, DINOSEEK_HOME=str(source.root / "home")), "backup", str(tmp_path / "b.tar"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["vectors"]["lib.global"] == 13
    restored_env = dict(base, DINOSEEK_HOME=str(tmp_path / "restored"), DINOSEEK_VECTOR_BACKEND="qdrant")
    out = _cli(restored_env, "restore", str(tmp_path / "b.tar"))
    assert out.returncode == 0, out.stderr
    assert "restored" in out.stdout and "13 images" not in out.stdout and "14 images" in out.stdout

    for key in [k for k in os.environ if k.startswith("DINOSEEK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DINOSEEK_MODEL", str(tiny_model))

    def run(home: Path, *argv: str, backend: str = "faiss") -> tuple[int, str, str]:
        monkeypatch.setenv("DINOSEEK_HOME", str(home))
        monkeypatch.setenv("DINOSEEK_VECTOR_BACKEND", backend)
        code = main(list(argv))
        stdout, stderr = capsys.readouterr()
        return code, stdout, stderr

    query = [str(q) for q in source.queries]
    code, original, _ = run(source.root / "home", "search", *query, "--collection", "lib", "--json")
    code2, restored, err = run(tmp_path / "restored", "search", *query, "--collection", "lib", "--json",
                               backend="qdrant")
    assert code == code2 == 0, err
    original, restored = json.loads(original), json.loads(restored)
    for a, b in zip(original["queries"], restored["queries"]):
        assert {(h["image_id"], h["path"]) for h in a["results"]} == {(h["image_id"], h["path"]) for h in b["results"]}
        assert [_content(h["path"]) for h in a["results"]] == [_content(h["path"]) for h in b["results"]]
        np.testing.assert_allclose([h["score"] for h in a["results"]], [h["score"] for h in b["results"]], atol=2e-6)

    # errors: one line naming what is wrong, exit status 2
    code, _, err = run(tmp_path / "restored", "restore", str(tmp_path / "missing.tar"), backend="qdrant")
    assert code == 2 and err.strip() == f"dinoseek restore: {tmp_path / 'missing.tar'} does not exist"
    code, _, err = run(tmp_path / "restored", "restore", str(tmp_path / "b.tar"), backend="qdrant")
    assert code == 2 and "is not empty" in err and "Traceback" not in err
    code, _, err = run(source.root / "home", "backup", str(tmp_path / "b.tar"))
    assert code == 2 and "already exists" in err
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar file at all" * 40)
    code, _, err = run(tmp_path / "fresh", "restore", str(bad))
    assert code == 2 and "bad.tar is not a dinoseek archive" in err

    # export / import through the CLI, into the restored library under another name
    code, _, err = run(source.root / "home", "export", "--collection", "lib", str(tmp_path / "lib-export"), "--json")
    assert code == 0, err
    code, doc, err = run(tmp_path / "restored", "import", str(tmp_path / "lib-export"), "--as", "copy", "--json",
                         backend="qdrant")
    assert code == 0, err
    assert json.loads(doc)["collections"] == ["copy"]
    code, _, err = run(tmp_path / "restored", "import", str(tmp_path / "lib-export"), backend="qdrant")
    assert code == 2 and "collection 'lib' already exists" in err
    code, doc, _ = run(tmp_path / "restored", "collections", "--json", backend="qdrant")
    rows = {c["name"]: c for c in json.loads(doc)["collections"]}
    assert rows["copy"]["vectors"] == rows["lib"]["vectors"] == 13 and rows["copy"]["images"] == 14
