"""Query by example: an image file, an uploaded picture or an indexed image id → the closest images."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from indexer.catalog.models import Collection, Image
from indexer.errors import InvalidRequest, NotFound
from indexer.images import image_metadata
from indexer.library import Library
from indexer.query.opening import open_for_query, read_query_file
from indexer.stores import CollectionStores

MAX_K = 1000
EXACT_FILTER_LIMIT = 20_000  # a filter that leaves at most this many images is searched exactly among them


@dataclass
class SearchFilters:
    """Metadata conditions a result must meet: path prefix, capture-date range, file formats."""

    path_prefix: str | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    formats: tuple[str, ...] = ()

    def active(self) -> bool:
        return bool(self.path_prefix or self.taken_after or self.taken_before or self.formats)

    def clauses(self) -> list:
        out = []
        if self.path_prefix:  # exact and case-sensitive on every database (SQLite's LIKE ignores case)
            out.append(func.substr(Image.path, 1, len(self.path_prefix)) == self.path_prefix)
        if self.taken_after:
            out.append(Image.taken_at >= self.taken_after)
        if self.taken_before:
            out.append(Image.taken_at <= self.taken_before)
        if self.formats:
            out.append(Image.format.in_([f.upper() for f in self.formats]))
        return out


@dataclass
class SearchHit:
    image_id: int
    path: str
    score: float
    box: list[int] | None = None
    metadata: dict = field(default_factory=dict)

    def to_json(self, with_metadata: bool = False) -> dict:
        doc = {"image_id": self.image_id, "path": self.path, "score": round(self.score, 6), "box": self.box}
        if with_metadata:
            doc["metadata"] = self.metadata
        return doc


@dataclass
class QueryResult:
    query: str
    results: list[SearchHit]
    box: list[int] | None = None

    def to_json(self) -> dict:
        return {"query": self.query, "box": self.box, "results": [hit.to_json() for hit in self.results]}


def check_k(k: int) -> int:
    """``k`` when it is a result count this service answers, else InvalidRequest."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def _hits(session: Session, collection: Collection, ids: np.ndarray, scores: np.ndarray, k: int,
          threshold: float | None, exclude: set[int], exclude_path: str | None,
          filters: SearchFilters | None = None) -> list[SearchHit]:
    wanted = [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0 and int(i) not in exclude
              and (threshold is None or s >= threshold)]
    if not wanted:
        return []
    rows = {r.id: r for r in session.scalars(select(Image).where(
        Image.id.in_([i for i, _ in wanted]), Image.collection_id == collection.id, Image.status == "indexed",
        *(filters.clauses() if filters else [])))}
    hits = [SearchHit(i, rows[i].path, s, None, image_metadata(rows[i])) for i, s in wanted
            if i in rows and rows[i].path != exclude_path]
    return hits[:k]


def search_vectors(library: Library, collection_name: str, vectors: np.ndarray, k: int = 10,
                   threshold: float | None = None, exclude_ids: list[set[int]] | None = None,
                   exclude_paths: list[str | None] | None = None,
                   filters: SearchFilters | None = None) -> list[list[SearchHit]]:
    """Top-k per query vector, joined with the catalog; excluded ids/paths never appear. With
    ``filters``, a selective filter is searched exactly among the images it leaves; a broad one
    over-fetches from the index and filters the hits."""
    check_k(k)
    n = len(vectors)
    exclude_ids = exclude_ids or [set() for _ in range(n)]
    exclude_paths = exclude_paths or [None] * n
    queries = np.asarray(vectors, dtype=np.float32)
    with library.catalog.session() as s:
        collection, stores = open_for_query(library, s, collection_name)
        return _search_in(s, collection, stores, queries, k, threshold, exclude_ids, exclude_paths, filters)


def _search_in(s: Session, collection: Collection, stores: CollectionStores | None, queries: np.ndarray, k: int,
               threshold: float | None, exclude_ids: list[set[int]], exclude_paths: list[str | None],
               filters: SearchFilters | None) -> list[list[SearchHit]]:
    """The search itself, inside the caller's session."""
    n = len(queries)
    if stores is None or not n:
        return [[] for _ in range(n)]
    extra = max(len(e) for e in exclude_ids) + 1
    if filters is not None and filters.active():
        allowed = list(s.scalars(select(Image.id).where(
            Image.collection_id == collection.id, Image.status == "indexed", *filters.clauses())
            .limit(EXACT_FILTER_LIMIT + 1)))
        if len(allowed) <= EXACT_FILTER_LIMIT:
            ids, scores = _exact_among(stores, np.array(allowed, dtype=np.int64), queries, k + extra)
        else:
            result = stores.global_.search(queries, min(MAX_K * 10, (k + extra) * 10))
            ids, scores = result.ids, result.scores
    else:
        result = stores.global_.search(queries, k + extra)
        ids, scores = result.ids, result.scores
    return [_hits(s, collection, ids[q], scores[q], k, threshold, exclude_ids[q], exclude_paths[q], filters)
            for q in range(n)]


def _exact_among(stores: CollectionStores, allowed: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each query among ``allowed`` image ids, by exact inner product."""
    found, vectors = stores.global_.fetch(allowed) if len(allowed) else (allowed, np.zeros((0, queries.shape[1])))
    scores = queries @ np.asarray(vectors, dtype=np.float32).T
    take = min(k, len(found))
    order = np.argsort(-scores, axis=1)[:, :take]
    return found[order], np.take_along_axis(scores, order, axis=1)


def embed_pictures(library: Library, pictures: list[PILImage.Image]) -> np.ndarray:
    """The configured model's global descriptors of query pictures, (n, D) float32."""
    return library.embedder.embed(pictures).vectors


def search_files(library: Library, collection_name: str, files: list[str | os.PathLike], k: int = 10,
                 threshold: float | None = None) -> list[QueryResult]:
    """Query by image files (in argument order); a file that is itself indexed is left out of its results."""
    check_k(k)
    pictures = [read_query_file(library, f, target_long_side=library.embedder.image_size).image for f in files]
    names = [os.path.abspath(str(f)) for f in files]
    library.require_collection(collection_name)
    vectors = embed_pictures(library, pictures)
    hits = search_vectors(library, collection_name, vectors, k, threshold, exclude_paths=names)
    return [QueryResult(str(f), h) for f, h in zip(files, hits)]


def search_by_id(library: Library, collection_name: str, image_id: int, k: int = 10,
                 threshold: float | None = None, filters: SearchFilters | None = None) -> list[SearchHit]:
    """Query by an indexed image: its stored vector, itself excluded."""
    with library.catalog.session() as s:
        collection, stores = open_for_query(library, s, collection_name)
        row = s.get(Image, image_id)
        if row is None or row.collection_id != collection.id:
            raise NotFound(f"no image {image_id} in collection {collection_name!r}")
        if row.status != "indexed" or stores is None:
            raise InvalidRequest(f"image {image_id} ({row.path}) is {row.status}, not indexed")
        found, vectors = stores.global_.fetch(np.array([image_id]))
        if not len(found):
            raise NotFound(f"image {image_id} has no stored vector; re-index {row.path}")
        check_k(k)
        return _search_in(s, collection, stores, np.asarray(vectors, dtype=np.float32), k, threshold, [{image_id}],
                          [None], filters)[0]
