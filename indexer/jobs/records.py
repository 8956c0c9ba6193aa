"""Job records: the row a job is, what a kind of job is, and how jobs are shown, reported and failed.

Every kind of job (``JobKind``) is declared once, in the module that implements it (index.py,
reindex.py, duplicates.py), and collected in kinds.py; no other code compares kind names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from indexer.catalog.models import ACTIVE_JOB_STATUSES, JOB_STATUSES, Collection, Job, JobChunk, JobError, utcnow
from indexer.errors import Busy, InvalidRequest, JobCancelled, NotActive, NotFound
from indexer.library import Library

DEFAULT_CHUNK_SIZE = 512  # images per chunk: a multiple of every power-of-two GPU batch up to 512
ACTIVE = ACTIVE_JOB_STATUSES
STATUSES = JOB_STATUSES  # every status a job can have, as the REST contract lists them


@dataclass(frozen=True)
class JobPieces:
    """A kind whose job splits into pieces that any cpu worker may run (a duplicate scan's chunks
    of pairs): ``plan`` claims the job and returns the pending pieces' ids, ``run`` does one piece
    (once; False if it was done), ``finish`` closes the job when none is pending (True if it did).
    Each is safe to repeat."""

    plan: Callable[[Library, int], list[int]]
    run: Callable[[Library, int, int], bool]
    finish: Callable[[Library, int], bool]


@dataclass(frozen=True)
class JobKind:
    """What one kind of job does at each step of its life.

    A ``chunked`` kind is planned into chunks of image ids (``plan``), each embedded into the
    stores ``target`` names, and closed by ``finish`` once no chunk is pending; it writes vectors,
    so it holds the collection's writer lock. Any other kind is one ``run`` in-process; with
    ``pieces`` a fleet spreads it over its cpu workers instead. ``conflicts``: the
    kinds that may not be active on the same collection at the same time, each with what such a
    job is doing to it ("re-indexed")."""

    name: str
    activity: str  # what a job of this kind is doing to its collection ("indexed"), for messages
    conflicts: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    plan: Callable[[Library, Session, Job], list[JobChunk]] | None = None
    target: Callable[[Library, Session, JobInfo, Collection], object] | None = None
    finish: Callable[[Library, JobInfo], dict] | None = None
    run: Callable[[Library, int], None] | None = None
    pieces: JobPieces | None = None


@dataclass(frozen=True)
class JobInfo:
    """What a job is, read once and passed along its steps: id, kind, collection and the
    parameters it was created with. Its status and counters change: each step reads them fresh."""

    id: int
    kind: str
    collection_id: int | None
    collection_name: str | None
    params: dict

    @property
    def token(self) -> str | None:
        """The random token the job was created with: a worker checks it to be sure it reads the
        same catalog as whoever submitted the job (job ids alone repeat across databases)."""
        return self.params.get("token")


@dataclass
class IndexReport:
    """What an index job did; ``to_json`` is the CLI contract's shape."""

    collection: str
    job_id: int | None = None
    scanned: int = 0
    indexed: int = 0
    skipped: int = 0
    features_refreshed: int = 0  # of the skipped, files whose local features were found again
    failed: int = 0
    pruned: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"collection": self.collection, "job_id": self.job_id, "scanned": self.scanned,
                "indexed": self.indexed, "skipped": self.skipped, "features_refreshed": self.features_refreshed,
                "failed": self.failed, "pruned": self.pruned, "errors": self.errors}


@dataclass(frozen=True)
class JobProgress:
    """Where a job stands, as someone waiting for it polls it."""

    status: str
    done: int
    total: int
    message: str | None


def get_job(session: Session, job_id: int) -> Job:
    """The job's row, or NotFound."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def check_chunk_size(chunk_size: int) -> int:
    """A chunk size of at least one image, else InvalidRequest."""
    if chunk_size < 1:
        raise InvalidRequest(f"chunk size must be at least 1, got {chunk_size}")
    return chunk_size


def add_job(session: Session, collection: Collection, kind: JobKind, params: dict) -> Job:
    """A new ``queued`` job of ``kind`` on the collection, refused while a conflicting one is
    active (an index and a re-index of one collection never overlap: the re-index would miss the
    new images)."""
    if kind.conflicts:
        busy = session.scalar(select(Job).where(Job.collection_id == collection.id, Job.kind.in_(list(kind.conflicts)),
                                                Job.status.in_(ACTIVE)))
        if busy is not None:
            raise Busy(f"collection {collection.name!r} is being {kind.conflicts[busy.kind]} by job {busy.id}; "
                       "try again when it is done")
    job = Job(collection_id=collection.id, kind=kind.name, status="queued", params=params)
    session.add(job)
    session.flush()
    return job


def chunks_of(job: Job, image_ids: list[int]) -> list[JobChunk]:
    """The job's image ids in chunks of its chunk size, in order."""
    size = int(job.params.get("chunk_size", DEFAULT_CHUNK_SIZE))
    return [JobChunk(job_id=job.id, seq=n, image_ids=image_ids[start:start + size], status="pending")
            for n, start in enumerate(range(0, len(image_ids), size))]


def fail_job(library: Library, job_id: int, message: str) -> None:
    """Mark a job failed (what its finished chunks did stays done)."""
    with library.catalog.session() as s:
        s.execute(update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE)).values(
            status="failed", message=message, finished_at=utcnow()))


