"""Vector stores: one interface (``base.VectorStore``), three backends chosen once (``backends``), a
collection's pair of stores, the patch-cell layout, the writer lock and the write log."""

from __future__ import annotations

from pathlib import Path

from indexer.stores.backends import BACKENDS, StoreBackend, store_backend, usable_backends
from indexer.stores.base import SearchResult, StoreError, StoreSpec, VectorStore
from indexer.stores.collection import CollectionStores
from indexer.stores.qdrant_server_store import QdrantConfig


def open_store(spec: StoreSpec, backend: str, directory: Path, qdrant_url: str | None = None,
               qdrant: QdrantConfig | None = None) -> VectorStore:
    """One store outside a library (tests, benchmarks): ``store_backend(...).open(spec)``."""
    return store_backend(backend, directory, qdrant_url, qdrant).open(spec)


__all__ = ["BACKENDS", "CollectionStores", "QdrantConfig", "SearchResult", "StoreBackend", "StoreError", "StoreSpec",
           "VectorStore", "open_store", "store_backend", "usable_backends"]
