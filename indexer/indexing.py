"""Index jobs: create, plan into chunks, run, finish. The embedded mode and the workers share them.

``create_index_job`` records what to index (status ``queued``); ``plan_index`` walks the paths,
skips what is unchanged, adds rows for new files and splits the rest into chunks of image ids;
``index_run`` embeds chunks; ``finish_job`` prunes (if asked) and closes the job once no chunk is
left. ``index_paths`` runs all four in this process under the collection's writer lock; the
Celery tasks in ``workers/`` run the same functions on the queues. Each step is safe to repeat.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import func, select, update

from indexer.catalog.models import Collection, Image, Job, JobChunk, JobError
from indexer.errors import Busy, InvalidRequest, NotFound
from indexer.index_run import CHECKPOINT_SECONDS, Progress, checkpoint_interval, run_chunks_locked
from indexer.ingest.reading import stat_file
from indexer.ingest.scan import iter_image_paths
from indexer.library import CollectionStores, Library
from indexer.patches import all_patch_ids

DEFAULT_CHUNK_SIZE = 512  # images per chunk: a multiple of every power-of-two GPU batch up to 512
ACTIVE = ("queued", "running")

__all__ = ["CHECKPOINT_SECONDS", "DEFAULT_CHUNK_SIZE", "IndexReport", "checkpoint_interval", "create_index_job",
           "finish_job", "index_paths", "job_json", "job_report", "plan_index", "prune_missing", "run_job_here",
           "run_job_locked", "run_new_job_here"]


@dataclass
class IndexReport:
    """What an index job did; ``to_json`` is the CLI contract's shape."""

    collection: str
    job_id: int | None = None
    scanned: int = 0
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    pruned: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"collection": self.collection, "job_id": self.job_id, "scanned": self.scanned,
                "indexed": self.indexed, "skipped": self.skipped, "failed": self.failed, "errors": self.errors}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def check_paths(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Absolute forms of ``paths``; a path that does not exist is a bad request, named."""
    if not paths:
        raise InvalidRequest("no paths to index")
    missing = [str(p) for p in paths if not os.path.exists(p)]
    if missing:
        raise InvalidRequest(f"path does not exist: {', '.join(missing)}")
    return [os.path.abspath(str(p)) for p in paths]


def refuse_if_reindexing(session, collection: Collection, kind: str) -> None:
    """An index and a re-index of one collection never overlap: the re-index would miss the new images."""
    other = ("reindex",) if kind == "index" else ("index", "reindex")
    busy = session.scalar(select(Job.id).where(Job.collection_id == collection.id, Job.kind.in_(other),
                                               Job.status.in_(ACTIVE)))
    if busy is not None:
        what = "re-indexed" if kind == "index" else "indexed"
        raise Busy(f"collection {collection.name!r} is being {what} by job {busy}; try again when it is done")


def create_index_job(library: Library, collection_name: str, paths: Sequence[str | os.PathLike], *,
                     prune: bool = False, follow_symlinks: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Record an index job (``queued``) for the collection, created if new; returns its id."""
    if chunk_size < 1:
        raise InvalidRequest(f"chunk size must be at least 1, got {chunk_size}")
    absolute = check_paths(paths)
    with library.catalog.session() as s:
        collection = library.get_or_create_collection(s, collection_name)
        refuse_if_reindexing(s, collection, "index")
        job = Job(collection_id=collection.id, kind="index", status="queued",
                  params={"paths": absolute, "prune": prune, "follow_symlinks": follow_symlinks,
                          "chunk_size": chunk_size, "token": uuid.uuid4().hex})
        s.add(job)
        s.flush()
        return job.id


def mark_interrupted_jobs(library: Library, collection_name: str) -> None:
    """In-process mode, holding the writer lock: a job of the collection still active lost its
    process (what it committed stays; rows it left ``pending`` are embedded by the next job)."""
    with library.catalog.session() as s:
        collection_id = s.scalar(select(Collection.id).where(Collection.name == collection_name))
        if collection_id is not None:
            s.execute(update(Job).where(Job.collection_id == collection_id, Job.status.in_(ACTIVE),
                                        Job.kind.in_(("index", "reindex"))).values(
                status="failed", finished_at=_now(),
                message="interrupted: its process died; the next job picks up what it left pending"))


def plan_index(library: Library, job_id: int) -> list[int]:
    """Walk the job's paths, add rows for new files, and split what needs embedding into chunks.
    Returns the ids of the chunks still pending (all of them, the first time; a repeat plans nothing)."""
    with library.catalog.session() as s:
        job = _job(s, job_id)
        if job.status not in ACTIVE:
            return []
        existing = list(s.scalars(select(JobChunk.id).where(JobChunk.job_id == job.id, JobChunk.status == "pending")
                                  .order_by(JobChunk.seq)))
        if existing or job.status == "running":
            return existing
        # claim it: a second planner (a redelivered task) waits on this row, then finds it running
        if s.execute(update(Job).where(Job.id == job.id, Job.status == "queued").values(
                status="running", started_at=_now())).rowcount != 1:
            s.rollback()
            return list(s.scalars(select(JobChunk.id).where(JobChunk.job_id == job_id, JobChunk.status == "pending")
                                  .order_by(JobChunk.seq)))
        s.refresh(job)
        if job.kind == "reindex":
            from indexer.reindex import plan_reindex

            chunks = plan_reindex(s, job)
            job.status, job.started_at = "running", _now()
            s.flush()
            return [c.id for c in chunks]
        collection = s.get(Collection, job.collection_id)
        library.bind_model(s, collection)  # refuses a model other than the collection's before any work
        p = job.params
        try:
            files = [str(f) for f in iter_image_paths(p["paths"], follow_symlinks=p.get("follow_symlinks", False))]
        except FileNotFoundError as exc:
            raise InvalidRequest(str(exc)) from exc
        known = {r.path: r for r in s.execute(select(Image.id, Image.path, Image.status, Image.size_bytes,
                                                     Image.mtime_ns).where(Image.collection_id == collection.id))}
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
            if row.status == "indexed" and st is not None and (row.size_bytes, row.mtime_ns) == (st.size_bytes, st.mtime_ns):
                continue
            todo.append(row.id)
        todo.extend(_add_rows(s, collection.id, new_paths))
        size = int(p.get("chunk_size", DEFAULT_CHUNK_SIZE))
        chunks = [JobChunk(job_id=job.id, seq=n, image_ids=todo[start:start + size], status="pending")
                  for n, start in enumerate(range(0, len(todo), size))]
        s.add_all(chunks)
        job.scanned, job.total, job.skipped = len(files), len(todo), len(files) - len(todo)
        job.status, job.started_at = "running", _now()
        s.flush()
        return [c.id for c in chunks]


def _add_rows(s, collection_id: int, paths: list[str]) -> list[int]:
    """Ids of new ``pending`` rows for ``paths``; a row another job added meanwhile is reused."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    ids: list[int] = []
    for start in range(0, len(paths), 1000):
        batch = paths[start:start + 1000]
        s.execute(dialect_insert(Image).on_conflict_do_nothing(index_elements=["collection_id", "path"]),
                  [{"collection_id": collection_id, "path": path, "status": "pending"} for path in batch])
        by_path = dict(s.execute(select(Image.path, Image.id).where(Image.collection_id == collection_id,
                                                                    Image.path.in_(batch))).all())
        ids.extend(by_path[path] for path in batch)
    return ids


def finish_job(library: Library, job_id: int) -> bool:
    """Close a job whose chunks are all done: prune (index) or swap generations (re-index), then
    mark it succeeded. True if this call closed it. Holding the writer lock is the caller's job."""
    with library.catalog.session() as s:
        job = _job(s, job_id)
        if job.status != "running":
            return False
        if s.scalar(select(func.count()).select_from(JobChunk).where(JobChunk.job_id == job.id,
                                                                      JobChunk.status == "pending")):
            return False
        collection = s.get(Collection, job.collection_id)
        kind, params, name = job.kind, dict(job.params), collection.name
    if kind == "reindex":
        from indexer.reindex import swap_generation

        swap_generation(library, job_id)
    elif params.get("prune"):
        with library.catalog.session() as s:
            collection = library.get_collection(s, name)
            stores = library.stores_for(s, collection)
        params["pruned"] = prune_missing(library, name, stores) if stores is not None else 0
    with library.catalog.session() as s:
        return s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(
            status="succeeded", finished_at=_now(), params=params)).rowcount == 1


