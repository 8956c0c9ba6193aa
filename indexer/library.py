"""The service context every front end shares: catalog, vector stores and the embedding model.

The CLI, the Celery workers and the API each open one ``Library`` from the settings; everything
else in ``indexer`` takes it as its first argument.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.catalog.database import Catalog
from indexer.catalog.models import Collection, ModelRecord
from indexer.catalog.names import check_collection_name, check_no_case_twin
from indexer.catalog.schema import ensure_schema
from indexer.errors import InvalidRequest, ModelMismatch, NotFound
from indexer.ingest.reading import set_decode_memory
from indexer.stores import CollectionStores, QdrantConfig, StoreBackend, StoreError, StoreSpec, store_backend, usable_backends
from indexer.stores.locks import collection_writer_lock
from indexer.stores.patches import PATCH_SLOTS
from model import ARCHS, Embedder, load_backbone
from model.pooling import token_dim

if TYPE_CHECKING:
    from dinoseek.settings import Settings


def arch_name(vit) -> str:
    """The architecture's registry name (``vits14_reg4``), or its shape when it is not a named one."""
    arch = vit.arch
    return next((name for name, a in ARCHS.items() if a == arch), f"vit-{arch.embed_dim}x{arch.depth}")


def store_prefix(collection_name: str, generation: int) -> str:
    """Store names of a collection's generation: ``NAME`` for the first, ``NAME~gN`` after re-indexes."""
    return collection_name if generation == 0 else f"{collection_name}~g{generation}"


