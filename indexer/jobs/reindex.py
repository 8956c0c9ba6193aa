"""Re-embedding a collection with another model: a shadow generation of stores, then one swap.

The re-index embeds every image of the catalog into the stores of a new generation (numbered by
its job id, above every earlier one) while the current generation keeps serving; per-image
outcomes are staged in the chunk rows. When the last chunk is done, one transaction points the
rows and the collection at the new model and generation, and the old stores are deleted. A
failed or interrupted re-index changes nothing that serves: its half-built generation is deleted
by the next attempt.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from indexer.catalog.models import Collection, Image, Job, JobChunk, failed_image, update_images, utcnow
from indexer.errors import InvalidRequest
from indexer.jobs.records import DEFAULT_CHUNK_SIZE, JobInfo, JobKind, add_job, check_chunk_size, chunks_of
from indexer.jobs.target import Target
from indexer.library import Library

log = logging.getLogger(__name__)


def create_reindex_job(library: Library, collection_name: str, checkpoint: str | os.PathLike, *,
                       chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Record a re-index of the collection with ``checkpoint`` (``queued``); returns the job id.
    Deletes what an earlier failed re-index left of the shadow generation."""
    check_chunk_size(chunk_size)
    checkpoint = str(checkpoint)
    if os.path.sep in checkpoint or os.path.exists(checkpoint):
        if not os.path.isfile(checkpoint):
            raise InvalidRequest(f"model checkpoint {checkpoint} does not exist")
        checkpoint = os.path.abspath(checkpoint)
    embedder = library.embedder_for(checkpoint)
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        if collection.model_id is None:
            raise InvalidRequest(f"collection {collection_name!r} has no vectors yet: index it with "
                                 f"DINOSEEK_MODEL={checkpoint} instead")
        model = library.model_record(s, embedder)
        name = collection.name
        abandoned = [int(j.params["generation"]) for j in s.scalars(select(Job).where(
            Job.collection_id == collection.id, Job.kind == REINDEX.name, Job.status == "failed"))
            if int(j.params.get("generation", 0)) > collection.store_generation]
    for generation in abandoned:  # leftovers of re-indexes that failed
        library.drop_generation(name, generation)
    with library.catalog.session() as s:
        collection = library.get_collection(s, name)
        job = add_job(s, collection, REINDEX, {"model": checkpoint, "model_id": model.id,
                                               "from_model_id": collection.model_id, "chunk_size": chunk_size,
                                               "token": uuid.uuid4().hex})
        # a generation of its own (the job id: above every earlier one), so no chunk of an
        # abandoned re-index can write into this one's stores
        job.params = dict(job.params, generation=max(job.id, collection.store_generation + 1))
        return job.id


def plan_reindex(library: Library, session: Session, job: Job) -> list[JobChunk]:
    """Every image of the collection, in id order, in chunks."""
    ids = list(session.scalars(select(Image.id).where(Image.collection_id == job.collection_id).order_by(Image.id)))
    job.scanned, job.total = len(ids), len(ids)
    return chunks_of(job, ids)


def shadow_target(library: Library, session: Session, job: JobInfo, collection: Collection) -> Target:
    """The new generation's stores, embedded with the re-index's model; results staged."""
    p = job.params
    return Target(job.id, collection.id, collection.name, int(p["generation"]), int(p["model_id"]),
                  library.embedder_for(p["model"]), staged=True)


def finish_reindex(library: Library, job: JobInfo) -> dict:
    """Let go of the shadow stores (complete now) and swap them in. The caller holds the writer lock."""
    library.release_stores(job.collection_name)
    swap_generation(library, job.id)
    return job.params


def swap_generation(library: Library, job_id: int) -> None:
    """Point the rows and the collection at the new model and stores in one transaction, then
    delete the old generation's stores."""
    with library.catalog.session() as s:
        job = s.get(Job, job_id)
        collection = s.get(Collection, job.collection_id)
        p = job.params
        old_generation, new_generation = collection.store_generation, int(p["generation"])
        if old_generation == new_generation:
            return  # swapped already (a repeated finish)
        now = utcnow()
        for chunk in s.scalars(select(JobChunk).where(JobChunk.job_id == job.id)):
            rows, failures = [], []
            for staged in chunk.results or []:
                if "error" in staged:
                    failures.append(staged)
                    continue
                row = dict(staged)
                if row.get("taken_at"):
                    row["taken_at"] = datetime.fromisoformat(row["taken_at"])
                row.update(status="indexed", error=None, model_id=int(p["model_id"]), indexed_at=now)
                rows.append(row)
            update_images(s, rows)
            for f in failures:
                s.execute(update(Image).where(Image.id == f["id"]).values(failed_image(f["error"])))
            chunk.results = None
        collection.model_id = int(p["model_id"])
        collection.store_generation = new_generation
        name = collection.name
    try:
        library.drop_generation(name, old_generation)
    except Exception as exc:  # noqa: BLE001 - the swap is done; a leftover file only wastes space
        log.warning("re-index of %r: could not delete the old generation %d: %s", name, old_generation, exc)


REINDEX = JobKind("reindex", "re-indexed", conflicts={"index": "indexed", "reindex": "re-indexed"}, chunked=True, plan=plan_reindex,
                  target=shadow_target, finish=finish_reindex)
