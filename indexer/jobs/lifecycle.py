"""A job's life, the same for every kind and every mode: record, plan, run, finish — or fail.

The embedded mode runs all of it in this process under the collection's writer lock
(``run_new_job_here``, ``run_job_here``); the Celery tasks in ``workers/`` run the same steps on
the queues (``plan_job`` on the cpu queue, ``run_job_chunk`` per chunk on the gpu queue,
``close_job`` after each). What differs between kinds is looked up in kinds.py. Each step is safe
to repeat.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from sqlalchemy import func, select, update

from indexer.catalog.models import Collection, Job, JobChunk, utcnow
from indexer.jobs.chunks import Progress, run_chunk, run_chunks_locked
from indexer.jobs.index import check_paths, create_index_job
from indexer.jobs.kinds import kind_named, vector_writing_kinds
from indexer.jobs.records import (
    ACTIVE,
    DEFAULT_CHUNK_SIZE,
    IndexReport,
    JobInfo,
    JobKind,
    fail_job,
    get_job,
    job_report,
    load_job,
    mark_interrupted_jobs,
)
from indexer.jobs.reindex import create_reindex_job
from indexer.jobs.target import Target
from indexer.library import Library


def job_kind(job: JobInfo) -> JobKind:
    """The kind of a job (its entry in kinds.KINDS)."""
    return kind_named(job.kind)


def plan_job(library: Library, job: JobInfo) -> list[int]:
    """Claim a queued chunked job and split it into chunks (its kind's ``plan``). Returns the ids
    of the chunks still pending (all of them, the first time; a repeat plans nothing)."""
    with library.catalog.session() as s:
        row = get_job(s, job.id)
        if row.status not in ACTIVE:
            return []
        existing = list(s.scalars(select(JobChunk.id).where(JobChunk.job_id == job.id, JobChunk.status == "pending")
                                  .order_by(JobChunk.seq)))
        if existing or row.status == "running":
            return existing
        # claim it: a second planner (a redelivered task) waits on this row, then finds it running
        if s.execute(update(Job).where(Job.id == job.id, Job.status == "queued").values(
                status="running", started_at=utcnow())).rowcount != 1:
            s.rollback()
            return list(s.scalars(select(JobChunk.id).where(JobChunk.job_id == job.id, JobChunk.status == "pending")
                                  .order_by(JobChunk.seq)))
        s.refresh(row)
        chunks = job_kind(job).plan(library, s, row)
        s.add_all(chunks)
        row.status, row.started_at = "running", utcnow()
        s.flush()
        return [c.id for c in chunks]


def load_target(library: Library, job: JobInfo) -> Target:
    """Where the job's chunks write (its kind's ``target``)."""
    with library.catalog.session() as s:
        return job_kind(job).target(library, s, job, s.get(Collection, job.collection_id))


def finish_job(library: Library, job: JobInfo) -> bool:
    """Close a job whose chunks are all done: its kind's ``finish`` (prune, or swap generations),
    then succeeded. True if this call closed it. Holding the writer lock is the caller's job."""
    with library.catalog.session() as s:
        if get_job(s, job.id).status != "running":
            return False
        if s.scalar(select(func.count()).select_from(JobChunk).where(JobChunk.job_id == job.id,
                                                                      JobChunk.status == "pending")):
            return False
    params = job_kind(job).finish(library, job)
    with library.catalog.session() as s:
        return s.execute(update(Job).where(Job.id == job.id, Job.status == "running").values(
            status="succeeded", finished_at=utcnow(), params=params)).rowcount == 1


def close_job(library: Library, job: JobInfo) -> None:
    """What a worker does after each of a job's tasks: finish the job if nothing is pending, under
    the writer lock (prune and swap write the stores), then let go of the embedded stores."""
    with library.writer_lock(job.collection_name):
        finish_job(library, job)
        library.release_stores(job.collection_name)


def run_job_chunk(library: Library, job: JobInfo, chunk_id: int) -> bool:
    """One chunk, as a worker runs it (chunks.run_chunk); False if it was already done."""
    return run_chunk(library, job.id, chunk_id, load_target(library, job))


def run_job_locked(library: Library, job: JobInfo, *, progress: Progress | None = None,
                   workers: int | None = None) -> None:
    """Plan, run and finish a recorded chunked job in this process; the caller holds the writer
    lock. Any error fails the job (what finished chunks committed stays) and is raised."""
    try:
        plan_job(library, job)
        run_chunks_locked(library, job.id, load_target(library, job), progress=progress, workers=workers)
        finish_job(library, job)
    except BaseException as exc:
        fail_job(library, job.id, f"{type(exc).__name__}: {exc}")
        raise


def run_job_here(library: Library, job: JobInfo) -> None:
    """Run a recorded job of any kind in this process (the API without workers): a chunked one
    under the collection's writer lock, any other as its kind's ``run``."""
    kind = job_kind(job)
    if not kind.chunked:
        kind.run(library, job.id)
        return
    with library.writer_lock(job.collection_name):
        run_job_locked(library, job)


def run_new_job_here(library: Library, collection_name: str, create: Callable[[], int], *,
                     progress: Progress | None = None, workers: int | None = None) -> IndexReport:
    """Record a chunked job with ``create`` and run it in this process, holding the collection's
    writer lock throughout (with embedded stores, a job still active then lost its process: it is
    marked so first)."""
    with library.writer_lock(collection_name):
        if library.embedded_stores:
            mark_interrupted_jobs(library, collection_name, tuple(vector_writing_kinds()))
        job = load_job(library, create())
        run_job_locked(library, job, progress=progress, workers=workers)
    return job_report(library, job.id)


def index_paths(library: Library, collection_name: str, paths: Sequence[str | os.PathLike], *, prune: bool = False,
                follow_symlinks: bool = False, progress: Progress | None = None, workers: int | None = None,
                chunk_size: int = DEFAULT_CHUNK_SIZE, force: bool = False) -> IndexReport:
    """Add or refresh the images under ``paths`` in a collection (created if new), in this process."""
    check_paths(paths)
    return run_new_job_here(library, collection_name, lambda: create_index_job(
        library, collection_name, paths, prune=prune, follow_symlinks=follow_symlinks, chunk_size=chunk_size,
        force=force), progress=progress, workers=workers)


def reindex(library: Library, collection_name: str, checkpoint: str | os.PathLike, *,
            progress: Progress | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> IndexReport:
    """Re-embed a collection with ``checkpoint`` in this process (holding its writer lock)."""
    return run_new_job_here(library, collection_name, lambda: create_reindex_job(
        library, collection_name, checkpoint, chunk_size=chunk_size), progress=progress)
