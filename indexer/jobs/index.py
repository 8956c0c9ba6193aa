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
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from indexer.catalog.models import Collection, Image, ImageFeatures, Job, JobChunk, features_from
from indexer.errors import InvalidRequest
from indexer.ingest import local_features
from indexer.ingest.reading import stat_file
from indexer.jobs.records import DEFAULT_CHUNK_SIZE, JobInfo, JobKind, add_job, check_chunk_size, chunks_of
from indexer.jobs.target import Target
from indexer.library import Library
from indexer.store_gaps import gaps_in, has_gaps, rows_without_vectors
from indexer.stores import CollectionStores
from indexer.stores.patches import all_patch_ids
from model.files import iter_image_paths

ROW_BATCH = 1000  # new rows inserted per statement
PRUNE_MAX_SHARE = 0.5  # a prune that would remove more of the rows under its paths needs force (an unmounted share?)


def check_paths(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Absolute forms of ``paths``; a path that does not exist is a bad request, named."""
    if not paths:
        raise InvalidRequest("no paths to index")
    missing = [str(p) for p in paths if not os.path.exists(p)]
    if missing:
        raise InvalidRequest(f"path does not exist: {', '.join(missing)}")
    return [os.path.abspath(str(p)) for p in paths]


def create_index_job(library: Library, collection_name: str, paths: Sequence[str | os.PathLike], *,
                     prune: bool = False, follow_symlinks: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE,
                     force: bool = False) -> int:
    """Record an index job (``queued``) for the collection, created if new; returns its id.
    ``force``: prune even more than PRUNE_MAX_SHARE of the rows under the paths."""
    check_chunk_size(chunk_size)
    absolute = check_paths(paths)
    with library.catalog.session() as s:
        collection = library.get_or_create_collection(s, collection_name)
        return add_job(s, collection, INDEX, {"paths": absolute, "prune": prune, "follow_symlinks": follow_symlinks,
                                              "chunk_size": chunk_size, "token": uuid.uuid4().hex,
                                              "force": force}).id


def _devices(paths: list[str]) -> dict[str, int]:
    """The device each path lies on now, as the process that walks it sees it (what a later
    prune compares with)."""
    out = {}
    for path in paths:
        try:
            out[path] = os.stat(path).st_dev
        except OSError:
            continue
    return out


def plan_index(library: Library, s: Session, job: Job) -> list[JobChunk]:
    """Walk the job's paths, add rows for new files, and chunk what needs work: new rows, rows not
    indexed or whose file changed size or mtime since, rows without stored local features (or with
    an older extractor's), and indexed rows whose vectors the stores lack."""
    collection = s.get(Collection, job.collection_id)
    library.bind_model(s, collection)  # refuses a model other than the collection's before any work
    p = job.params
    try:
        files = [str(f) for f in iter_image_paths(p["paths"], follow_symlinks=p.get("follow_symlinks", False))]
    except FileNotFoundError as exc:
        raise InvalidRequest(str(exc)) from exc
    known = {r.path: r for r in s.execute(
        select(Image.id, Image.path, Image.status, Image.size_bytes, Image.mtime_ns, Image.patch_rows, Image.patch_cols,
               features_from(local_features.EXTRACTOR).label("has_features"))
        .outerjoin(ImageFeatures, ImageFeatures.image_id == Image.id).where(Image.collection_id == collection.id))}
    todo: list[int] = []
    whole: list = []  # indexed rows left alone, unless their vectors are missing from the stores
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
            whole.append(row)  # (else features missing or an older extractor's: the chunk finds them, embedding nothing)
            continue
        todo.append(row.id)
    todo.extend(_rows_to_repair(library, s, collection, whole))
    todo.extend(_add_rows(s, collection.id, new_paths))
    job.scanned, job.total, job.skipped = len(files), len(todo), len(files) - len(todo)
    job.params = {**p, "devices": _devices(p["paths"])}
    return chunks_of(job, todo)


def _rows_to_repair(library: Library, s: Session, collection: Collection, rows: list) -> list[int]:
    """Ids of indexed ``rows`` whose vectors the stores lack (a lost store), turned back to ``pending``
    so their chunk embeds them again; looked up only when the stores hold fewer vectors than the rows."""
    stores = library.stores_for(s, collection)
    if not rows or stores is None or not has_gaps(gaps_in(s, collection.id, stores)):
        return []
    lost = rows_without_vectors(stores, rows)
    for start in range(0, len(lost), ROW_BATCH):
        s.execute(update(Image).where(Image.id.in_(lost[start:start + ROW_BATCH])).values(status="pending"))
    return lost


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
    """Prune the rows and vectors of deleted files under the job's paths when the job asked;
    returns its params with how many went. The caller holds the writer lock."""
    with library.catalog.session() as s:
        params = dict(s.get(Job, job.id).params or {})  # as planning left them (with the paths' devices)
        if not params.get("prune"):
            return params
        collection = library.get_collection(s, job.collection_name)
        stores = library.stores_for(s, collection)
        indexed_on = _devices_at_last_index(s, collection.id, job.id)
    if stores is None:
        return dict(params, pruned=0)
    pruned = prune_missing(library, job.collection_name, stores, params["paths"], indexed_on,
                           force=bool(params.get("force")))
    return dict(params, pruned=pruned)


def _devices_at_last_index(s: Session, collection_id: int, job_id: int) -> dict[str, int]:
    """Each path's device as the collection's latest earlier index job found it."""
    found: dict[str, int] = {}
    for params in s.scalars(select(Job.params).where(Job.collection_id == collection_id, Job.kind == INDEX.name,
                                                     Job.status == "succeeded", Job.id != job_id)
                            .order_by(Job.id.desc()).limit(50)):
        for path, device in ((params or {}).get("devices") or {}).items():
            found.setdefault(path, device)
    return found


def prune_missing(library: Library, collection_name: str, stores: CollectionStores, roots: list[str],
                  indexed_on: dict[str, int] | None = None, force: bool = False) -> int:
    """Remove the rows and vectors of files under ``roots`` that no longer exist; returns how many
    went. Refused (InvalidRequest, nothing removed) when a root is gone, unreadable, empty or on
    another device than ``indexed_on`` says (an unmounted or replaced share), or when more than
    PRUNE_MAX_SHARE of the rows under the roots would go, unless ``force``."""
    for root in roots:
        _check_root(root, (indexed_on or {}).get(root))
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        rows = s.execute(select(Image.id, Image.path).where(Image.collection_id == collection.id)).all()
    under = [(image_id, path) for image_id, path in rows if any(_is_under(path, root) for root in roots)]
    gone = [image_id for image_id, path in under if not os.path.lexists(path)]
    if not gone:
        return 0
    if not force and len(gone) > PRUNE_MAX_SHARE * len(under):
        raise InvalidRequest(f"not pruning: {len(gone)} of the {len(under)} images under {', '.join(roots)} are missing "
                             f"(more than {PRUNE_MAX_SHARE:.0%}: a share not mounted?); check the paths, or prune with "
                             "--force (API: force=true)")
    stores.global_.delete(np.array(gone))
    stores.patches.delete(all_patch_ids(gone))
    stores.persist()
    with library.catalog.session() as s:
        for start in range(0, len(gone), 500):
            s.execute(Image.__table__.delete().where(Image.id.in_(gone[start:start + 500])))
    return len(gone)


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_root(root: str, device: int | None) -> None:
    """Refuse to prune under a root that is gone, unreadable, an empty folder or on another device."""
    refuse = f"not pruning under {root}: it "
    try:
        st = os.stat(root)
    except OSError as exc:
        raise InvalidRequest(refuse + f"cannot be reached ({exc.strerror or exc}); nothing was removed") from exc
    if device is not None and st.st_dev != device:
        raise InvalidRequest(refuse + "is on another device than when it was indexed (a share not mounted, or "
                             "another disk?); nothing was removed")
    if os.path.isdir(root):
        try:
            with os.scandir(root) as entries:
                empty = next(entries, None) is None
        except OSError as exc:
            raise InvalidRequest(refuse + f"cannot be read ({exc.strerror or exc}); nothing was removed") from exc
        if empty:
            raise InvalidRequest(refuse + "is empty (a share not mounted?); nothing was removed")


INDEX = JobKind("index", "indexed", conflicts={"reindex": "re-indexed"}, chunked=True, plan=plan_index, target=live_target,
                finish=finish_index)