def cancel_job(library: Library, job_id: int) -> None:
    """Cancel a queued or running job of any kind: its status becomes ``cancelled`` at once, what it
    committed stays, and whichever process runs a piece of it stops at its next check
    (``start_chunk``, ``check_not_cancelled``) without writing more. NotActive once it has ended."""
    with library.catalog.session() as s:
        job = get_job(s, job_id)
        if s.execute(update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE)).values(
                status="cancelled", message="cancelled", finished_at=utcnow())).rowcount != 1:
            s.rollback()
            raise NotActive(f"job {job_id} has already {'been ' if job.status == 'cancelled' else ''}{job.status}: "
                            "only a queued or running job can be cancelled")


def check_not_cancelled(library: Library, job_id: int) -> None:
    """Raise JobCancelled if the job was cancelled (an in-process run checks between batches)."""
    with library.catalog.session() as s:
        if s.scalar(select(Job.status).where(Job.id == job_id)) == "cancelled":
            raise JobCancelled(f"job {job_id} was cancelled; what it had finished stays")


def start_chunk(library: Library, job_id: int, chunk_id: int) -> int | None:
    """Count one more start of a pending chunk of a running job and return the count (a worker
    that dies on a chunk, killed by a crash or by the task time limit, has it redelivered: the
    count lets the next start give up on it instead of dying again, forever). None when the chunk
    is done already or the job is no longer running (failed, cancelled)."""
    with library.catalog.session() as s:
        if s.scalar(select(Job.status).where(Job.id == job_id)) != "running":
            return None
        if s.execute(update(JobChunk).where(JobChunk.id == chunk_id, JobChunk.job_id == job_id,
                                            JobChunk.status == "pending").values(starts=JobChunk.starts + 1)).rowcount != 1:
            return None
        return s.scalar(select(JobChunk.starts).where(JobChunk.id == chunk_id))


def given_up_reason(starts: int) -> str:
    """Why a chunk's work was not done on its ``starts``-th start (``start_chunk``)."""
    return (f"not processed: its chunk was started {starts - 1} times and never finished (the worker died or hit "
            "DINOSEEK_TASK_TIME_LIMIT each time, DINOSEEK_MAX_CHUNK_STARTS); a file in it may crash the decoder")


def mark_interrupted_jobs(library: Library, collection_name: str, kinds: tuple[str, ...]) -> None:
    """In-process mode, holding the writer lock: a job of these kinds still active on the
    collection lost its process (what it committed stays; rows it left ``pending`` are embedded by
    the next job)."""
    with library.catalog.session() as s:
        collection_id = s.scalar(select(Collection.id).where(Collection.name == collection_name))
        if collection_id is not None:
            s.execute(update(Job).where(Job.collection_id == collection_id, Job.status.in_(ACTIVE),
                                        Job.kind.in_(kinds)).values(
                status="failed", finished_at=utcnow(),
                message="interrupted: its process died; the next job picks up what it left pending"))


def load_job(library: Library, job_id: int) -> JobInfo:
    """The job's ``JobInfo``, or NotFound."""
    with library.catalog.session() as s:
        job = get_job(s, job_id)
        collection = s.get(Collection, job.collection_id) if job.collection_id is not None else None
        return JobInfo(job.id, job.kind, job.collection_id, collection.name if collection else None,
                       dict(job.params or {}))


def job_progress(library: Library, job_id: int) -> JobProgress:
    """The job's status and counters now."""
    with library.catalog.session() as s:
        job = get_job(s, job_id)
        return JobProgress(job.status, job.done, job.total, job.message)


def _errors(session: Session, job: Job, offset: int = 0, limit: int | None = None) -> list[dict[str, str]]:
    """The job's per-file errors in the order they were recorded, ``limit`` of them from ``offset``."""
    query = select(JobError).where(JobError.job_id == job.id).order_by(JobError.id).offset(offset)
    return [{"path": e.path, "error": e.error} for e in session.scalars(query.limit(limit) if limit else query)]


def job_report(library: Library, job_id: int) -> IndexReport:
    """The CLI's report of an index job, from its row and errors."""
    with library.catalog.session() as s:
        job = get_job(s, job_id)
        collection = s.get(Collection, job.collection_id)
        return IndexReport(collection=collection.name, job_id=job.id, scanned=job.scanned, indexed=job.indexed,
                           skipped=job.skipped, features_refreshed=job.refreshed, failed=job.failed,
                           pruned=int((job.params or {}).get("pruned", 0)), errors=_errors(s, job))


def job_json(library: Library, job_id: int, errors_offset: int = 0, errors_limit: int | None = None) -> dict:
    """A job as the REST contract and ``dinoseek job --json`` show it; its errors a page at a time
    with ``errors_limit`` (a job over a million files may have as many)."""
    with library.catalog.session() as s:
        job = get_job(s, job_id)
        collection = s.get(Collection, job.collection_id) if job.collection_id else None
        return {"id": job.id, "kind": job.kind, "status": job.status,
                "collection": collection.name if collection else None, "total": job.total, "done": job.done,
                "failed": job.failed, "indexed": job.indexed, "skipped": job.skipped,
                "features_refreshed": job.refreshed, "message": job.message,
                "errors": _errors(s, job, errors_offset, errors_limit)}


def job_counts(library: Library) -> dict[tuple[str, str], int]:
    """How many jobs there are of each (kind, status)."""
    with library.catalog.session() as s:
        return {(kind, status): n for kind, status, n in
                s.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status))}