def fail_job(library: Library, job_id: int, message: str) -> None:
    """Mark a job failed (what its finished chunks did stays done)."""
    with library.catalog.session() as s:
        s.execute(update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE)).values(
            status="failed", message=message, finished_at=_now()))


def job_report(library: Library, job_id: int) -> IndexReport:
    """The CLI's report of an index job, from its row and errors."""
    with library.catalog.session() as s:
        job = _job(s, job_id)
        collection = s.get(Collection, job.collection_id)
        errors = [{"path": e.path, "error": e.error}
                  for e in s.scalars(select(JobError).where(JobError.job_id == job.id).order_by(JobError.id))]
        return IndexReport(collection=collection.name, job_id=job.id, scanned=job.scanned, indexed=job.indexed,
                           skipped=job.skipped, failed=job.failed, pruned=int((job.params or {}).get("pruned", 0)),
                           errors=errors)


def job_token(library: Library, job_id: int) -> str | None:
    """The random token a job was created with: a worker checks it to be sure it reads the same
    catalog as whoever submitted the job (job ids alone repeat across databases)."""
    with library.catalog.session() as s:
        job = s.get(Job, job_id)
        return None if job is None else (job.params or {}).get("token")


def job_json(library: Library, job_id: int) -> dict:
    """A job as the REST contract and ``dinoseek job --json`` show it."""
    with library.catalog.session() as s:
        job = _job(s, job_id)
        collection = s.get(Collection, job.collection_id) if job.collection_id else None
        errors = [{"path": e.path, "error": e.error}
                  for e in s.scalars(select(JobError).where(JobError.job_id == job.id).order_by(JobError.id))]
        return {"id": job.id, "kind": job.kind, "status": job.status,
                "collection": collection.name if collection else None, "total": job.total, "done": job.done,
                "failed": job.failed, "indexed": job.indexed, "skipped": job.skipped, "message": job.message,
                "errors": errors}


