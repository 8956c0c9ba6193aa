"""Vector stores: one protocol (``base.VectorStore``), three backends, one way to open them."""

from __future__ import annotations

from pathlib import Path

from indexer.stores.base import SearchResult, StoreError, StoreSpec, VectorStore

BACKENDS = ("faiss", "qdrant")


def open_store(spec: StoreSpec, backend: str, directory: Path, qdrant_url: str | None = None) -> VectorStore:
    """The store for ``spec``: FAISS files or embedded Qdrant Edge under ``directory``, or the
    Qdrant server at ``qdrant_url`` when the backend is ``qdrant`` and a URL is set."""
    if backend == "faiss":
        from indexer.stores.faiss_store import FaissStore

        return FaissStore(spec, directory)
    if backend == "qdrant":
        if qdrant_url:
            from indexer.stores.qdrant_server_store import QdrantServerStore

            return QdrantServerStore.from_url(spec, qdrant_url)
        from indexer.stores.qdrant_edge_store import QdrantEdgeStore

        return QdrantEdgeStore(spec, directory)
    raise StoreError(f"unknown vector backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "SearchResult", "StoreError", "StoreSpec", "VectorStore", "open_store"]
