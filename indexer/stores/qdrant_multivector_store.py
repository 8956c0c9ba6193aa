"""Qdrant server patch store in the multivector layout: one point per image, its cells one MAX_SIM multivector.

Chosen with ``DINOSEEK_QDRANT_PATCH_LAYOUT=multivector`` for stores with an id stride (the patch
cells); it speaks cell ids like every other store, so writers, readers and backups are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.stores.base import (
    SearchResult,
    StoreError,
    StoreSpec,
    as_ids,
    as_vectors,
    check_batch_size,
    empty_result,
    in_request_order,
)
from indexer.stores.qdrant_server_store import (
    ID_BATCH,
    QUERY_BATCH,
    RANGE_FIRST_LIMIT,
    SLOTS,
    THRESHOLD_SLACK,
    UPSERT_BATCH,
    QdrantServerStore,
    as_list,
    dense_vector,
)

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


class QdrantMultivectorStore(QdrantServerStore):
    """Patch cells in the multivector layout: one point per image (point id = image id) whose vector
    is the image's cells, compared with Qdrant's MAX_SIM (a query of several cells scores an image by
    the sum, over the query cells, of each one's best cell in the image), with the same HNSW and
    quantisation settings as every other collection. A ``SLOTS`` payload gives each row's slot.

    It still serves the ``VectorStore`` protocol in cell ids (image id x stride + slot), so every
    caller that writes, reads, backs up or restores patch cells works unchanged: an upsert or delete
    of some cells rewrites their images' points (read, merge by slot, write back, so a restore that
    brings an image's cells in two batches keeps both); ``search`` of single cells asks
    for the k images whose best cell is nearest (the images of the k nearest cells are among them)
    and ranks their cells; ``count`` reads every point's slot list (a scan of payloads, no vectors).
    Two processes writing different cells of one image at the same moment could lose one write;
    the indexer writes an image's cells at once, from the one task that embeds it.

    What the layout is for: ``search_images``, the images nearest to a set of query cells by MAX_SIM
    in one request (region queries' candidates, instead of votes of each cell's nearest cells).
    """

    patch_layout = "multivector"

    def __init__(self, spec: StoreSpec, client: QdrantClient, **kwargs: Any) -> None:
        if not spec.id_stride:
            raise StoreError(f"store {spec.name!r}: the multivector layout needs ids keyed by image (an id stride)")
        super().__init__(spec, client, **kwargs)

    # ------------------------------------------------------------------ points <-> cells
    def _split(self, ids: np.ndarray) -> dict[int, np.ndarray]:
        """Cell ids → {image id: positions in ``ids``}."""
        images = ids // self._stride
        order = np.argsort(images, kind="stable")
        unique, starts = np.unique(images[order], return_index=True)
        return dict(zip(unique.tolist(), np.split(order, starts[1:])))

    def _load(self, client: QdrantClient, images: list[int], with_vectors: bool) -> dict[int, dict[int, Any]]:
        """The stored grids of these images: {image id: {slot: row vector (or None)}}."""
        grids: dict[int, dict[int, Any]] = {}
        for start in range(0, len(images), ID_BATCH):
            for r in client.retrieve(self.collection, ids=images[start : start + ID_BATCH], with_payload=[SLOTS],
                                     with_vectors=with_vectors):
                slots = (r.payload or {}).get(SLOTS) or []
                rows = dense_vector(r.vector) if with_vectors else [None] * len(slots)
                grids[int(r.id)] = dict(zip(slots, rows))
        return grids

    def _write(self, client: QdrantClient, grids: dict[int, dict[int, Any]]) -> None:
        """Store these grids (an empty one deletes its image's point); rows kept in slot order."""
        m = self._m
        empty = [img for img, cells in grids.items() if not cells]
        if empty:
            client.delete(self.collection, points_selector=m.PointIdsList(points=empty), wait=True)
        full = [img for img, cells in grids.items() if cells]
        per_request = max(1, UPSERT_BATCH // self._stride)
        for start in range(0, len(full), per_request):
            chunk = full[start : start + per_request]
            slots = [sorted(grids[img]) for img in chunk]
            vectors = [[as_list(grids[img][s]) for s in order] for img, order in zip(chunk, slots)]
            client.upsert(self.collection, points=m.Batch(ids=chunk, vectors=vectors,
                                                          payloads=[{SLOTS: order} for order in slots]), wait=True)

    # ------------------------------------------------------------------ protocol
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace these cells; other cells of their images stay as they were."""
        ids = as_ids(ids, self.spec.name)
        vectors = as_vectors(vectors, self.spec, rows=len(ids))
        with self._lock, self._server("upsert"):
            client = self._open_client()
            by_image = self._split(ids)
            grids = self._load(client, list(by_image), with_vectors=True)
            for img, rows in by_image.items():
                cells = grids.setdefault(img, {})
                cells.update(zip((ids[rows] % self._stride).tolist(), vectors[rows]))
            self._write(client, grids)

    def delete(self, ids: np.ndarray) -> int:
        """Remove these cells; returns how many existed. Every cell of an image goes with its point."""
        ids = as_ids(ids, self.spec.name)
        with self._lock, self._server("delete"):
            client = self._open_client()
            by_image = self._split(ids)
            held = self._load(client, list(by_image), with_vectors=False)
            removed, whole, partial = 0, [], []
            for img, cells in held.items():
                gone = set((ids[by_image[img]] % self._stride).tolist()) & set(cells)
                removed += len(gone)
                if len(gone) == len(cells):
                    whole.append(img)
                elif gone:
                    partial.append((img, gone))
            grids: dict[int, dict[int, Any]] = {img: {} for img in whole}
            if partial:
                kept = self._load(client, [img for img, _ in partial], with_vectors=True)
                for img, gone in partial:
                    grids[img] = {s: v for s, v in kept.get(img, {}).items() if s not in gone}
            self._write(client, grids)
            return removed

    def fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of the cells that exist, in the order asked."""
        ids = as_ids(ids, self.spec.name)
        with self._lock, self._server("fetch"):
            grids = self._load(self._open_client(), list(self._split(ids)), with_vectors=True)
        by_id = {img * self._stride + s: v for img, cells in grids.items() for s, v in cells.items()}
        return in_request_order(self.spec, ids, by_id)

    def _cells(self, points: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Every cell of some scored/retrieved points: (cell ids, (n, dim) float32)."""
        ids: list[int] = []
        rows: list[Any] = []
        for p in points:
            slots = (p.payload or {}).get(SLOTS) or []
            ids += [int(p.id) * self._stride + s for s in slots]
            rows += dense_vector(p.vector)
        return np.array(ids, dtype=np.int64), np.array(rows, dtype=np.float32).reshape(len(ids), self.spec.dim)

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` nearest cells to each query row: the k images whose best cell is nearest (by
        MAX_SIM of a one-cell query) hold them; their cells are ranked here."""
        queries = as_vectors(queries, self.spec)
        result = empty_result(self.spec, len(queries), k)
        ids, scores = result.ids, result.scores
        m = self._m
        params = self._rescoring()
        with self._lock, self._server("search"):
            client = self._open_client()
            for start in range(0, len(queries), QUERY_BATCH):
                batch = queries[start : start + QUERY_BATCH]
                requests = [m.QueryRequest(query=[q.tolist()], limit=k, params=params, with_payload=[SLOTS],
                                           with_vector=True) for q in batch]
                for row, response in enumerate(client.query_batch_points(self.collection, requests=requests),
                                               start=start):
                    cell_ids, cells = self._cells(response.points)
                    sims = cells @ queries[row] if len(cell_ids) else np.empty(0, dtype=np.float32)
                    order = np.argsort(-sims, kind="stable")[:k]
                    ids[row, : len(order)] = cell_ids[order]
                    scores[row, : len(order)] = sims[order]
        return SearchResult(ids, scores)

    def _range_one(self, client: QdrantClient, query: np.ndarray, threshold: float, total: int) -> tuple[np.ndarray, np.ndarray]:
        """One query's cells at or above ``threshold``: the images whose best cell reaches it (pages
        widened while full, as for points), their cells filtered here."""
        empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
        images = total  # range_search counted the points: one per image
        if not images:
            return empty
        m = self._m
        if self.exact_range:
            params = m.SearchParams(exact=True, quantization=m.QuantizationSearchParams(ignore=True))
        else:
            params = self._rescoring()
        limit = min(RANGE_FIRST_LIMIT, images)
        while True:
            points = client.query_points(self.collection, query=[query.tolist()], limit=limit,
                                         score_threshold=threshold - THRESHOLD_SLACK, search_params=params,
                                         with_payload=[SLOTS], with_vectors=True).points
            if len(points) < limit or limit >= images:
                break
            limit = min(limit * 4, images)
        cell_ids, cells = self._cells(points)
        if not len(cell_ids):
            return empty
        sims = cells @ query
        keep = sims >= np.float32(threshold)
        cell_ids, sims = cell_ids[keep], sims[keep]
        order = np.argsort(-sims, kind="stable")
        return cell_ids[order], sims[order].astype(np.float32)

    def scroll(self, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored cell in id order (images ascending, slots ascending), at most ``batch_size`` a batch."""
        check_batch_size(self.spec, batch_size)
        offset = None
        while True:
            with self._lock, self._server("scroll"):
                records, offset = self._open_client().scroll(
                    self.collection, limit=max(1, batch_size // self._stride), offset=offset, with_payload=[SLOTS],
                    with_vectors=True)
            ids, vectors = self._cells(records)
            for start in range(0, len(ids), batch_size):
                yield ids[start : start + batch_size], vectors[start : start + batch_size]
            if offset is None:
                return

    def count(self) -> int:
        """How many cells are stored: the lengths of every point's slot list (a payload scan)."""
        total, offset = 0, None
        with self._lock, self._server("count"):
            client = self._open_client()
            while True:
                records, offset = client.scroll(self.collection, limit=ID_BATCH * 4, offset=offset,
                                                with_payload=[SLOTS], with_vectors=False)
                total += sum(len((r.payload or {}).get(SLOTS) or []) for r in records)
                if offset is None:
                    return total

    def search_images(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` images nearest to the set of cells ``queries`` (n, dim), best first, by MAX_SIM:
        per image, the sum over query rows of the row's best cosine among the image's cells."""
        queries = as_vectors(queries, self.spec)
        if k <= 0:
            raise StoreError(f"store {self.spec.name!r}: k must be positive, got {k}")
        params = self._rescoring()
        if not len(queries):
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        with self._lock, self._server("search"):
            points = self._open_client().query_points(self.collection, query=queries.tolist(), limit=k,
                                                      search_params=params, with_payload=False,
                                                      with_vectors=False).points
        return (np.array([int(p.id) for p in points], dtype=np.int64),
                np.array([p.score for p in points], dtype=np.float32))
