"""Where a library's stores live: FAISS files, Qdrant Edge shards or a Qdrant server, chosen once.

Each backend opens and drops stores by name and says what it needs from its callers: ``embedded``
stores have one writer at a time (the collection's writer lock), a ``single_owner`` store belongs
to one process at a time (let go after each write so another process may open it).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from dinoseek.settings import VECTOR_BACKENDS as BACKENDS
from indexer.stores import qdrant_server_store as server  # ``server.connect``: the one place clients are made
from indexer.stores.base import StoreError, StoreSpec, VectorStore
from indexer.stores.faiss_store import FaissStore, faiss_installed
from indexer.stores.qdrant_edge_store import QdrantEdgeStore
from indexer.stores.qdrant_multivector_store import QdrantMultivectorStore
from indexer.stores.qdrant_server_store import QdrantConfig, QdrantServerStore


class StoreBackend:
    """One place stores live; every operation the library needs of it."""

    name: str
    embedded: bool = True  # files this process owns: one writer at a time, across processes
    single_owner: bool = False  # the files may be open in one process at a time

    def open(self, spec: StoreSpec) -> VectorStore:
        """The store for ``spec``, created empty if there is none."""
        raise NotImplementedError

    def drop(self, name: str) -> bool:
        """Delete a store and everything it holds; True if there was one. It must not be open here."""
        raise NotImplementedError

    def probe(self) -> dict:
        """Prove the backend answers (health checks); raises when it does not."""
        raise NotImplementedError


class _Directory(StoreBackend):
    """Stores as files under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def probe(self) -> dict:
        self.directory.mkdir(parents=True, exist_ok=True)
        probe = self.directory / f".health-{os.getpid()}-{uuid.uuid4().hex}"  # callers at once never share one
        try:
            probe.write_bytes(b"ok")
        finally:
            probe.unlink(missing_ok=True)
        return {"backend": self.name}


class FaissBackend(_Directory):
    name = "faiss"

    def open(self, spec: StoreSpec) -> VectorStore:
        self.directory.mkdir(parents=True, exist_ok=True)
        return FaissStore(spec, self.directory)

    def drop(self, name: str) -> bool:
        path = self.directory / f"{name}.faiss"
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed


class QdrantEdgeBackend(_Directory):
    name = "qdrant-edge"
    single_owner = True  # an Edge shard holds its write-ahead-log lock while open

    def open(self, spec: StoreSpec) -> VectorStore:
        self.directory.mkdir(parents=True, exist_ok=True)
        return QdrantEdgeStore(spec, self.directory)

    def drop(self, name: str) -> bool:
        path = self.directory / name
        existed = path.exists()
        shutil.rmtree(path, ignore_errors=True)
        return existed


class QdrantServerBackend(StoreBackend):
    name = "qdrant-server"
    embedded = False  # the server takes writes from every worker at once

    def __init__(self, url: str, config: QdrantConfig | None = None) -> None:
        self.url = url
        self.config = config or QdrantConfig()

    def open(self, spec: StoreSpec) -> VectorStore:
        """A store of image slots (an id stride: the patch cells) takes the layout its collection
        was created with, else the configured one."""
        client = server.connect(self.url, self.config)
        try:
            cls = QdrantServerStore
            if spec.id_stride and (held_layout(client, spec.name) or self.config.patch_layout) == "multivector":
                cls = QdrantMultivectorStore
            return cls(spec, client, owns_client=True, config=self.config)
        except BaseException:
            client.close()
            raise

    def drop(self, name: str) -> bool:
        client = server.connect(self.url, self.config)
        try:
            return bool(client.collection_exists(name) and client.delete_collection(name))
        finally:
            client.close()

    def probe(self) -> dict:
        client = server.connect(self.url, self.config, timeout=3)
        try:
            client.get_collections()
        finally:
            client.close()
        return {"backend": self.name}


def held_layout(client, name: str) -> str | None:
    """``points`` or ``multivector`` for an existing Qdrant collection, None when there is none."""
    try:
        if not client.collection_exists(name):
            return None
        params = client.get_collection(name).config.params.vectors
    except Exception as exc:  # noqa: BLE001 - transport, HTTP and local-mode errors alike
        raise StoreError(f"store {name!r}: Qdrant open failed: {exc}") from exc
    if isinstance(params, dict):
        params = params.get("")
    return "multivector" if getattr(params, "multivector_config", None) is not None else "points"


def store_backend(kind: str, directory: Path, qdrant_url: str | None = None,
                  qdrant: QdrantConfig | None = None) -> StoreBackend:
    """The default backend for ``DINOSEEK_VECTOR_BACKEND``: ``faiss`` (FAISS files under
    ``directory``), ``qdrant`` (the Qdrant server at ``qdrant_url``, else embedded Qdrant Edge under
    ``directory``), or ``auto``: FAISS when it is installed, else Qdrant (a plain install)."""
    if kind == "auto":
        kind = "faiss" if faiss_installed() else "qdrant"
    if kind == "faiss":
        return FaissBackend(directory)
    if kind == "qdrant":
        return QdrantServerBackend(qdrant_url, qdrant) if qdrant_url else QdrantEdgeBackend(directory)
    raise StoreError(f"unknown vector backend {kind!r}; choose one of {', '.join(BACKENDS)}")


def usable_backends(default: StoreBackend, directory: Path) -> dict[str, StoreBackend]:
    """Every backend a library with ``default`` opens collections with, by name: both embedded kinds
    (FAISS files and Edge shards share ``directory`` and its writer locks) beside an embedded default,
    the server alone beside a server (other machines cannot see this one's files)."""
    if not default.embedded:
        return {default.name: default}
    both = {FaissBackend.name: FaissBackend(directory), QdrantEdgeBackend.name: QdrantEdgeBackend(directory)}
    return {**both, default.name: default}
