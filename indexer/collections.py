"""Listing collections with their counts."""

from __future__ import annotations

from sqlalchemy import func, select

from indexer.catalog.models import Collection, Image, ModelRecord
from indexer.library import Library


def collection_counts(library: Library) -> list[dict]:
    """Per collection: images, indexed, failed, stored vectors, model digest (the CLI contract's shape)."""
    out = []
    with library.catalog.session() as s:
        counts = {(cid, status): n for cid, status, n in s.execute(
            select(Image.collection_id, Image.status, func.count()).group_by(Image.collection_id, Image.status))}
        for c in s.scalars(select(Collection).order_by(Collection.name)):
            model = s.get(ModelRecord, c.model_id) if c.model_id else None
            stores = library.stores_for(s, c)
            out.append({"name": c.name, "images": sum(n for (cid, _), n in counts.items() if cid == c.id),
                        "indexed": counts.get((c.id, "indexed"), 0), "failed": counts.get((c.id, "failed"), 0),
                        "vectors": stores.global_.count() if stores else 0,
                        "model": model.digest if model else None})
    return out