class Library:
    """Opened once per process from the settings; thread-safe for concurrent readers."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None,
                 other_embedders: dict[str, Embedder] | None = None) -> None:
        self.settings = settings
        set_decode_memory(settings.decode_memory_mb)
        self.catalog = Catalog(settings.database_url)
        ensure_schema(self.catalog)
        self._embedder = embedder
        self._other_embedders = {} if other_embedders is None else other_embedders  # re-index models
        self._stores: dict[tuple[str, int], CollectionStores] = {}
        self._model_ids: dict[str, int] = {}  # digest → catalog id, for models already checked
        self._model_dims: dict[int, tuple[int, int]] = {}  # catalog id → (global, patch) dimensions
        self._lock = threading.RLock()
        # the backend new collections get; each collection keeps the one it was created with
        self.backend: StoreBackend = store_backend(settings.vector_backend, self.stores_dir, settings.qdrant_url,
                                                   self.qdrant_config)
        self._backends = usable_backends(self.backend, self.stores_dir)
        self._backend_of: dict[str, StoreBackend] = {}  # collection name → its backend, once looked up

    @property
    def stores_dir(self) -> Path:
        return self.settings.home / "stores"

    @property
    def qdrant_config(self) -> QdrantConfig:
        """The Qdrant server's API key and collection layout (the patch store's too: cells as points or
        one multivector per image, and the CA its certificate chains to), from the ``DINOSEEK_QDRANT_*`` settings."""
        return QdrantConfig.from_settings(self.settings)

    # ------------------------------------------------------------------ model
    @property
    def embedder(self) -> Embedder:
        """The configured model (``DINOSEEK_MODEL`` or the shipped default), loaded on first use."""
        with self._lock:
            if self._embedder is None:
                vit = load_backbone(self.settings.model, search_dirs=[self.settings.models_dir])
                self._embedder = Embedder(vit, device=self.settings.device)
            return self._embedder

    def embedder_for(self, checkpoint: str) -> Embedder:
        """The model of a checkpoint other than the configured one (a re-index), loaded once."""
        with self._lock:
            if checkpoint not in self._other_embedders:
                vit = load_backbone(checkpoint, search_dirs=[self.settings.models_dir])
                self._other_embedders[checkpoint] = Embedder(vit, device=self.settings.device)
            return self._other_embedders[checkpoint]

    def model_record(self, session: Session, embedder: Embedder | None = None) -> ModelRecord:
        """The catalog row of the configured model (or of ``embedder``'s), created on first use."""
        emb = embedder or self.embedder
        vit = emb.vit
        digest = getattr(vit, "checkpoint_digest", None)
        if not digest:
            raise InvalidRequest("the configured model has no checkpoint file digest; save it with "
                                 "`dinoseek convert` and point DINOSEEK_MODEL at the file")
        record = session.scalar(select(ModelRecord).where(ModelRecord.digest == digest))
        if record is None:
            record = ModelRecord(digest=digest, arch=arch_name(vit), dim=emb.dim,
                                 source=str(getattr(vit, "checkpoint_path", "")), image_size=emb.image_size,
                                 pooling=emb.pooling)
            session.add(record)
            session.flush()
        return record

    def check_query_model(self, session: Session, collection: Collection) -> None:
        """Refuse to query a collection with another model than its own (``ModelMismatch``); the
        answer is remembered per model, so a search costs no catalog query for it."""
        digest = getattr(self.embedder.vit, "checkpoint_digest", None)
        if digest is not None and self._model_ids.get(digest) == collection.model_id:
            return
        record = self.bind_model(session, collection)
        self._model_ids[record.digest] = record.id

    def bind_model(self, session: Session, collection: Collection) -> ModelRecord:
        """Bind the collection to the configured model, or refuse if it holds another model's vectors."""
        record = self.model_record(session)
        if collection.model_id is None:
            collection.model_id = record.id
            session.flush()
        elif collection.model_id != record.id:
            bound = session.get(ModelRecord, collection.model_id)
            raise ModelMismatch(
                f"collection {collection.name!r} holds vectors of model {bound.digest[:12]} ({bound.source}); "
                f"the configured model is {record.digest[:12]} ({record.source}). Configure that model "
                f"(DINOSEEK_MODEL) or re-embed the collection with `dinoseek reindex`")
        return record

    # ------------------------------------------------------------------ collections
    def get_collection(self, session: Session, name: str) -> Collection:
        check_collection_name(name)
        collection = session.scalar(select(Collection).where(Collection.name == name))
        if collection is None:
            raise NotFound(f"no collection named {name!r}")
        return collection

    def require_collection(self, name: str) -> None:
        """Refuse a request naming a collection that does not exist (``NotFound``), before any model
        loads or any picture is decoded for it."""
        with self.catalog.session() as s:
            self.get_collection(s, name)

    def get_or_create_collection(self, session: Session, name: str) -> Collection:
        check_collection_name(name)
        collection = session.scalar(select(Collection).where(Collection.name == name))
        if collection is None:
            check_no_case_twin(session, name)
            collection = Collection(name=name, vector_backend=self.backend.name)
            session.add(collection)
            session.flush()
        return collection

    # ------------------------------------------------------------------ stores
    @property
    def embedded_stores(self) -> bool:
        """Whether vectors live in files this process owns (FAISS, Qdrant Edge), not in a server."""
        return self.backend.embedded

    def writer_lock(self, collection_name: str, timeout: float | None = None) -> AbstractContextManager:
        """Exclusive right to write the collection's vectors: a file lock for embedded stores
        (one writer at a time, across processes), nothing for a Qdrant server."""
        if not self.embedded_stores:
            return nullcontext()
        return collection_writer_lock(self.stores_dir, check_collection_name(collection_name), timeout)

    def backend_of(self, collection_name: str, kind: str | None = None) -> StoreBackend:
        """The backend holding the collection's vectors: ``kind`` or the one its row records (this
        library's default while it records none); StoreError when this library cannot open that kind,
        rather than serving an empty store of another."""
        backend = self._backend_of.get(collection_name)
        if backend is not None:
            return backend
        if kind is None:
            with self.catalog.session() as s:
                kind = s.scalar(select(Collection.vector_backend).where(Collection.name == collection_name))
        backend = self._backends.get(kind or self.backend.name)
        if backend is None:
            raise StoreError(f"collection {collection_name!r} keeps its vectors in {kind} stores, which this "
                             f"library (DINOSEEK_VECTOR_BACKEND={self.settings.vector_backend}, serving "
                             f"{self.backend.name}) cannot open: configure that backend, or export the collection "
                             f"and import it here")
        if kind is not None:
            self._backend_of[collection_name] = backend
        return backend

    def stores(self, collection_name: str, global_dim: int, patch_dim: int, generation: int = 0) -> CollectionStores:
        """The collection's stores of one generation (a re-index builds the next beside the
        serving one), opened once per process."""
        with self._lock:
            key = (collection_name, generation)
            stores = self._stores.get(key)
            if stores is None:
                prefix = store_prefix(collection_name, generation)
                backend = self.backend_of(collection_name)
                stores = CollectionStores(
                    backend.open(StoreSpec(f"{prefix}.global", global_dim)),
                    # patch ids are image id x PATCH_SLOTS + cell
                    lambda: backend.open(StoreSpec(f"{prefix}.patches", patch_dim, "float16", id_stride=PATCH_SLOTS)),
                )
                self._stores[key] = stores
            return stores

    def release_stores(self, collection_name: str) -> None:
        """Close this process's stores of a collection (every generation), so another process
        may own the embedded files; they reopen on next use."""
        with self._lock:
            for key in [k for k in self._stores if k[0] == collection_name]:
                self._stores.pop(key).close()

    def hand_back_stores(self, collection_name: str) -> None:
        """Let go of a collection's stores when the backend lets one process hold them at a time
        (an Edge shard), so indexers elsewhere may open them; other backends' stay open."""
        if self.backend_of(collection_name).single_owner:
            self.release_stores(collection_name)

    def drop_generation(self, collection_name: str, generation: int) -> None:
        """Delete a collection's stores of one generation (after a swap, or a failed re-index's leftovers)."""
        with self._lock:
            stale = self._stores.pop((collection_name, generation), None)
        if stale is not None:
            stale.discard()
        prefix = store_prefix(collection_name, generation)
        backend = self.backend_of(collection_name)
        for suffix in ("global", "patches"):
            backend.drop(f"{prefix}.{suffix}")

    def stores_for(self, session: Session, collection: Collection) -> CollectionStores | None:
        """Stores of a collection that has a model bound (None before its first vectors), up to date
        with what other processes wrote."""
        if collection.model_id is None:
            return None
        dims = self._model_dims.get(collection.model_id)
        if dims is None:
            record = session.get(ModelRecord, collection.model_id)
            dims = (record.dim, token_dim(record.dim, record.pooling))
            self._model_dims[collection.model_id] = dims
        global_dim, patch_dim = dims
        if collection.vector_backend is None:  # older than the record: this library's default serves it from now on
            collection.vector_backend = self.backend.name
        self.backend_of(collection.name, collection.vector_backend)
        with self._lock:  # a re-index swapped generations since: let the old files go (never a newer shadow)
            stale = [self._stores.pop(k) for k in list(self._stores)
                     if k[0] == collection.name and k[1] < collection.store_generation]
        for stores in stale:  # their files were deleted by the swap: closing would write them back
            stores.discard()
        stores = self.stores(collection.name, global_dim, patch_dim, collection.store_generation)
        stores.refresh()  # another process (an indexer, a worker) may have written since they were opened
        return stores

    def close(self) -> None:
        with self._lock:
            for stores in self._stores.values():
                stores.close()
            self._stores.clear()
            self.catalog.dispose()
