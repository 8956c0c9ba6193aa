"""Collections: creating one, listing them with their counts."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from indexer.catalog.models import Collection, Image, Job, ModelRecord
from indexer.catalog.names import check_collection_name, check_no_case_twin
from indexer.errors import AlreadyExists
from indexer.library import Library
from indexer.store_gaps import store_gaps


def create_collection(library: Library, name: str) -> dict:
    """A new empty collection, in the listing's shape; ``AlreadyExists`` if the name is taken."""
    check_collection_name(name)
    try:
        with library.catalog.session() as s:
            if s.scalar(select(Collection.id).where(Collection.name == name)) is not None:
                raise AlreadyExists(f"collection {name!r} exists")
            check_no_case_twin(s, name)
            s.add(Collection(name=name, vector_backend=library.backend.name))
    except IntegrityError as exc:  # created by a concurrent request between the check and the insert
        raise AlreadyExists(f"collection {name!r} exists") from exc
    return {"name": name, "images": 0, "indexed": 0, "failed": 0, "vectors": 0, "missing_vectors": 0,
            "missing_patch_vectors": 0, "model": None, "vector_backend": library.backend.name, "last_job": None}


def collection_counts(library: Library, after: str | None = None, limit: int | None = None) -> list[dict]:
    """Per collection, by name: images, indexed, failed, stored vectors, the vectors of indexed rows
    its stores lack (a lost store), model digest, the kind of store holding its vectors, its last job
    (the CLI contract's shape). ``after`` and ``limit`` page through them (names after ``after``)."""
    out = []
    with library.catalog.session() as s:
        query = select(Collection).order_by(Collection.name)
        if after is not None:
            query = query.where(Collection.name > after)
        if limit is not None:
            query = query.limit(limit)
        collections = list(s.scalars(query))
        ids = [c.id for c in collections]
        counts = {(cid, status): n for cid, status, n in s.execute(
            select(Image.collection_id, Image.status, func.count()).where(Image.collection_id.in_(ids))
            .group_by(Image.collection_id, Image.status))} if ids else {}
        last = dict(s.execute(select(Job.collection_id, func.max(Job.id)).where(Job.collection_id.in_(ids))
                              .group_by(Job.collection_id)).tuples().all()) if ids else {}
        jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(list(last.values()))))} if last else {}
        for c in collections:
            model = s.get(ModelRecord, c.model_id) if c.model_id else None
            job = jobs.get(last.get(c.id))
            out.append({"name": c.name, "images": sum(n for (cid, _), n in counts.items() if cid == c.id),
                        "indexed": counts.get((c.id, "indexed"), 0), "failed": counts.get((c.id, "failed"), 0),
                        **store_gaps(library, s, c), "model": model.digest if model else None,
                        "vector_backend": library.backend_of(c.name, c.vector_backend).name,
                        "last_job": {"id": job.id, "kind": job.kind, "status": job.status} if job else None})
    return out
