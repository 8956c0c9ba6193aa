"""Duplicate scans as jobs (run by a cpu worker or in-process), and reading the saved groups."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select, update

from indexer.catalog.models import DuplicateGroup, DuplicateMember, Image, Job
from indexer.duplicates import check_threshold, find_duplicates
from indexer.errors import InvalidRequest, NotFound
from indexer.library import Library

MAX_PAGE = 500


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_duplicates_job(library: Library, collection_name: str, threshold: float | None = None) -> int:
    """Record a duplicate scan of the collection (``queued``); returns the job id."""
    check_threshold(threshold)
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        job = Job(collection_id=collection.id, kind="duplicates", status="queued", params={"threshold": threshold})
        s.add(job)
        s.flush()
        return job.id


def run_duplicates_job(library: Library, job_id: int) -> None:
    """Scan for duplicate groups and save them as the collection's groups; the job counts the groups."""
    with library.catalog.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id}")
        if job.status not in ("queued", "running"):
            return
        job.status, job.started_at = "running", _now()
        threshold = (job.params or {}).get("threshold")
        name = library_collection_name(s, job.collection_id)
    try:
        groups = find_duplicates(library, name, threshold=threshold)
    except BaseException as exc:
        with library.catalog.session() as s:
            s.execute(update(Job).where(Job.id == job_id).values(status="failed", message=f"{type(exc).__name__}: {exc}",
                                                                finished_at=_now()))
        raise
    with library.catalog.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status="succeeded", total=len(groups), done=len(groups),
                                                            finished_at=_now()))


def library_collection_name(session, collection_id: int) -> str:
    from indexer.catalog.models import Collection

    return session.get(Collection, collection_id).name


def list_groups(library: Library, collection_name: str, *, after: int | None = None, limit: int = 100,
                kind: str | None = None) -> tuple[list[dict], int | None]:
    """Saved groups in id order, a page at a time: ``after`` is the cursor (the last group id seen).
    Returns the page and the next cursor (None at the end)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be from 1 to {MAX_PAGE}, got {limit}")
    if kind is not None and kind not in ("exact", "near", "similar"):
        raise InvalidRequest(f"kind must be exact, near or similar, got {kind!r}")
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        query = select(DuplicateGroup).where(DuplicateGroup.collection_id == collection.id)
        if after is not None:
            query = query.where(DuplicateGroup.id > after)
        if kind is not None:
            query = query.where(DuplicateGroup.kind == kind)
        groups = list(s.scalars(query.order_by(DuplicateGroup.id).limit(limit + 1)))
        more = len(groups) > limit
        groups = groups[:limit]
        ids = [g.id for g in groups]
        members: dict[int, list[tuple[int, str]]] = {i: [] for i in ids}
        if ids:
            for group_id, image_id, path in s.execute(
                    select(DuplicateMember.group_id, Image.id, Image.path).join(Image, Image.id == DuplicateMember.image_id)
                    .where(DuplicateMember.group_id.in_(ids)).order_by(Image.id)):
                members[group_id].append((image_id, path))
        page = [{"id": g.id, "kind": g.kind, "score": round(g.score, 6), "image_ids": [i for i, _ in members[g.id]],
                 "paths": [p for _, p in members[g.id]], "evidence": g.evidence} for g in groups]
    return page, (ids[-1] if more else None)
