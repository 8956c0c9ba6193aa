"""Where a chunked job's vectors go: the live stores, or a re-index's shadow generation."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.library import Library
from indexer.stores import CollectionStores
from model import Embedder


@dataclass
class Target:
    """Where a job's results go: the live index (image rows updated as chunks finish), or a
    re-index's shadow stores (results staged in the chunk rows until the swap)."""

    job_id: int
    collection_id: int
    collection_name: str
    generation: int
    model_id: int
    embedder: Embedder
    staged: bool

    def stores(self, library: Library) -> CollectionStores:
        return library.stores(self.collection_name, self.embedder.dim, self.embedder.embed_dim, self.generation)
