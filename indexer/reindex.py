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
from datetime import datetime, timezone

from sqlalchemy import select, update

from indexer.catalog.models import Collection, Image, Job, JobChunk, update_images
from indexer.errors import InvalidRequest
from indexer.index_run import Progress
from indexer.indexing import (
    DEFAULT_CHUNK_SIZE,
    IndexReport,
    refuse_if_reindexing,
    run_new_job_here,
)
from indexer.library import Library

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_reindex_job(library: Library, collection_name: str, checkpoint: str | os.PathLike, *,
                       chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Record a re-index of the collection with ``checkpoint`` (``queued``); returns the job id.
    Deletes what an earlier failed re-index left of the shadow generation."""
    if chunk_size < 1:
        raise InvalidRequest(f"chunk size must be at least 1, got {chunk_size}")
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
        refuse_if_reindexing(s, collection, "reindex")
        model = library.model_record(s, embedder)
        name = collection.name
        abandoned = [int(j.params["generation"]) for j in s.scalars(select(Job).where(
            Job.collection_id == collection.id, Job.kind == "reindex", Job.status == "failed"))
            if int(j.params.get("generation", 0)) > collection.store_generation]
    for generation in abandoned:  # leftovers of re-indexes that failed
        library.drop_generation(name, generation)
    with library.catalog.session() as s:
        job = Job(collection_id=collection.id, kind="reindex", status="queued",
                  params={"model": checkpoint, "model_id": model.id, "from_model_id": collection.model_id,
                          "chunk_size": chunk_size, "token": uuid.uuid4().hex})
        s.add(job)
        s.flush()
        # a generation of its own (the job id: above every earlier one), so no chunk of an
        # abandoned re-index can write into this one's stores
        job.params = dict(job.params, generation=max(job.id, collection.store_generation + 1))
        return job.id


def plan_reindex(session, job: Job) -> list[JobChunk]:
    """Every image of the collection, in id order, in chunks."""
    ids = list(session.scalars(select(Image.id).where(Image.collection_id == job.collection_id).order_by(Image.id)))
    size = int(job.params.get("chunk_size", DEFAULT_CHUNK_SIZE))
    chunks = [JobChunk(job_id=job.id, seq=n, image_ids=ids[start:start + size], status="pending")
              for n, start in enumerate(range(0, len(ids), size))]
    session.add_all(chunks)
    job.scanned, job.total = len(ids), len(ids)
    return chunks


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
        now = _now()
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
                s.execute(update(Image).where(Image.id == f["id"]).values(
                    status="failed", error=f["error"], model_id=None, indexed_at=None, patch_rows=None,
                    patch_cols=None))
            chunk.results = None
        collection.model_id = int(p["model_id"])
        collection.store_generation = new_generation
        name = collection.name
    try:
        library.drop_generation(name, old_generation)
    except Exception as exc:  # noqa: BLE001 - the swap is done; a leftover file only wastes space
        log.warning("re-index of %r: could not delete the old generation %d: %s", name, old_generation, exc)


def reindex(library: Library, collection_name: str, checkpoint: str | os.PathLike, *,
            progress: Progress | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> IndexReport:
    """Re-embed a collection with ``checkpoint`` in this process (holding its writer lock)."""
    return run_new_job_here(library, collection_name, lambda: create_reindex_job(
        library, collection_name, checkpoint, chunk_size=chunk_size), progress=progress)
