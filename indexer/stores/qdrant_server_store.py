"""Qdrant server vector store: one collection per store, reached through ``qdrant-client``.

The collection uses cosine distance, an HNSW graph (m=16, ef_construct=100) and int8 scalar
quantisation kept in RAM; top-k searches run on the quantised vectors and rescore the candidates
with the stored ones. ``range_search`` is exact by default (full scan of the stored vectors,
quantisation ignored) so no hit above the threshold is missed. The same code serves a real server
(``from_url``) and qdrant-client's local mode (``QdrantClient(path=...)``), which ignores HNSW,
quantisation and search parameters and searches by brute force.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.stores.base import (
    SearchResult,
    StoreError,
    StoreSpec,
    as_ids,
    as_vectors,
    empty_result,
    in_request_order,
    widening_range,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
UPSERT_BATCH = 512  # points per upsert request
QUERY_BATCH = 64  # queries per query_batch_points request
ID_BATCH = 1024  # ids per retrieve/delete request
RANGE_FIRST_LIMIT = 256  # range_search asks for this many hits first and widens while the page is full
THRESHOLD_SLACK = 1e-6  # Qdrant keeps score > threshold; we ask a little lower and keep >= ourselves


def _models():
    from qdrant_client import models  # imported lazily: only this backend needs qdrant-client

    return models


def _dense(vector: Any) -> list[float]:
    """The default (unnamed) dense vector of a record, whichever shape the client returns."""
    if isinstance(vector, dict):
        vector = vector[""]
    return vector


class QdrantServerStore:
    """A Qdrant collection holding one named set of vectors."""

    def __init__(self, spec: StoreSpec, client: QdrantClient, *, owns_client: bool = False, exact_range: bool = True) -> None:
        self.spec = spec
        self.collection = spec.name
        self.owns_client = owns_client  # close() closes the client only when the store owns it
        self.exact_range = exact_range  # False: range_search walks the HNSW graph (faster, may miss hits)
        self._client: QdrantClient | None = client
        self._m = _models()
        self._lock = threading.RLock()
        with self._server("open"):
            self._ensure_collection(client)

    @classmethod
    def from_url(cls, spec: StoreSpec, url: str, api_key: str | None = None) -> QdrantServerStore:
        """A store on the Qdrant server at ``url``, with a client of its own (closed by ``close``)."""
        from qdrant_client import QdrantClient

        client = QdrantClient(url=url, api_key=api_key)
        try:
            return cls(spec, client, owns_client=True)
        except BaseException:
            client.close()
            raise

    # ------------------------------------------------------------------ collection
    def _vector_params(self):
        m = self._m
        datatype = m.Datatype.FLOAT16 if self.spec.precision == "float16" else m.Datatype.FLOAT32
        # always_ram is the spelling every server version understands (newer ones also take memory=PINNED).
        quantization = m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, always_ram=True))
        return m.VectorParams(
            size=self.spec.dim,
            distance=m.Distance.COSINE,
            datatype=datatype,
            hnsw_config=m.HnswConfigDiff(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT),
            quantization_config=quantization,
        )

    def _ensure_collection(self, client: QdrantClient) -> None:
        """Create the collection if missing; otherwise check it holds vectors of this spec."""
        if not client.collection_exists(self.collection):
            try:
                client.create_collection(self.collection, vectors_config=self._vector_params())
                return
            except Exception:
                if not client.collection_exists(self.collection):  # not a lost creation race: a real failure
                    raise
        params = client.get_collection(self.collection).config.params.vectors
        if isinstance(params, dict):
            params = params.get("")
        if params is None:
            raise StoreError(f"store {self.spec.name!r}: collection has no default dense vector")
        held = getattr(params.datatype, "value", params.datatype) or "float32"
        if params.size != self.spec.dim or params.distance != self._m.Distance.COSINE or held != self.spec.precision:
            raise StoreError(
                f"store {self.spec.name!r}: collection holds {params.size}-d {held} {params.distance} vectors, "
                f"expected {self.spec.dim}-d {self.spec.precision} Cosine"
            )

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def _server(self, action: str) -> Iterator[None]:
        """Turn client and server errors into StoreError naming this store."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - transport, HTTP and local-mode errors alike
            raise StoreError(f"store {self.spec.name!r}: Qdrant {action} failed: {exc}") from exc

    def _open_client(self) -> QdrantClient:
        if self._client is None:
            raise StoreError(f"store {self.spec.name!r} is closed")
        return self._client

    def _retrieve(self, client: QdrantClient, ids: np.ndarray, with_vectors: bool) -> list[Any]:
        records: list[Any] = []
        for start in range(0, len(ids), ID_BATCH):
            chunk = ids[start : start + ID_BATCH].tolist()
            records += client.retrieve(self.collection, ids=chunk, with_payload=False, with_vectors=with_vectors)
        return records

    def _count(self, client: QdrantClient) -> int:
        return int(client.count(self.collection, exact=True).count)

    # ------------------------------------------------------------------ protocol
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the vectors for ``ids``, in batches of UPSERT_BATCH points."""
        ids = as_ids(ids, self.spec.name)
        vectors = as_vectors(vectors, self.spec, rows=len(ids))
        with self._lock, self._server("upsert"):
            client = self._open_client()
            for start in range(0, len(ids), UPSERT_BATCH):
                stop = start + UPSERT_BATCH
                batch = self._m.Batch(ids=ids[start:stop].tolist(), vectors=vectors[start:stop].tolist())
                client.upsert(self.collection, points=batch, wait=True)

    def delete(self, ids: np.ndarray) -> int:
        """Remove these ids; returns how many existed."""
        ids = as_ids(ids, self.spec.name)
        with self._lock, self._server("delete"):
            client = self._open_client()
            existing = [int(r.id) for r in self._retrieve(client, ids, with_vectors=False)]
            for start in range(0, len(existing), ID_BATCH):
                selector = self._m.PointIdsList(points=existing[start : start + ID_BATCH])
                client.delete(self.collection, points_selector=selector, wait=True)
            return len(existing)

    def fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of the ids that exist, in the order asked."""
        ids = as_ids(ids, self.spec.name)
        with self._lock, self._server("fetch"):
            records = self._retrieve(self._open_client(), ids, with_vectors=True)
        return in_request_order(self.spec, ids, {int(r.id): _dense(r.vector) for r in records})

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` highest-scoring stored vectors for each query row (quantised, then rescored)."""
        queries = as_vectors(queries, self.spec)
        result = empty_result(self.spec, len(queries), k)
        ids, scores = result.ids, result.scores
        m = self._m
        params = m.SearchParams(quantization=m.QuantizationSearchParams(rescore=True))
        with self._lock, self._server("search"):
            client = self._open_client()
            limit = min(k, self._count(client))
            if not limit or not len(queries):
                return SearchResult(ids, scores)
            for start in range(0, len(queries), QUERY_BATCH):
                requests = [
                    m.QueryRequest(query=q.tolist(), limit=limit, params=params, with_payload=False, with_vector=False)
                    for q in queries[start : start + QUERY_BATCH]
                ]
                responses = client.query_batch_points(self.collection, requests=requests)
                for row, response in enumerate(responses, start=start):
                    hits = response.points
                    ids[row, : len(hits)] = [int(h.id) for h in hits]
                    scores[row, : len(hits)] = [h.score for h in hits]
        return SearchResult(ids, scores)

    def range_search(self, queries: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, every stored (id, score) with score >= ``threshold``, best first."""
        queries = as_vectors(queries, self.spec)
        with self._lock, self._server("range search"):
            client = self._open_client()
            total = self._count(client)
            return [self._range_one(client, q, float(threshold), total) for q in queries]

    def _range_one(self, client: QdrantClient, query: np.ndarray, threshold: float, total: int) -> tuple[np.ndarray, np.ndarray]:
        """One query's hits: ask for a page, and ask again for more while the page came back full."""
        if not total:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        m = self._m
        if self.exact_range:  # full scan over the stored vectors: quantised scores could drop borderline hits
            params = m.SearchParams(exact=True, quantization=m.QuantizationSearchParams(ignore=True))
        else:
            params = m.SearchParams(quantization=m.QuantizationSearchParams(rescore=True))
        vector = query.tolist()
        return widening_range(
            lambda limit: client.query_points(
                self.collection, query=vector, limit=limit, score_threshold=threshold - THRESHOLD_SLACK,
                search_params=params, with_payload=False, with_vectors=False).points,
            total, threshold, RANGE_FIRST_LIMIT)

    def scroll(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored vector in id order, a page of ``batch_size`` points at a time."""
        if batch_size < 1:
            raise StoreError(f"store {self.spec.name!r}: batch size must be positive, got {batch_size}")
        offset = None
        while True:
            with self._lock, self._server("scroll"):
                records, offset = self._open_client().scroll(
                    self.collection, limit=batch_size, offset=offset, with_payload=False, with_vectors=True)
            if records:
                ids = np.array([int(r.id) for r in records], dtype=np.int64)
                vectors = np.array([_dense(r.vector) for r in records], dtype=np.float32).reshape(len(ids), self.spec.dim)
                yield ids, vectors
            if offset is None:
                return

    def count(self) -> int:
        """How many vectors are stored (exact)."""
        with self._lock, self._server("count"):
            return self._count(self._open_client())

    def persist(self) -> None:
        """Nothing to do beyond checking the store is open: every write waits for the server's WAL
        (``wait=True``), and local mode writes each point to its file as it goes."""
        with self._lock:
            self._open_client()

    def close(self) -> None:
        """Release the store; closes the client too when the store owns it. Later calls raise StoreError."""
        with self._lock:
            if self._client is None:
                return
            client, self._client = self._client, None
            if self.owns_client:
                with self._server("close"):
                    client.close()
