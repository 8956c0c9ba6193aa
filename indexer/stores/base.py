"""The one interface every vector backend implements (``VectorStore``), and the small types it speaks.

Vectors are L2-normalised float32 rows; scores are inner products (cosine similarity), higher is
closer. Ids are non-negative int64 chosen by the caller (image ids for global vectors, composite
ids for patch vectors). A store holds one named set of vectors of one dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np


class StoreError(RuntimeError):
    """A vector store cannot do what was asked (bad shape, wrong dimension, unreadable files)."""


@dataclass(frozen=True)
class StoreSpec:
    """What a store holds: its name (unique per backend location), dimension and storage precision.

    ``precision`` is ``"float32"`` or ``"float16"``; a backend may store float16 as int8 scalar
    quantisation where it has no float16 storage, but never loses more than that.

    ``id_stride`` is 0 when ids are plain image ids; N > 0 when each id is ``image_id * N + slot``
    (the patch cells: N = 64). A backend may then keep the image id beside each vector and delete
    every slot of an image at once (the Qdrant server store does); the others ignore it.
    """

    name: str
    dim: int
    precision: str = "float32"
    id_stride: int = 0

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise StoreError(f"store {self.name!r}: dimension must be positive, got {self.dim}")
        if self.id_stride < 0:
            raise StoreError(f"store {self.name!r}: id stride must be 0 or positive, got {self.id_stride}")
        if self.precision not in ("float32", "float16"):
            raise StoreError(f"store {self.name!r}: precision must be float32 or float16, got {self.precision!r}")


@dataclass(frozen=True)
class SearchResult:
    """Top-k answer for a batch of queries: ``ids`` and ``scores`` are (queries, k), best first;
    rows with fewer than k stored vectors are padded with id -1 and score -inf."""

    ids: np.ndarray
    scores: np.ndarray


class VectorStore:
    """The base every backend derives from; it declares every operation a store offers. Upsert,
    delete, fetch, search by k or by threshold, scroll, count, persist and close are each backend's
    own; ``refresh``, ``discard`` and ``search_images`` have defaults that a backend overrides
    where it can do better (or at all)."""

    spec: StoreSpec
    # how a store with an id stride keeps its cells: "points" (one point per cell, searched by
    # cell) or "multivector" (one point per image, ranked by MAX_SIM through ``search_images``)
    patch_layout: str = "points"

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the vectors for ``ids`` (int64, unique); ``vectors`` is (n, dim)."""
        raise NotImplementedError

    def delete(self, ids: np.ndarray) -> int:
        """Remove these ids; unknown ids are ignored. Returns how many were removed."""
        raise NotImplementedError

    def fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors of those ids that exist: (found ids, (found, dim) float32)."""
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` highest-scoring stored vectors for each query row."""
        raise NotImplementedError

    def range_search(self, queries: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, every stored (id, score) with score >= ``threshold``, best first."""
        raise NotImplementedError

    def scroll(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored vector, as batches of (ids int64, (n, dim) float32) of at most ``batch_size``
        rows in ascending id order (how a backup reads a store). Writes made while it runs may or
        may not show; hold the collection's writer lock for a consistent read."""
        raise NotImplementedError

    def count(self) -> int:
        """How many vectors are stored."""
        raise NotImplementedError

    def persist(self) -> None:
        """Make every change so far durable (crash-safe: a crash leaves the old or the new state)."""
        raise NotImplementedError

    def close(self) -> None:
        """Persist and release files and handles; the store is unusable afterwards."""
        raise NotImplementedError

    def refresh(self) -> bool:
        """Pick up what another process wrote since this one opened the store; True if anything was
        re-read. Stores that read the engine on every call have nothing to pick up."""
        return False

    def discard(self) -> None:
        """Let go of a store whose files were deleted on purpose (a superseded generation). Stores
        whose close writes nothing back just close."""
        self.close()

    def search_images(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` images nearest to a set of cells by MAX_SIM: (image ids, scores), best first.
        Only the multivector patch layout ranks images itself; cells kept as points are searched
        one by one (``search``)."""
        raise StoreError(f"store {self.spec.name!r}: ranking images by MAX_SIM needs the multivector patch layout "
                         f"(this store keeps its cells as {self.patch_layout})")


def as_ids(ids: np.ndarray | list[int], name: str) -> np.ndarray:
    """Validate caller ids: a 1-d array of unique non-negative int64."""
    arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    if arr.size and arr.min() < 0:
        raise StoreError(f"store {name!r}: ids must be non-negative, got {int(arr.min())}")
    if len(np.unique(arr)) != len(arr):
        raise StoreError(f"store {name!r}: ids in one call must be unique")
    return arr


def as_vectors(vectors: np.ndarray, spec: StoreSpec, rows: int | None = None) -> np.ndarray:
    """Validate vectors: (n, spec.dim) finite float32, C-contiguous."""
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != spec.dim:
        raise StoreError(f"store {spec.name!r}: vectors must be (n, {spec.dim}), got shape {tuple(arr.shape)}")
    if rows is not None and arr.shape[0] != rows:
        raise StoreError(f"store {spec.name!r}: {rows} ids but {arr.shape[0]} vectors")
    if not np.isfinite(arr).all():
        raise StoreError(f"store {spec.name!r}: vectors contain NaN or infinity")
    return arr


def check_batch_size(spec: StoreSpec, batch_size: int) -> int:
    """A scroll's page size, refused unless positive."""
    if batch_size < 1:
        raise StoreError(f"store {spec.name!r}: batch size must be positive, got {batch_size}")
    return batch_size


def widening_range(query_page: Callable[[int], Sequence], total: int, threshold: float,
                   first_limit: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Range search on engines that only answer top-k: ask ``query_page(limit)`` for hits (objects
    with ``id`` and ``score``), four times more while the page comes back full, then keep scores
    >= ``threshold``, best first."""
    limit = min(first_limit, total)
    while True:
        hits = query_page(limit)
        if len(hits) < limit or limit >= total:
            break
        limit = min(limit * 4, total)
    ids = np.array([int(h.id) for h in hits], dtype=np.int64)
    scores = np.array([h.score for h in hits], dtype=np.float32)
    keep = scores >= np.float32(threshold)
    ids, scores = ids[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    return ids[order], scores[order]


def empty_result(spec: StoreSpec, queries: int, k: int) -> SearchResult:
    """A (queries, k) result with nothing found yet: ids -1, scores -inf (after checking k)."""
    if k <= 0:
        raise StoreError(f"store {spec.name!r}: k must be positive, got {k}")
    return SearchResult(np.full((queries, k), -1, dtype=np.int64), np.full((queries, k), -np.inf, dtype=np.float32))


def in_request_order(spec: StoreSpec, ids: np.ndarray, by_id: dict[int, Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """``fetch``'s answer from an id → vector map: the ids that exist, in the order asked."""
    found = [i for i in ids.tolist() if i in by_id]
    vectors = np.array([by_id[i] for i in found], dtype=np.float32).reshape(len(found), spec.dim)
    return np.array(found, dtype=np.int64), vectors