def _job(s, job_id: int) -> Job:
    job = s.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def index_paths(library: Library, collection_name: str, paths: Sequence[str | os.PathLike], *, prune: bool = False,
                follow_symlinks: bool = False, progress: Progress | None = None, workers: int | None = None,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> IndexReport:
    """Add or refresh the images under ``paths`` in a collection (created if new), in this process.

    Holds the collection's writer lock for the run (embedded stores have one writer at a time;
    another ``index`` of the same collection waits)."""
    check_paths(paths)
    return run_new_job_here(library, collection_name, lambda: create_index_job(
        library, collection_name, paths, prune=prune, follow_symlinks=follow_symlinks, chunk_size=chunk_size),
        progress=progress, workers=workers)


def run_new_job_here(library: Library, collection_name: str, create: Callable[[], int], *,
                     progress: Progress | None = None, workers: int | None = None) -> IndexReport:
    """Record a job with ``create`` and run it in this process, holding the collection's writer lock
    throughout (with embedded stores, a job still active then lost its process: it is marked so)."""
    with library.writer_lock(collection_name):
        if library.embedded_stores:
            mark_interrupted_jobs(library, collection_name)
        job_id = create()
        run_job_locked(library, job_id, progress=progress, workers=workers)
    return job_report(library, job_id)


def run_job_locked(library: Library, job_id: int, *, progress: Progress | None = None,
                   workers: int | None = None) -> None:
    """Plan, run and finish a recorded job in this process; the caller holds the writer lock.
    Any error fails the job (what finished chunks committed stays) and is raised."""
    try:
        plan_index(library, job_id)
        run_chunks_locked(library, job_id, progress=progress, workers=workers)
        with library.catalog.session() as s:
            job = _job(s, job_id)
            kind, name = job.kind, s.get(Collection, job.collection_id).name
        if kind == "reindex":
            library.release_stores(name)  # the shadow stores are complete; the swap replaces the old ones
        finish_job(library, job_id)
    except BaseException as exc:
        fail_job(library, job_id, f"{type(exc).__name__}: {exc}")
        raise


def run_job_here(library: Library, job_id: int) -> None:
    """Run a recorded job in this process (the API without workers), taking the writer lock."""
    with library.catalog.session() as s:
        name = s.get(Collection, _job(s, job_id).collection_id).name
    with library.writer_lock(name):
        run_job_locked(library, job_id)


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
