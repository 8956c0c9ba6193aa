"""Vector stores: one protocol (``base.VectorStore``), three backends, one way to open them."""

from __future__ import annotations

from pathlib import Path

from indexer.stores.base import SearchResult, StoreError, StoreSpec, VectorStore
from indexer.stores.qdrant_server_store import QdrantConfig

BACKENDS = ("faiss", "qdrant")


def open_store(spec: StoreSpec, backend: str, directory: Path, qdrant_url: str | None = None,
               qdrant: QdrantConfig | None = None) -> VectorStore:
    """The store for ``spec``: FAISS files or embedded Qdrant Edge under ``directory``, or the
    Qdrant server at ``qdrant_url`` when the backend is ``qdrant`` and a URL is set (with the API
    key and collection layout of ``qdrant``; defaults without it)."""
    if backend == "faiss":
        from indexer.stores.faiss_store import FaissStore

        return FaissStore(spec, directory)
    if backend == "qdrant":
        if qdrant_url:
            from indexer.stores.qdrant_server_store import open_server_store

            return open_server_store(spec, qdrant_url, qdrant)
        from indexer.stores.qdrant_edge_store import QdrantEdgeStore

        return QdrantEdgeStore(spec, directory)
    raise StoreError(f"unknown vector backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def drop_store(name: str, backend: str, directory: Path, qdrant_url: str | None = None,
               qdrant: QdrantConfig | None = None) -> bool:
    """Delete a store and everything it holds (a superseded or abandoned re-index generation);
    True if there was one. The store must not be open in this process."""
    import shutil

    if backend == "faiss":
        path = Path(directory) / f"{name}.faiss"
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed
    if backend == "qdrant" and qdrant_url:
        from indexer.stores.qdrant_server_store import connect

        client = connect(qdrant_url, qdrant)
        try:
            return bool(client.collection_exists(name) and client.delete_collection(name))
        finally:
            client.close()
    if backend == "qdrant":
        path = Path(directory) / name
        existed = path.exists()
        shutil.rmtree(path, ignore_errors=True)
        return existed
    raise StoreError(f"unknown vector backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "QdrantConfig", "SearchResult", "StoreError", "StoreSpec", "VectorStore", "drop_store",
           "open_store"]
