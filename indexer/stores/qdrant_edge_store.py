"""Qdrant Edge vector store: Qdrant's Rust engine embedded in this process (``qdrant-edge-py``).

One store is one Edge shard in ``directory / spec.name``. The shard owns its directory (a second
open of the same directory fails on the write-ahead-log lock), logs every update to its WAL before
applying it (so a crash replays to the last acknowledged write) and writes segments on ``flush``.
Edge runs no background optimiser: segments only get their HNSW graph when ``optimize()`` is
called, which this store does before the first read after any write and on ``persist``. When the
optimiser has nothing to do the call costs microseconds.

Distance is ``Dot``: vectors arrive L2-normalised, so the dot product is the cosine similarity,
and unlike ``Cosine`` it stores the vectors exactly as given (``fetch`` round-trips them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from indexer.stores.base import (
    SearchResult,
    StoreError,
    StoreSpec,
    VectorStore,
    as_ids,
    as_vectors,
    check_batch_size,
    empty_result,
    in_request_order,
    widening_range,
)

HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
FULL_SCAN_THRESHOLD_KB = 10_000  # segments smaller than this are searched by brute force
UPSERT_BATCH = 512  # points per update operation, so one WAL record stays small
QUERY_BATCH = 256  # queries per query_batch call
RANGE_FIRST_LIMIT = 256  # range_search asks for this many hits first and widens while the page is full
THRESHOLD_SLACK = 1e-6  # the engine keeps score > threshold; we ask a little lower and keep >= ourselves
CONFIG_FILE = "edge_config.json"  # written by EdgeShard.create: its presence means "load, don't create"


def _edge():
    import qdrant_edge  # imported lazily: only this backend needs qdrant-edge-py

    return qdrant_edge


def _dense(vector: object) -> list[float]:
    """The default (unnamed) dense vector of a record, whichever shape the binding returns."""
    if isinstance(vector, dict):
        vector = vector[""]
    return vector  # type: ignore[return-value]


class QdrantEdgeStore(VectorStore):
    """An embedded Qdrant Edge shard holding one named set of vectors."""

    def __init__(self, spec: StoreSpec, directory: Path, *, exact_range: bool = True) -> None:
        self.spec = spec
        self.path = Path(directory) / spec.name
        self.exact_range = exact_range  # False: range_search walks the HNSW graph (faster, may miss hits)
        self._qe = _edge()
        self._lock = threading.RLock()
        config = self._config()
        with self._engine("open"):
            if (self.path / CONFIG_FILE).exists():
                self._shard = self._qe.EdgeShard.load(str(self.path), config)  # checks dim/datatype/distance
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self._shard = self._qe.EdgeShard.create(str(self.path), config)
        self._needs_optimize = True  # a loaded shard may have replayed unoptimised writes from its WAL

    def _config(self):
        """The shard configuration this spec calls for."""
        qe = self._qe
        # Edge has native float16 vector storage, so float16 specs really are stored as float16.
        datatype = qe.VectorStorageDatatype.Float16 if self.spec.precision == "float16" else qe.VectorStorageDatatype.Float32
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=self.spec.dim, distance=qe.Distance.Dot, datatype=datatype),
            hnsw_config=qe.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_THRESHOLD_KB),
        )

    @contextmanager
    def _engine(self, action: str) -> Iterator[None]:
        """Turn the binding's bare exceptions into StoreError naming this store."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - qdrant-edge raises plain Exception for everything
            raise StoreError(f"store {self.spec.name!r}: Qdrant Edge {action} failed at {self.path}: {exc}") from exc

    def _open_shard(self):
        if self._shard is None:
            raise StoreError(f"store {self.spec.name!r} is closed")
        return self._shard

    def _existing(self, shard, ids: np.ndarray) -> list[int]:
        """Those of ``ids`` the shard holds."""
        records = shard.retrieve(ids.tolist(), False, False)  # (ids, with_payload, with_vector), positional
        return [int(r.id) for r in records]

    def _count(self, shard) -> int:
        return int(shard.count(self._qe.CountRequest(exact=True)))

    def _ready_for_reads(self, shard) -> None:
        """Index whatever the writes since the last read made worth indexing."""
        if self._needs_optimize:
            shard.optimize()
            self._needs_optimize = False

    # ------------------------------------------------------------------ protocol
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the vectors for ``ids``."""
        ids = as_ids(ids, self.spec.name)
        vectors = as_vectors(vectors, self.spec, rows=len(ids))
        qe = self._qe
        with self._lock, self._engine("upsert"):
            shard = self._open_shard()
            for start in range(0, len(ids), UPSERT_BATCH):
                rows = range(start, min(start + UPSERT_BATCH, len(ids)))
                points = [qe.Point(int(ids[r]), vectors[r].tolist()) for r in rows]
                shard.update(qe.UpdateOperation.upsert_points(points))
                self._needs_optimize = True

    def delete(self, ids: np.ndarray) -> int:
        """Remove these ids; returns how many existed."""
        ids = as_ids(ids, self.spec.name)
        if not len(ids):
            return 0
        with self._lock, self._engine("delete"):
            shard = self._open_shard()
            existing = self._existing(shard, ids)
            if existing:
                shard.update(self._qe.UpdateOperation.delete_points(existing))
                self._needs_optimize = True
            return len(existing)

    def fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of the ids that exist, in the order asked."""
        ids = as_ids(ids, self.spec.name)
        with self._lock, self._engine("fetch"):
            records = self._open_shard().retrieve(ids.tolist(), False, True) if len(ids) else []
        return in_request_order(self.spec, ids, {int(r.id): _dense(r.vector) for r in records})

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` highest-scoring stored vectors for each query row."""
        queries = as_vectors(queries, self.spec)
        result = empty_result(self.spec, len(queries), k)
        ids, scores = result.ids, result.scores
        qe = self._qe
        with self._lock, self._engine("search"):
            shard = self._open_shard()
            limit = min(k, self._count(shard))
            if not limit or not len(queries):
                return SearchResult(ids, scores)
            self._ready_for_reads(shard)
            for start in range(0, len(queries), QUERY_BATCH):
                block = queries[start : start + QUERY_BATCH]
                requests = [
                    qe.QueryRequest(limit=limit, query=qe.Query.Nearest(q.tolist()), with_payload=False, with_vector=False)
                    for q in block
                ]
                for row, hits in enumerate(shard.query_batch(qe.QueryBatchRequest(requests)), start=start):
                    ids[row, : len(hits)] = [int(h.id) for h in hits]
                    scores[row, : len(hits)] = [h.score for h in hits]
        return SearchResult(ids, scores)

    def range_search(self, queries: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, every stored (id, score) with score >= ``threshold``, best first."""
        queries = as_vectors(queries, self.spec)
        with self._lock, self._engine("range search"):
            shard = self._open_shard()
            total = self._count(shard)
            if total:
                self._ready_for_reads(shard)
            return [self._range_one(shard, q, float(threshold), total) for q in queries]

    def _range_one(self, shard, query: np.ndarray, threshold: float, total: int) -> tuple[np.ndarray, np.ndarray]:
        """One query's hits: ask for a page, and ask again for more while the page came back full."""
        qe = self._qe
        if not total:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        vector = query.tolist()
        params = qe.SearchParams(exact=self.exact_range)
        return widening_range(
            lambda limit: shard.query(qe.QueryRequest(
                limit=limit, query=qe.Query.Nearest(vector), score_threshold=threshold - THRESHOLD_SLACK,
                params=params, with_payload=False, with_vector=False)),
            total, threshold, RANGE_FIRST_LIMIT)

    def scroll(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored vector in id order, a page of ``batch_size`` points at a time."""
        check_batch_size(self.spec, batch_size)
        offset = None
        while True:
            with self._lock, self._engine("scroll"):
                records, offset = self._open_shard().scroll(self._qe.ScrollRequest(
                    offset=offset, limit=batch_size, with_payload=False, with_vector=True))
            if records:
                ids = np.array([int(r.id) for r in records], dtype=np.int64)
                vectors = np.array([_dense(r.vector) for r in records], dtype=np.float32).reshape(len(ids), self.spec.dim)
                yield ids, vectors
            if offset is None:
                return

    def count(self) -> int:
        """How many vectors are stored (exact)."""
        with self._lock, self._engine("count"):
            return self._count(self._open_shard())

    def optimize(self) -> bool:
        """Run the shard's optimisers now (build HNSW graphs, vacuum deletions); True if anything changed."""
        with self._lock, self._engine("optimize"):
            changed = bool(self._open_shard().optimize())
            self._needs_optimize = False
            return changed

    def persist(self) -> None:
        """Optimise what is pending and flush every segment to disk (the WAL already holds each write)."""
        with self._lock, self._engine("flush"):
            shard = self._open_shard()
            self._ready_for_reads(shard)
            shard.flush()

    def close(self) -> None:
        """Persist, then release the shard's files and lock; later calls raise StoreError."""
        with self._lock:
            if self._shard is None:
                return
            self.persist()
            with self._engine("close"):
                self._shard.close()
            self._shard = None
