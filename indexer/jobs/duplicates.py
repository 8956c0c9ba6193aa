"""Duplicate scans as jobs (run by a cpu worker or in-process): the groups replace the last scan's."""

from __future__ import annotations

from sqlalchemy import update

from indexer.catalog.models import Collection, Job, utcnow
from indexer.duplicates import check_threshold, find_duplicates
from indexer.jobs.records import ACTIVE, JobKind, add_job, get_job
from indexer.library import Library


def create_duplicates_job(library: Library, collection_name: str, threshold: float | None = None) -> int:
    """Record a duplicate scan of the collection (``queued``); returns the job id."""
    check_threshold(threshold)
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        return add_job(s, collection, DUPLICATES, {"threshold": threshold}).id


def run_duplicates_job(library: Library, job_id: int) -> None:
    """Scan for duplicate groups and save them as the collection's groups; the job counts the groups."""
    with library.catalog.session() as s:
        job = get_job(s, job_id)
        if job.status not in ACTIVE:
            return
        job.status, job.started_at = "running", utcnow()
        threshold = (job.params or {}).get("threshold")
        name = s.get(Collection, job.collection_id).name
    try:
        groups = find_duplicates(library, name, threshold=threshold)
    except BaseException as exc:
        with library.catalog.session() as s:
            s.execute(update(Job).where(Job.id == job_id).values(status="failed", message=f"{type(exc).__name__}: {exc}",
                                                                finished_at=utcnow()))
        raise
    with library.catalog.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status="succeeded", total=len(groups), done=len(groups),
                                                            finished_at=utcnow()))


DUPLICATES = JobKind("duplicates", "scanned for duplicates", run=run_duplicates_job)
