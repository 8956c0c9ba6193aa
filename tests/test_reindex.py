"""Re-indexing a collection with another model: the shadow generation, the swap, and failures
that leave the old index serving."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.support.photos import skimage_photo

NAMES = ("coffee", "rocket", "astronaut", "chelsea", "camera")


def _folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in NAMES:
        img = skimage_photo(name)
        img.save(root / f"{name}.jpg", quality=90)
        img.resize((img.width // 2, img.height // 2)).save(root / f"{name}_small.jpg", quality=70)
    (root / "dup.jpg").write_bytes((root / "coffee.jpg").read_bytes())
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


def _library(home: Path, model: Path):
    from dinoseek.settings import load_settings
    from indexer.library import Library

    return Library(replace(load_settings({}), home=home, database_url=f"sqlite:///{home / 'dinoseek.db'}",
                           model=str(model)))


def _vectors(library, collection: str = "c") -> dict[str, np.ndarray]:
    from sqlalchemy import select

    from indexer.catalog.models import Collection, Image

    with library.catalog.session() as s:
        col = s.scalar(select(Collection).where(Collection.name == collection))
        stores = library.stores_for(s, col)
        rows = dict(s.execute(select(Image.id, Image.path).where(Image.collection_id == col.id,
                                                                 Image.status == "indexed")).all())
    found, vectors = stores.global_.fetch(np.array(sorted(rows)))
    return {Path(rows[i]).name: v for i, v in zip(found.tolist(), vectors)}


def _store_files(home: Path) -> set[str]:
    return {p.name for p in (home / "stores").glob("*.faiss")}


def _serving(home: Path) -> set[str]:
    """The store files of the generation the collection serves from."""
    import sqlite3

    with sqlite3.connect(home / "dinoseek.db") as db:
        (generation,) = db.execute("select store_generation from collections where name = 'c'").fetchone()
    return {f"c~g{generation}.global.faiss", f"c~g{generation}.patches.faiss"} if generation else \
        {"c.global.faiss", "c.patches.faiss"}


def test_reindex_swaps_to_the_new_model_and_drops_the_old_stores(tmp_path, tiny_model, other_tiny_model) -> None:
    from indexer.jobs import index_paths, reindex
    from indexer.query.search import search_files

    folder = _folder(tmp_path / "photos")
    home = tmp_path / "home"
    old = _library(home, tiny_model)
    index_paths(old, "c", [folder])
    old_vectors = _vectors(old)
    report = reindex(old, "c", other_tiny_model, chunk_size=4)
    assert (report.indexed, report.failed) == (11, 1) and "broken.jpg" in report.errors[0]["path"]
    old.close()
    assert _store_files(home) == _serving(home) and "c.global.faiss" not in _serving(home)  # generation 0 is gone

    new = _library(home, other_tiny_model)
    fresh = _library(tmp_path / "fresh", other_tiny_model)  # the same folder indexed with the new model
    index_paths(fresh, "c", [folder])
    reindexed, expected = _vectors(new), _vectors(fresh)
    assert reindexed.keys() == expected.keys() == old_vectors.keys() and len(expected) == 11
    for name, v in expected.items():
        np.testing.assert_allclose(reindexed[name], v, atol=1e-5)
        assert not np.allclose(old_vectors[name], v, atol=1e-3)  # really re-embedded
    (hit,) = search_files(new, "c", [folder / "rocket_small.jpg"], k=1)[0].results
    assert Path(hit.path).name == "rocket.jpg"
    # the collection is bound to the new model now: the old one is refused with a clear message
    from indexer.errors import ModelMismatch

    with pytest.raises(ModelMismatch, match="dinoseek reindex"):
        search_files(_library(home, tiny_model), "c", [folder / "rocket_small.jpg"], k=1)
    # and a later index with the new model skips everything it re-embedded
    again = index_paths(new, "c", [folder])
    assert (again.indexed, again.skipped, again.failed) == (0, 11, 1)
    new.close()
    fresh.close()


def test_a_failed_reindex_leaves_the_old_index_serving(tmp_path, tiny_model, other_tiny_model) -> None:
    from indexer.catalog.models import Collection, Job
    from indexer.errors import Busy
    from indexer.jobs import create_reindex_job, index_paths, reindex
    from indexer.query.search import search_files

    folder = _folder(tmp_path / "photos")
    home = tmp_path / "home"
    library = _library(home, tiny_model)
    index_paths(library, "c", [folder])
    before = _vectors(library)

    def interrupt(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    library.embedder_for(str(other_tiny_model)).batch_size = 1  # batches of 4: the interrupt lands mid-job
    with pytest.raises(KeyboardInterrupt):
        reindex(library, "c", other_tiny_model, progress=interrupt, chunk_size=4)
    with library.catalog.session() as s:
        job = s.query(Job).order_by(Job.id.desc()).first()
        assert (job.kind, job.status) == ("reindex", "failed")
        collection = s.query(Collection).one()
        assert collection.store_generation == 0
    after = _vectors(library)  # the old vectors still serve, unchanged
    assert after.keys() == before.keys()
    for name, v in before.items():
        np.testing.assert_array_equal(after[name], v)
    (hit,) = search_files(library, "c", [folder / "coffee_small.jpg"], k=1)[0].results
    assert Path(hit.path).name in ("coffee.jpg", "dup.jpg")
    shadow = _store_files(home) - _serving(home)
    assert len(shadow) == 2 and all(name.startswith("c~g") for name in shadow)  # the half-built shadow is left...

    # while a re-index is queued, indexing the collection is refused (the re-index would miss it)
    create_reindex_job(library, "c", other_tiny_model)
    with pytest.raises(Busy, match="being re-indexed by job"):
        from indexer.jobs import create_index_job

        create_index_job(library, "c", [folder])
    # ...and the next attempt (this process now holds the lock, so the queued one is stale) succeeds
    report = reindex(library, "c", other_tiny_model)
    assert (report.indexed, report.failed) == (11, 1)
    library.close()
    assert _store_files(home) == _serving(home) and not shadow & _serving(home)  # leftovers deleted, new one serves


def test_reindex_refuses_what_it_cannot_do(tmp_path, tiny_model, other_tiny_model) -> None:
    from indexer.errors import InvalidRequest, NotFound
    from indexer.jobs import create_reindex_job

    library = _library(tmp_path / "home", tiny_model)
    with pytest.raises(NotFound, match="no collection named 'nope'"):
        create_reindex_job(library, "nope", other_tiny_model)
    with pytest.raises(InvalidRequest, match="does not exist"):
        create_reindex_job(library, "nope", os.fspath(tmp_path / "missing.pt"))
    library.close()


def test_cli_reindex_and_job(tmp_path, tiny_model, other_tiny_model, monkeypatch, capsys) -> None:
    """``dinoseek reindex`` in-process, ``dinoseek job`` on its id, and ``--no-wait`` without workers."""
    import json

    from dinoseek.cli import main

    for key in [k for k in os.environ if k.startswith("DINOSEEK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DINOSEEK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DINOSEEK_MODEL", str(tiny_model))
    folder = _folder(tmp_path / "photos")
    assert main(["index", str(folder), "--collection", "c", "--json"]) == 0
    capsys.readouterr()
    assert main(["reindex", "--collection", "c", "--model", str(other_tiny_model), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["indexed"], doc["failed"], doc["model"]) == (11, 1, str(other_tiny_model))
    assert main(["job", str(doc["job_id"]), "--json"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert (job["kind"], job["status"], job["total"], job["done"], job["failed"]) == ("reindex", "succeeded", 12, 12, 1)
    assert job["errors"][0]["path"].endswith("broken.jpg")
    assert main(["index", str(folder), "--collection", "c", "--no-wait"]) == 2
    assert "--no-wait needs workers" in capsys.readouterr().err
    monkeypatch.setenv("DINOSEEK_MODEL", str(other_tiny_model))
    assert main(["index", str(folder), "--collection", "c", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["indexed"], again["skipped"]) == (0, 11)
    assert main(["job", "999", "--json"]) == 2
    assert "no job with id 999" in capsys.readouterr().err


def test_a_copy_never_takes_the_vectors_of_a_file_re_embedded_in_the_same_run(tmp_path, tiny_model) -> None:
    """b.jpg arrives with the old bytes of a.jpg while a.jpg itself changed: b must be embedded
    from its own bytes, not handed a's new vectors."""
    from indexer.jobs import index_paths

    folder = tmp_path / "photos"
    folder.mkdir()
    skimage_photo("coffee").save(folder / "a.jpg", quality=90)
    library = _library(tmp_path / "home", tiny_model)
    index_paths(library, "c", [folder])
    (folder / "b.jpg").write_bytes((folder / "a.jpg").read_bytes())
    skimage_photo("rocket").save(folder / "a.jpg", quality=90)
    os.utime(folder / "a.jpg", ns=(1, 1))  # a different stamp, so the run re-reads it
    report = index_paths(library, "c", [folder])
    assert (report.indexed, report.failed) == (2, 0)
    vectors = _vectors(library)
    expected = library.embedder.embed([skimage_photo("coffee")]).vectors[0]
    fresh = _library(tmp_path / "fresh", tiny_model)
    only_b = tmp_path / "only_b"
    only_b.mkdir()
    (only_b / "b.jpg").write_bytes((folder / "b.jpg").read_bytes())
    index_paths(fresh, "c", [only_b])
    np.testing.assert_allclose(vectors["b.jpg"], _vectors(fresh)["b.jpg"], atol=1e-5)
    assert float(vectors["b.jpg"] @ vectors["a.jpg"]) < 0.99
    assert expected.shape == vectors["b.jpg"].shape
    library.close()
    fresh.close()


