"""Whether a collection's stores hold the vectors its catalog rows say are indexed.

A store lost (a deleted FAISS file, a Qdrant volume not mounted, an older backup of one file) is
opened empty while the rows stay ``indexed``: listings and health report the gap, and index
planning turns the rows without vectors back to ``pending`` so ``dinoseek index`` repairs them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from indexer.catalog.models import Collection, Image
from indexer.library import Library
from indexer.stores import CollectionStores
from indexer.stores.patches import patch_ids

FETCH_BATCH = 2048  # ids looked up in a store per call while finding the rows without vectors


def expected_vectors(s: Session, collection_id: int) -> tuple[int, int]:
    """(global vectors, patch cells) the collection's ``indexed`` rows should have in its stores."""
    rows, cells = s.execute(
        select(func.count(), func.coalesce(func.sum(Image.patch_rows * Image.patch_cols), 0))
        .where(Image.collection_id == collection_id, Image.status == "indexed")).one()
    return int(rows), int(cells)


def store_gaps(library: Library, s: Session, collection: Collection) -> dict:
    """``{"vectors", "missing_vectors", "missing_patch_vectors"}``: what the global store holds and how
    many global vectors and patch cells of indexed rows it lacks (0 and 0 when whole)."""
    stores = library.stores_for(s, collection)
    if stores is None:
        return {"vectors": 0, "missing_vectors": 0, "missing_patch_vectors": 0}
    return gaps_in(s, collection.id, stores)


def gaps_in(s: Session, collection_id: int, stores: CollectionStores) -> dict:
    """``store_gaps`` of stores the caller has opened already."""
    rows, cells = expected_vectors(s, collection_id)
    held = stores.global_.count()
    return {"vectors": held, "missing_vectors": max(0, rows - held),
            "missing_patch_vectors": max(0, cells - stores.patches.count())}


def has_gaps(gaps: dict) -> bool:
    """Whether ``store_gaps`` found vectors missing."""
    return bool(gaps["missing_vectors"] or gaps["missing_patch_vectors"])


def describe_gaps(name: str, gaps: dict) -> str | None:
    """One line for a collection whose stores lack vectors (None when whole), saying how to repair."""
    if not has_gaps(gaps):
        return None
    return (f"collection {name!r}: its store lacks {gaps['missing_vectors']} image vectors and "
            f"{gaps['missing_patch_vectors']} patch vectors of indexed images (a lost or older store file?); "
            f"`dinoseek index PATH --collection {name}` on its paths re-embeds them")


def rows_without_vectors(stores: CollectionStores, rows: Sequence) -> list[int]:
    """Ids of ``rows`` (with ``id``, ``patch_rows``, ``patch_cols``) whose global vector, or first patch
    cell when they have cells, is missing from ``stores``."""
    missing: list[int] = []
    for start in range(0, len(rows), FETCH_BATCH):
        batch = rows[start:start + FETCH_BATCH]
        with_global = set(stores.global_.fetch(np.array([r.id for r in batch], dtype=np.int64))[0].tolist())
        first_cell = {r.id: int(patch_ids(r.id, 1, 1)[0]) for r in batch if r.patch_rows and r.patch_cols}
        held_cells = set(stores.patches.fetch(np.array(list(first_cell.values()), dtype=np.int64))[0].tolist()) \
            if first_cell else set()
        missing.extend(r.id for r in batch
                       if r.id not in with_global or (r.id in first_cell and first_cell[r.id] not in held_cells))
    return missing
