"""A chunk embeds only rows of its own collection (issue 17, finding 10): SQLite hands a deleted
image's id to the next row, so a chunk planned before a delete must not embed another
collection's new upload that took the id, nor keep vectors for an image deleted meanwhile."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from dinoseek.settings import load_settings
from indexer.catalog.models import Image
from indexer.images import delete_image
from indexer.jobs import create_index_job, index_paths, job_json, load_job, plan_job, run_job_locked
from indexer.library import Library
from tests.support.photos import skimage_photo


def _folder(root, names):
    root.mkdir()
    for name in names:
        skimage_photo(name).save(root / f"{name}.jpg", quality=90)
    return root


def _stored_ids(library: Library, collection: str) -> set[int]:
    with library.catalog.session() as s:
        stores = library.stores_for(s, library.get_collection(s, collection))
    return {int(i) for ids, _ in stores.global_.scroll() for i in ids}


def test_a_chunk_planned_before_a_delete_leaves_the_id_s_new_owner_alone(tmp_path, tiny_model) -> None:
    library = Library(replace(load_settings({}), home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db",
                              model=str(tiny_model)))
    try:
        index_paths(library, "a", [_folder(tmp_path / "a1", ["coffee", "chelsea"])])
        job_id = create_index_job(library, "a", [_folder(tmp_path / "a2", ["rocket"])])
        job = load_job(library, job_id)
        plan_job(library, job)  # the chunk holds the new row's id
        with library.catalog.session() as s:
            planned = s.scalar(select(Image.id).where(Image.path.like("%rocket.jpg")))
        delete_image(library, planned)  # gone before its chunk ran
        other = load_job(library, create_index_job(library, "b", [_folder(tmp_path / "b", ["camera"])]))
        plan_job(library, other)  # b's new row, not embedded yet, takes the id
        with library.catalog.session() as s:
            reused = s.scalar(select(Image.id).where(Image.path.like("%camera.jpg")))
        assert reused == planned  # SQLite gave the deleted id to collection b's new row
        with library.writer_lock("a"):
            run_job_locked(library, job)
        doc = job_json(library, job_id)
        assert doc["status"] == "succeeded" and (doc["indexed"], doc["skipped"]) == (0, 1), doc
        assert reused not in _stored_ids(library, "a")  # a's index holds no vector for b's picture
        with library.catalog.session() as s:
            assert s.get(Image, reused).status == "pending"  # left for b's own job
        with library.writer_lock("b"):
            run_job_locked(library, other)
        assert reused in _stored_ids(library, "b") and job_json(library, other.id)["indexed"] == 1
    finally:
        library.close()