def test_rest_reindex_takes_a_model_by_name_never_a_path(tmp_path, tiny_model, other_tiny_model) -> None:
    """``POST /collections/{name}/reindex-jobs`` over HTTP: a model named from ``GET /models`` (a
    checkpoint in DINOSEEK_HOME/models); a path, an unknown name or a read-only key is refused."""
    import shutil
    import time

    import httpx

    from api import create_app
    from indexer.jobs import index_paths
    from tests.support.services import serving

    rw, ro = "reindex-http-key-rw-012", "reindex-http-key-ro-012"
    library = _library(tmp_path / "home", tiny_model)
    index_paths(library, "c", [_folder(tmp_path / "photos")])
    settings = replace(library.settings, api_keys=(rw, f"{ro}:ro"))
    library.close()
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(other_tiny_model, settings.models_dir / "other.pt")
    with serving(create_app(settings)) as base, httpx.Client(base_url=base, headers={"X-API-Key": rw}, timeout=120) as http:
        names = [m["name"] for m in http.get("/models").json()["models"]]
        assert "other" in names and "default" in names  # DINOSEEK_HOME/models, then the shipped weights
        before = http.get("/collections").json()["collections"][0]["model"]
        for bad, status in ((str(settings.models_dir / "other.pt"), 400), ("../other", 400), ("nope", 404)):
            answer = http.post("/collections/c/reindex-jobs", json={"model": bad})
            assert answer.status_code == status, (bad, answer.text)
        assert http.post("/collections/c/reindex-jobs", json={"model": "other"},
                         headers={"X-API-Key": ro}).status_code == 403
        started = http.post("/collections/c/reindex-jobs", json={"model": "other"})
        assert started.status_code == 202, started.text
        job_id = started.json()["job"]["id"]
        deadline = time.monotonic() + 240
        while (job := http.get(f"/jobs/{job_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
        after = http.get("/collections").json()["collections"][0]
        assert after["model"] != before and after["last_job"] == {"id": job_id, "kind": "reindex", "status": "succeeded"}
        assert after["indexed"] == after["vectors"] > 0
