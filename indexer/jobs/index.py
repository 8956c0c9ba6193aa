"""Index jobs: add or refresh the image files under some paths in a collection.

``create_index_job`` records what to index (``queued``); planning walks the paths, skips what is
unchanged, adds rows for new files and splits the rest into chunks of image ids; the chunks are
embedded into the live stores (chunks.py); finishing prunes the rows of deleted files when asked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from indexer.catalog.models import Collection, Image, ImageFeatures, Job, JobChunk
from indexer.errors import InvalidRequest
from indexer.ingest.reading import stat_file
from indexer.jobs.records import DEFAULT_CHUNK_SIZE, JobInfo, JobKind, add_job, check_chunk_size, chunks_of
from indexer.jobs.target import Target
from indexer.library import Library
from indexer.stores import CollectionStores
from indexer.stores.patches import all_patch_ids
from model.files import iter_image_paths

ROW_BATCH = 1000  # new rows inserted per statement


def check_paths(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Absolute forms of ``paths``; a path that does not exist is a bad request, named."""
    if not paths:
        raise InvalidRequest("no paths to index")
    missing = [str(p) for p in paths if not os.path.exists(p)]
    if missing:
        raise InvalidRequest(f"path does not exist: {', '.join(missing)}")
    return [os.path.abspath(str(p)) for p in paths]


def create_index_job(library: Library, collection_name: str, paths: Sequence[str | os.PathLike], *,
                     prune: bool = False, follow_symlinks: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Record an index job (``queued``) for the collection, created if new; returns its id."""
    check_chunk_size(chunk_size)
    absolute = check_paths(paths)
    with library.catalog.session() as s:
        collection = library.get_or_create_collection(s, collection_name)
        return add_job(s, collection, INDEX, {"paths": absolute, "prune": prune, "follow_symlinks": follow_symlinks,
                                              "chunk_size": chunk_size, "token": uuid.uuid4().hex}).id


def plan_index(library: Library, s: Session, job: Job) -> list[JobChunk]:
    """Walk the job's paths, add rows for new files, and chunk what needs work: new rows, rows not
    indexed or whose file changed size or mtime since, and rows without stored local features."""
    collection = s.get(Collection, job.collection_id)
    library.bind_model(s, collection)  # refuses a model other than the collection's before any work
    p = job.params
    try:
        files = [str(f) for f in iter_image_paths(p["paths"], follow_symlinks=p.get("follow_symlinks", False))]
    except FileNotFoundError as exc:
        raise InvalidRequest(str(exc)) from exc
    known = {r.path: r for r in s.execute(
        select(Image.id, Image.path, Image.status, Image.size_bytes, Image.mtime_ns,
               ImageFeatures.image_id.is_not(None).label("has_features"))
        .outerjoin(ImageFeatures, ImageFeatures.image_id == Image.id).where(Image.collection_id == collection.id))}
    todo: list[int] = []
    new_paths: list[str] = []
    for path in files:
        row = known.get(path)
        if row is None:
            new_paths.append(path)
            continue
        try:
            st = stat_file(path)
        except OSError:
            st = None  # vanished or unreadable since the walk: let the reader report it
        unchanged = st is not None and (row.size_bytes, row.mtime_ns) == (st.size_bytes, st.mtime_ns)
        if row.status == "indexed" and unchanged and row.has_features:
            continue  # (indexed before local features were stored: the chunk fills them in, embedding nothing)
        todo.append(row.id)
    todo.extend(_add_rows(s, collection.id, new_paths))
    job.scanned, job.total, job.skipped = len(files), len(todo), len(files) - len(todo)
    return chunks_of(job, todo)


def _add_rows(s: Session, collection_id: int, paths: list[str]) -> list[int]:
    """Ids of new ``pending`` rows for ``paths``; a row another job added meanwhile is reused."""
    insert = postgresql_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    ids: list[int] = []
    for start in range(0, len(paths), ROW_BATCH):
        batch = paths[start:start + ROW_BATCH]
        s.execute(insert(Image).on_conflict_do_nothing(index_elements=["collection_id", "path"]),
                  [{"collection_id": collection_id, "path": path, "status": "pending"} for path in batch])
        by_path = dict(s.execute(select(Image.path, Image.id).where(Image.collection_id == collection_id,
                                                                    Image.path.in_(batch))).all())
        ids.extend(by_path[path] for path in batch)
    return ids


def live_target(library: Library, s: Session, job: JobInfo, collection: Collection) -> Target:
    """The collection's serving stores, once this process is known to run the collection's model."""
    model = library.bind_model(s, collection)
    return Target(job.id, collection.id, collection.name, collection.store_generation, model.id, library.embedder,
                  staged=False)


def finish_index(library: Library, job: JobInfo) -> dict:
    """Prune the rows and vectors of deleted files when the job asked; returns its params with
    how many went. The caller holds the writer lock."""
    if not job.params.get("prune"):
        return job.params
    with library.catalog.session() as s:
        stores = library.stores_for(s, library.get_collection(s, job.collection_name))
    pruned = prune_missing(library, job.collection_name, stores) if stores is not None else 0
    return dict(job.params, pruned=pruned)


def prune_missing(library: Library, collection_name: str, stores: CollectionStores) -> int:
    """Remove the rows and vectors of files that no longer exist; returns how many went."""
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        rows = s.execute(select(Image.id, Image.path).where(Image.collection_id == collection.id)).all()
    gone = [image_id for image_id, path in rows if not os.path.lexists(path)]
    if not gone:
        return 0
    stores.global_.delete(np.array(gone))
    stores.patches.delete(all_patch_ids(gone))
    stores.persist()
    with library.catalog.session() as s:
        for start in range(0, len(gone), 500):
            s.execute(Image.__table__.delete().where(Image.id.in_(gone[start:start + 500])))
    return len(gone)


INDEX = JobKind("index", "indexed", conflicts={"reindex": "re-indexed"}, chunked=True, plan=plan_index, target=live_target,
                finish=finish_index)
